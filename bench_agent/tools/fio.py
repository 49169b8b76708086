"""fio: read its JSON (or JSON+) output.

Running fio lives in fio_run.py; everything here is pure and tested on outputs
captured from real fio runs (tests/data/fio) and on the public samples.

What fio's JSON means (fio HOWTO, "Terse output" / "JSON output" and the
``show_run_stats`` code it documents; field names as fio 3.33 prints them):

- ``jobs[]``: one entry per job, or one per *group* with ``group_reporting``
  (then the entry sums the clones: IOPS and bytes added, latency histograms
  merged by fio itself). ``groupid`` tells groups apart; clones of one job
  share ``jobname``.
- per direction (``read``, ``write``, ``trim``): ``iops`` (I/Os per second),
  ``bw`` in KiB/s (both 2.x and 3.x), ``bw_bytes`` in bytes/s (3.x only),
  ``io_bytes`` (3.x: bytes; 2.x: KiB, which 3.x renamed ``io_kbytes``),
  ``runtime`` in milliseconds.
- latency: ``slat`` (submission), ``clat`` (completion: from submission to
  completion, what the HOWTO calls "completion latency") and ``lat`` (total).
  fio 3.x prints them in nanoseconds as ``slat_ns``/``clat_ns``/``lat_ns``;
  fio 2.x in microseconds as ``slat``/``clat``/``lat``. ``percentile`` sits
  under ``clat`` by default (``clat_percentiles=1``) or under ``lat`` with
  ``lat_percentiles=1``; keys are the percentile written "%f" ("99.900000").
- JSON+ (``--output-format=json+``) adds ``bins`` next to ``percentile``: the
  non-empty buckets of fio's latency histogram, keyed by the bucket's value in
  ns, with I/O counts. fio computes its percentiles from those buckets
  (stat.c ``calc_clat_percentiles``: the first bucket where the running count
  reaches p/100 of all I/Os), so merging the buckets of several jobs and
  applying the same rule gives the percentile fio would print for them grouped.
- ``error``: the job's errno (0: none). fio may exit 0 with a job's error set,
  and exits non-zero with a valid JSON document too: both are checked.

Output is hostile: notes before the JSON ("note: both iodepth >= 1 and
synchronous I/O engine are selected..."), several documents in a row
(``--status-interval`` prints cumulative interim reports, the final one last),
duplicate keys (fio 2.x and 3.1 repeat the "0.00" percentile key; an option
given twice is listed twice): those are resolved as fio resolves them, any other
duplicate key is a ParseError (a doctored second "iops" must not win), as are
NaN, huge integers, deep nesting and text after the last report (strict_json).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench_agent.core.errors import ParseError, ToolFailed
from bench_agent.core.model import Measurement
from bench_agent.core.strict_json import MAX_INT_DIGITS, REFUSE, Path, read_documents
from bench_agent.core.units import Unit
from bench_agent.tools import tool_name

TOOL = "fio"
DIRECTIONS = ("read", "write", "trim")
# The percentiles we report; fio's default percentile_list contains all three
# (HOWTO, percentile_list: "1:5:10:20:30:40:50:60:70:80:90:95:99:99.5:99.9:99.95:99.99").
REPORTED_PERCENTILES = (50.0, 99.0, 99.9)
_NS_PER_S = 1e9
_US_PER_S = 1e6


# --- records -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DirectionStats:
    """One direction (read/write/trim) of one job entry, in canonical units.

    ``percentiles`` maps a percentile (99.9) to seconds; ``basis`` says whether
    they are completion ("clat") or total ("lat") latencies; ``bins`` is the JSON+
    histogram (ns -> I/O count), empty without JSON+.
    """

    iops: float
    bytes_per_second: float
    io_bytes: int
    total_ios: int
    runtime_s: float
    mean_latency_s: float | None
    percentiles: dict[float, float]
    basis: str
    bins: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FioJob:
    name: str
    groupid: int
    error: int
    options: dict[str, str]  # global options overlaid by the job's own
    directions: dict[str, DirectionStats]


@dataclass(frozen=True, slots=True)
class FioReport:
    version: str
    jobs: list[FioJob]
    notes: list[str]  # text outside the JSON documents (fio's notes and warnings)


@dataclass(frozen=True, slots=True)
class DirectionSummary:
    """Several job entries of one direction summed: what a group of jobs did.

    ``latency_merge`` says how the percentiles were obtained: "single" (one
    entry), "histogram" (JSON+ buckets merged, exact) or "max" (the largest of
    the entries' percentiles: an upper bound of the merged percentile, since at
    that latency every entry's distribution has reached p, so their mixture has
    too; averaging percentiles has no such meaning).
    """

    iops: float
    bytes_per_second: float
    io_bytes: int
    entries: int
    percentiles: dict[float, float]
    basis: str
    latency_merge: str
    bins: dict[int, int] = field(default_factory=dict)


# --- reading the text ----------------------------------------------------------------


def duplicate_policy(path: Path, key: str, values: list[Any]) -> Any:
    """The keys fio itself repeats, and the value fio acted on; REFUSE for any other.

    - fio 2.x and 3.1 print an unused slot of the percentile list as "0.00" : 0,
      once per slot (the public fio-plot and PerfKitBenchmarker samples repeat it
      three to fifteen times); the "0.00" keys are skipped below anyway.
    - "job options" / "global options" list the options as given, so an option
      given twice appears twice. Each ``filename=`` adds its files to the job
      (fio options.c, str_filename_cb: add_file() for every ':'-separated name),
      so the files are joined with fio's own ':' separator; for any other option
      the later assignment overrides the earlier, as fio's option parser does.
    """
    parent = path[-1] if path else None
    if parent == "percentile" and key == "0.00" and all(v == values[0] for v in values):
        return values[0]
    if parent in ("job options", "global options") and all(isinstance(v, str) for v in values):
        if key == "filename":
            return ":".join(dict.fromkeys(values))
        return values[-1]
    return REFUSE


def _json_documents(text: str) -> tuple[list[dict[str, Any]], list[str]]:
    """fio's JSON reports (one, or several with --status-interval) and the notes
    before them; every other shape is a ParseError (strict_json.read_documents)."""
    return read_documents(text, TOOL, several=True, duplicates=duplicate_policy)


def _number(value: Any, default: float = 0.0) -> float:
    """A finite number, else ``default`` (Python's JSON reader accepts NaN and
    Infinity, and int(nan) would crash the parser)."""
    if isinstance(value, bool):
        return default
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return default
    else:
        return default
    return number if math.isfinite(number) else default


def _percentiles(block: dict[str, Any], scale: float) -> dict[float, float]:
    raw = block.get("percentile")
    if not isinstance(raw, dict):
        return {}
    out: dict[float, float] = {}
    for key, value in raw.items():
        try:
            pct = float(key)
        except ValueError:
            continue
        # "0.00" keys (fio 2.x, 3.1) are unused slots of the percentile list.
        if pct <= 0 or not isinstance(value, int | float) or isinstance(value, bool):
            continue
        # A negative or non-finite latency is no reading (and a negative one would
        # pass a latency threshold).
        if not math.isfinite(value) or value < 0:
            continue
        out[round(pct, 4)] = float(value) / scale
    return out


def _bins(block: dict[str, Any]) -> dict[int, int]:
    raw = block.get("bins")
    if not isinstance(raw, dict):
        return {}
    out: dict[int, int] = {}
    for key, count in raw.items():
        # fio 3.x keys are bucket values in ns; fio 2.x JSON+ used bucket indices
        # plus "FIO_IO_U_PLAT_*" constants: those are not latencies, so skip them.
        if (not key.isdigit() or len(key) > MAX_INT_DIGITS or not isinstance(count, int)
                or count <= 0):
            continue
        out[int(key)] = out.get(int(key), 0) + count
    return out


def _latency_block(direction: dict[str, Any]) -> tuple[dict[str, Any], float, str]:
    """The latency object that carries the percentiles, its scale to seconds, its basis."""
    candidates = (
        ("clat_ns", _NS_PER_S, "clat"),
        ("lat_ns", _NS_PER_S, "lat"),
        ("clat", _US_PER_S, "clat"),  # fio 2.x: microseconds
        ("lat", _US_PER_S, "lat"),
    )
    present = [(direction[k], s, b) for k, s, b in candidates if isinstance(direction.get(k), dict)]
    for block, scale, basis in present:
        if "percentile" in block or "bins" in block:
            return block, scale, basis
    if present:
        return present[0]
    return {}, _NS_PER_S, "clat"


# Printed in every read/write/trim object by every fio version (stat.c
# show_ddir_status_json), with "bw" (KiB/s) or 3.x's "bw_bytes"; the others are
# optional here.
_REQUIRED_FIGURES = ("iops",)


def _figure(raw: dict[str, Any], key: str, where: str) -> float:
    """A figure of a direction object: a finite number >= 0 (fio prints numbers,
    some builds as strings), or 0 when an optional one is absent. Anything else
    is a ParseError: a missing, null or negative "iops" read as 0 would be a
    figure that fio never printed."""
    if key not in raw:
        if key in _REQUIRED_FIGURES:
            raise ParseError(TOOL, f"{where} has no {key!r}")
        return 0.0
    value = raw[key]
    number = None if isinstance(value, bool) else _number(value, default=math.nan)
    if number is None or math.isnan(number) or number < 0:
        raise ParseError(TOOL, f"{where}.{key} is {str(value)[:40]!r}, not a figure "
                               "(a number >= 0)")
    return number


def _direction(raw: Any, v2: bool, where: str) -> DirectionStats | None:
    if not isinstance(raw, dict):
        return None
    iops = _figure(raw, "iops", where)
    # "bw" is KiB/s in every version; fio 3.x adds "bw_bytes" in bytes/s.
    if "bw" not in raw and "bw_bytes" not in raw:
        raise ParseError(TOOL, f"{where} has neither 'bw' nor 'bw_bytes'")
    kib = _figure(raw, "bw", where) * 1024
    bandwidth = _figure(raw, "bw_bytes", where) if "bw_bytes" in raw else kib
    if "io_kbytes" in raw:
        io_bytes = int(_figure(raw, "io_kbytes", where) * 1024)
    elif v2:
        io_bytes = int(_figure(raw, "io_bytes", where) * 1024)  # fio 2.x: KiB
    else:
        io_bytes = int(_figure(raw, "io_bytes", where))
    runtime_s = _figure(raw, "runtime", where) / 1000.0
    total_ios = int(_figure(raw, "total_ios", where))
    if total_ios == 0 and iops > 0 and runtime_s > 0:
        total_ios = round(iops * runtime_s)
    if iops <= 0 and bandwidth <= 0 and io_bytes <= 0:
        return None  # this direction did no I/O
    block, scale, basis = _latency_block(raw)
    mean = block.get("mean")
    return DirectionStats(
        iops=iops,
        bytes_per_second=bandwidth,
        io_bytes=io_bytes,
        total_ios=total_ios,
        runtime_s=runtime_s,
        mean_latency_s=(_number(mean) / scale if isinstance(mean, int | float)
                        and math.isfinite(mean) and mean >= 0 else None),
        percentiles=_percentiles(block, scale),
        basis=basis,
        bins=_bins(block),
    )


def _options(raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict):
        return {}
    return {str(k): str(v) for k, v in raw.items()}


def _jobs_of(document: dict[str, Any]) -> list[FioJob]:
    version = str(document.get("fio version", ""))
    v2 = version.startswith("fio-2.") or version.startswith("fio-1.")
    global_options = _options(document.get("global options"))
    jobs = document.get("jobs")
    if not isinstance(jobs, list):
        return []
    out: list[FioJob] = []
    for index, raw in enumerate(jobs):
        if not isinstance(raw, dict):
            continue
        directions = {}
        for name in DIRECTIONS:
            stats = _direction(raw.get(name), v2, f"jobs[{index}].{name}")
            if stats is not None:
                directions[name] = stats
        out.append(
            FioJob(
                name=str(raw.get("jobname", "")),
                groupid=int(_number(raw.get("groupid"))),
                error=int(_number(raw.get("error"))),
                options={**global_options, **_options(raw.get("job options"))},
                directions=directions,
            )
        )
    return out


def _strerror(errno: int) -> str:
    try:
        return os.strerror(errno)
    except (OverflowError, ValueError):
        return "unknown error"


def parse_fio_report(text: str) -> FioReport:
    """Read fio's JSON/JSON+ output; raise ParseError or ToolFailed (job error).

    Several documents: entries are keyed by (jobname, groupid, n-th clone), and a
    later document replaces an earlier entry with the same key (interim status
    reports are cumulative, the final report comes last); entries of other jobs
    are kept, so two runs written one after the other are both read.
    """
    documents, notes = _json_documents(text)
    for document in documents:
        if not isinstance(document.get("jobs"), list):
            keys = ", ".join(list(document)[:8])
            raise ParseError(TOOL, f"a JSON document without a 'jobs' list (keys: {keys})",
                             text.strip()[:300])
    if not documents:
        words = "; ".join(notes[-5:]) or "empty output"
        raise ParseError(TOOL, f"no fio JSON report in the output ({words})", text.strip()[:300])
    merged: dict[tuple[str, int, int], FioJob] = {}
    version = ""
    for document in documents:
        version = str(document.get("fio version", version))
        seen: dict[tuple[str, int], int] = {}
        for job in _jobs_of(document):
            n = seen.get((job.name, job.groupid), 0)
            seen[(job.name, job.groupid)] = n + 1
            merged[(job.name, job.groupid, n)] = job
    jobs = list(merged.values())
    failed = [j for j in jobs if j.error]
    if failed:
        described = ", ".join(f"job {j.name!r}: error {j.error} ({_strerror(j.error)})"
                              for j in failed)
        said = "; ".join(n for n in notes if n.startswith("fio:"))
        raise ToolFailed(TOOL, described + (f"; fio said: {said}" if said else ""))
    if not jobs:
        raise ParseError(TOOL, "the fio report lists no job", text.strip()[:300])
    return FioReport(version=version, jobs=jobs, notes=notes)


# --- summing several entries -----------------------------------------------------------


def histogram_percentile(bins: dict[int, int], pct: float) -> float:
    """fio's rule (stat.c calc_clat_percentiles) on merged buckets; ns in, ns out."""
    total = sum(bins.values())
    if total == 0:
        raise ValueError("empty histogram")
    running = 0
    for value in sorted(bins):
        running += bins[value]
        if running >= pct / 100.0 * total:
            return float(value)
    return float(max(bins))


def summarize(jobs: Iterable[FioJob], direction: str) -> DirectionSummary | None:
    """Sum IOPS and bytes of the entries that did I/O in ``direction``; merge latency."""
    stats = [j.directions[direction] for j in jobs if direction in j.directions]
    if not stats:
        return None
    bases = {s.basis for s in stats}
    basis = stats[0].basis if len(bases) == 1 else "mixed"
    bins: dict[int, int] = {}
    if len(stats) == 1:
        percentiles, merge = dict(stats[0].percentiles), "single"
        bins = dict(stats[0].bins)
    elif all(s.bins for s in stats) and len(bases) == 1:
        for s in stats:
            for value, count in s.bins.items():
                bins[value] = bins.get(value, 0) + count
        wanted = sorted(set().union(*(s.percentiles for s in stats)) or REPORTED_PERCENTILES)
        percentiles = {p: histogram_percentile(bins, p) / _NS_PER_S for p in wanted}
        merge = "histogram"
    else:
        common = set.intersection(*(set(s.percentiles) for s in stats))
        percentiles = {p: max(s.percentiles[p] for s in stats) for p in sorted(common)}
        merge = "max"
    return DirectionSummary(
        iops=sum(s.iops for s in stats),
        bytes_per_second=sum(s.bytes_per_second for s in stats),
        io_bytes=sum(s.io_bytes for s in stats),
        entries=len(stats),
        percentiles=percentiles,
        basis=basis,
        latency_merge=merge,
        bins=bins,
    )


def merge_summaries(parts: Sequence[DirectionSummary]) -> DirectionSummary:
    """Several groups (drives run at once) as one: sums, and latency merged as above."""
    if len(parts) == 1:
        return parts[0]
    jobs = [
        FioJob(name=str(i), groupid=i, error=0, options={},
               directions={"x": DirectionStats(p.iops, p.bytes_per_second, p.io_bytes, 0, 0.0,
                                               None, p.percentiles, p.basis, p.bins)})
        for i, p in enumerate(parts)
    ]
    merged = summarize(jobs, "x")
    assert merged is not None
    return DirectionSummary(merged.iops, merged.bytes_per_second, merged.io_bytes,
                            sum(p.entries for p in parts), merged.percentiles, merged.basis,
                            merged.latency_merge, merged.bins)


def percentile(summary: DirectionSummary, pct: float) -> float | None:
    for key, value in summary.percentiles.items():
        if abs(key - pct) < 1e-6:
            return value
    return None


# --- measurements for `bench-agent parse fio FILE` -------------------------------------

_RANDOM = {"randread": "read", "randwrite": "write", "randrw": "", "randtrim": "trim"}
_SEQUENTIAL = {"read": "read", "write": "write", "rw": "", "readwrite": "", "trim": "trim"}


def parse_size(text: str) -> int | None:
    """fio's size syntax ("4k", "1M", "1MiB", "4096"): binary multiples, as fio's
    default kb_base=1024 reads them (HOWTO, "kb_base")."""
    m = re.fullmatch(r"\s*(\d+)\s*([kmgt]?)(i?b)?\s*", text, re.IGNORECASE)
    if not m:
        return None
    power = " kmgt".index(m.group(2).lower() or " ")
    return int(m.group(1)) * (1 << (10 * power))


def family(options: dict[str, str], direction: str) -> str | None:
    """The catalog family ("randread_4k") a pure 4 KiB random or 1 MiB sequential
    job belongs to; None for other shapes (mixed, other block sizes)."""
    rw = options.get("rw", options.get("readwrite", "read"))
    bs = parse_size(options.get("bs", "4k"))
    if _RANDOM.get(rw) == direction and direction in ("read", "write") and bs == 4096:
        return f"rand{direction}_4k"
    if _SEQUENTIAL.get(rw) == direction and direction in ("read", "write") and bs == 1 << 20:
        return f"seq{direction}_1m"
    return None


def summary_measurements(
    summary: DirectionSummary,
    prefix: str,
    random: bool | None,
    check: str,
    device: str,
    version: str,
    params: dict[str, Any],
) -> list[Measurement]:
    """IOPS (random), bytes/s (sequential) or both (None), and the latency percentiles."""
    common: dict[str, Any] = dict(check=check, device=device, tool=TOOL, tool_version=version)
    full_params = {**params, "latency_basis": summary.basis,
                   "latency_merge": summary.latency_merge, "entries": summary.entries}
    stats = {"iops": summary.iops, "bytes_per_second": summary.bytes_per_second,
             "io_bytes": float(summary.io_bytes)}
    out = []
    if random is not False:
        out.append(Measurement(metric=f"{prefix}_iops", value=summary.iops, unit=Unit.IOPS,
                               params=full_params, stats=stats, **common))
    if random is not True:
        out.append(Measurement(metric=f"{prefix}_bandwidth", value=summary.bytes_per_second,
                               unit=Unit.BYTES_PER_SECOND, params=full_params, stats=stats,
                               **common))
    for pct in REPORTED_PERCENTILES:
        value = percentile(summary, pct)
        if value is None:
            continue
        suffix = f"{pct:g}".replace(".", "_")
        out.append(Measurement(metric=f"{prefix}_latency_p{suffix}", value=value,
                               unit=Unit.SECONDS, params=full_params, **common))
    return out


def parse_fio(text: str) -> list[Measurement]:
    """`bench-agent parse fio FILE`: measurements of every group and direction.

    A pure 4 KiB random or 1 MiB sequential job gets the catalog's names
    (storage.randread_4k_iops, ...); other shapes get "storage.fio_<direction>"
    names (outside the catalog: for reading, not for thresholds).
    """
    report = parse_fio_report(text)
    groups: dict[int, list[FioJob]] = {}
    for job in report.jobs:
        groups.setdefault(job.groupid, []).append(job)
    out: list[Measurement] = []
    for jobs in groups.values():
        options = jobs[0].options
        device = tool_name(TOOL, options.get("filename", jobs[0].name))
        for direction in ("read", "write"):
            summary = summarize(jobs, direction)
            if summary is None:
                continue
            fam = family(options, direction)
            # A catalog family has one headline figure; other shapes get both.
            random = options.get("rw", "read").startswith("rand") if fam else None
            prefix = f"storage.{fam}" if fam else f"storage.fio_{direction}"
            check = f"storage.{fam.split('_')[0]}" if fam else "fio"
            keys = ("rw", "bs", "iodepth", "numjobs", "ioengine", "direct", "runtime", "ramp_time")
            params: dict[str, Any] = {k: options[k] for k in keys if k in options}
            out.extend(summary_measurements(summary, prefix, random, check, device,
                                            report.version, params))
    if not out:
        names = ", ".join(sorted({j.name for j in report.jobs}))
        raise ParseError(TOOL, f"no job did any I/O (jobs: {names})", text.strip()[:300])
    return out
