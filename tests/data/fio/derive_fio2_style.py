"""Derive a fio 2.x-style document from a fio 3.x one (kept for provenance).

fio 2.x (HOWTO of fio-2.x, and fio-2.1.4/2.17 outputs): latencies under
"slat"/"clat"/"lat" in microseconds, no "bw_bytes", "io_bytes" in KiB, no
"io_kbytes". Run: python derive_fio2_style.py IN.json OUT.json
"""

import json
import sys
from pathlib import Path


def convert(direction: dict) -> dict:
    out = {}
    for key, value in direction.items():
        if key in ("bw_bytes", "io_kbytes"):
            continue
        if key == "io_bytes":
            out[key] = value // 1024
        elif key in ("slat_ns", "clat_ns", "lat_ns"):
            block = {k: (v / 1000 if isinstance(v, int | float) and k != "N" else v)
                     for k, v in value.items() if k not in ("N", "bins")}
            if "percentile" in value:
                block["percentile"] = {p: v // 1000 for p, v in value["percentile"].items()}
            out[key.removesuffix("_ns")] = block
        else:
            out[key] = value
    return out


def main() -> None:
    doc = json.loads(Path(sys.argv[1]).read_text())
    doc["fio version"] = "fio-2.2.10"
    for job in doc["jobs"]:
        for ddir in ("read", "write", "trim"):
            if ddir in job:
                job[ddir] = convert(job[ddir])
    Path(sys.argv[2]).write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
