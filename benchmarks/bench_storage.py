"""How close the agent's storage checks come to a raw fio run of the same job.

    python benchmarks/bench_storage.py [DIR]

One test file (512 MiB, laid out once) in DIR (default: a temporary folder under
the current directory's filesystem). For 4 KiB random read and 1 MiB sequential
read, the agent's measurement path (job file on stdin, JSON+ parser, engine probe)
and a hand-written fio command line of the same job run in turn on that file,
alternating, ROUNDS times each; the raw run's figure is read with json.loads,
not with our parser. The table shows the medians and their ratio; the target is
0.95-1.05 (the agent adds nothing to the I/O path, so only drive noise remains).

It reports and does not assert: the exit code is 0 whatever the figures.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench_agent.checks.storage.checks import (  # noqa: E402
    RandReadCheck,
    SeqReadCheck,
    SequentialParams,
    StorageParams,
    Target,
    choose_engine,
    layout_job,
)
from bench_agent.core.units import Unit, format_value  # noqa: E402
from bench_agent.tools import fio_run  # noqa: E402

SIZE = 512 << 20
RUNTIME_S = 5
RAMP_S = 1
ROUNDS = 3
TARGET = (0.95, 1.05)


def raw_fio(fio: str, filename: str, rw: str, bs: int, iodepth: int, numjobs: int,
            engine: str) -> float:
    """The same job as a plain fio command line; IOPS or bytes/s from its JSON."""
    command = [
        fio, "--name=raw", f"--filename={filename}", f"--rw={rw}", f"--bs={bs}",
        f"--iodepth={iodepth}", f"--numjobs={numjobs}", f"--ioengine={engine}",
        "--direct=1", "--time_based", f"--runtime={RUNTIME_S}", f"--ramp_time={RAMP_S}",
        "--group_reporting", "--randrepeat=0", "--output-format=json", "--readonly",
    ]
    if rw.startswith("rand"):
        command += ["--norandommap", f"--size={SIZE}"]
    else:
        region = SIZE // numjobs // bs * bs
        command += [f"--size={region}", f"--offset_increment={region}"]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    read = json.loads(done.stdout[done.stdout.index("{"):])["jobs"][0]["read"]
    return float(read["iops"] if rw.startswith("rand") else read["bw_bytes"])


def main() -> int:
    fio = fio_run.find_fio()
    parent = Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd()
    rows = []
    with tempfile.TemporaryDirectory(prefix=".bench-storage-", dir=parent) as tmp:
        target = Target(label=tmp, filename=str(Path(tmp) / "testfile"), size=SIZE, kind="file")
        fio_run.run_fio(fio, layout_job(target), 600)
        engine = choose_engine(fio, "auto", target, deadline=1e18)
        cases = [
            (RandReadCheck(), StorageParams(runtime=RUNTIME_S, ramp_time=RAMP_S, size=SIZE),
             "randread", 4096, "storage.randread_4k_iops", Unit.IOPS),
            (SeqReadCheck(), SequentialParams(runtime=RUNTIME_S, ramp_time=RAMP_S, size=SIZE),
             "read", 1 << 20, "storage.seqread_1m_bandwidth", Unit.BYTES_PER_SECOND),
        ]
        for check, params, rw, bs, metric, unit in cases:
            agent, raw = [], []
            for _ in range(ROUNDS):
                job = fio_run.run_fio(
                    fio, _job(check, target, params, engine), 600, readonly=True)[0]
                ms = check.measurements(job, [target], params, engine)
                agent.append(next(m.value for m in ms if m.metric == metric))
                raw.append(raw_fio(fio, target.filename, rw, bs, params.iodepth,
                                   params.numjobs, engine))
            a, r = statistics.median(agent), statistics.median(raw)
            rows.append((metric, format_value(a, unit), format_value(r, unit), a / r))
    print(f"engine {engine}; {ROUNDS} alternating rounds of {RUNTIME_S} s (+{RAMP_S} s ramp), "
          f"file {SIZE >> 20} MiB, medians")
    print(f"{'metric':<32} {'agent':>12} {'raw fio':>12} {'ratio':>7}  target")
    for metric, a_text, r_text, ratio in rows:
        ok = "ok" if TARGET[0] <= ratio <= TARGET[1] else "OUTSIDE"
        print(f"{metric:<32} {a_text:>12} {r_text:>12} {ratio:>7.3f}  "
              f"{TARGET[0]}-{TARGET[1]} {ok}")
    return 0


def _job(check: RandReadCheck | SeqReadCheck, target: Target, params: StorageParams,
         engine: str) -> str:
    from bench_agent.checks.storage.checks import measure_job

    return measure_job([target], check.rw, check.block, params, engine)


if __name__ == "__main__":
    raise SystemExit(main())
