"""nccl-tests (all_reduce_perf and the other *_perf programs): read their stdout.

Layout per NVIDIA/nccl-tests src/common.cu and util.cu (writeDeviceReport,
writeResultHeader, writeResultFooter):
a "#" header, a two-line column header, one row per size, "# Out of bounds
values" and "# Avg bus bandwidth" footers. Columns are read by their header
names, never positions: versions before ~2.10 have no ``root`` column, versions
before ~2021 print ``error`` (a max delta such as "2e-07") instead of ``#wrong``,
and wide figures lose their decimals ("12646" for 12646.00 us).

One run prints one table: a second column header in a run, a size printed
twice, a second run of the same collective, or a line that starts with a size
but does not read as a row is a ParseError quoting it, never a figure.

nccl-tests' GB/s is decimal (algbw = bytes / 1e9 / seconds, common.cu), so we
store bytes/s = GB/s * 1e9. busbw = algbw * factor: 2(n-1)/n for all_reduce,
(n-1)/n for reduce_scatter, all_gather and alltoall, 1 for broadcast and reduce
(nccl-tests doc/PERFORMANCE.md).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from bench_agent.core.errors import ParseError, ToolFailed
from bench_agent.core.model import Measurement
from bench_agent.core.strict_json import check_size, snippet
from bench_agent.core.units import Unit

TOOL = "nccl-tests"
GB = 1e9
KNOWN = ("all_reduce", "all_gather", "reduce_scatter", "alltoall", "broadcast", "reduce",
         "sendrecv")
# [ \t]*, not \s*: \s crosses newlines, and from each of a million blank lines it
# would rescan all the blank lines after it (quadratic).
_FAILURE_RE = re.compile(r"Test (?:NCCL|CUDA) failure|NCCL WARN|^[ \t]*Segmentation fault",
                         re.MULTILINE)
# Fields of the "# nThread ..." line; "iters" must not match "warmup iters".
_HEADER_FIELDS = {
    "nThread": r"nThread (\d+)", "nGpus": r"nGpus (\d+)", "minBytes": r"minBytes (\d+)",
    "maxBytes": r"maxBytes (\d+)", "warmup_iters": r"warmup iters: (\d+)",
    "iters": r"(?<!warmup )(?<!agg )iters: (\d+)", "validation": r"validation: (\d+)",
}
_NAME_RE = re.compile(r"\b(all_reduce|all_gather|reduce_scatter|alltoall|broadcast|reduce|"
                      r"sendrecv|hypercube|gather|scatter)_perf\b")


def bus_factor(collective: str, ranks: int) -> float:
    """busbw / algbw of a collective over ``ranks`` ranks (nccl-tests PERFORMANCE.md)."""
    if ranks < 1:
        raise ValueError("ranks must be >= 1")
    if collective == "all_reduce":
        return 2 * (ranks - 1) / ranks
    if collective in ("all_gather", "reduce_scatter", "alltoall"):
        return (ranks - 1) / ranks
    return 1.0


@dataclass
class Row:
    size: int
    count: int
    dtype: str
    redop: str
    root: int | None
    # placement ("out-of-place" / "in-place") -> {"time_us", "algbw", "busbw", "wrong"|"error"}
    results: dict[str, dict[str, float | None]] = field(default_factory=dict)


@dataclass
class Table:
    collective: str | None
    ranks: int
    rows: list[Row]
    error_column: str  # "#wrong" (a count) or "error" (old: a max delta)
    out_of_bounds: int | None = None
    avg_busbw_gbs: float | None = None
    header: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _number(token: str) -> float | None:
    if token in ("N/A", "-"):
        return None
    value = float(token)
    return value if math.isfinite(value) else None


# What nccl-tests prints for the average of a run that went wrong (printf "%g"
# of NaN or an infinity, glibc's spelling): no figure, not a crash.
_NOT_A_FIGURE = ("nan", "-nan", "inf", "-inf")
_DECIMAL = re.compile(r"[0-9]{1,20}(?:\.[0-9]{0,20})?(?:[eE][-+]?[0-9]{1,3})?")


def _average(body: str, excerpt: str) -> float | None:
    """The figure of "# Avg bus bandwidth : 294.603", None for "-nan" or "inf" or
    nothing after the colon (an output cut there). A figure that is not a number
    >= 0 of at most 20 digits before the point (printf "%g" never prints more),
    or that overflows a float, is a ParseError: the line said it was a figure."""
    token = body.partition(":")[2].strip()
    if not token or token.lower() in _NOT_A_FIGURE:
        return None
    if _DECIMAL.fullmatch(token) is None or not math.isfinite(float(token)):
        raise ParseError(TOOL, f"the average bus bandwidth is not a figure: "
                               f"{snippet(body)}", excerpt)
    return float(token)


def _split_sections(text: str) -> list[list[str]]:
    """One section per run when a file holds several (each starts at "# nThread")."""
    sections: list[list[str]] = []
    current: list[str] = []
    has_header = False  # a flag, not a rescan of the section at every "# nThread"
    for line in text.splitlines():
        if line.startswith("# nThread") and has_header:
            sections.append(current)
            current, has_header = [], False
        current.append(line)
        has_header = has_header or _is_column_header(line)
    sections.append(current)
    return sections


def _is_column_header(line: str) -> bool:
    return line.startswith("#") and line.lstrip("# ").startswith("size")


def parse_table(lines: list[str], excerpt: str = "") -> Table:
    """The header facts, rows and footers of one run's output lines."""
    names: list[str] | None = None
    placements: list[str] = []
    rows: list[Row] = []
    ranks = 0
    header: dict[str, str] = {}
    collective: str | None = None
    oob: int | None = None
    avg: float | None = None
    seen: set[tuple[int, str, str, int | None]] = set()
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("#"):
            body = stripped.lstrip("#").strip()
            tokens = body.split()
            if re.match(r"Rank\s+\d+", body):
                ranks += 1
            elif body.startswith("Collective test starting:"):
                collective = body.split(":", 1)[1].strip().removesuffix("_perf")
            elif body.startswith("nThread"):
                header["line"] = body
                for key, pattern in _HEADER_FIELDS.items():
                    found = re.search(pattern, body)
                    if found:
                        header[key] = found.group(1)
            elif body.startswith("nccl-tests version"):
                header["version"] = tokens[2] if len(tokens) > 2 else ""
            elif body.startswith("out-of-place") or "out-of-place" in tokens:
                placements = [t for t in tokens if t in ("out-of-place", "in-place")]
            elif tokens[:2] == ["size", "count"]:
                if names is not None:
                    # One run prints one table; a second header is a second table.
                    raise ParseError(TOOL, f"a second result table in one run: "
                                           f"{snippet(stripped)}", excerpt)
                names = tokens
            elif body.startswith("Out of bounds values"):
                match = re.search(r":\s*(\d+)", body)
                oob = int(match.group(1)) if match else None
            elif body.startswith("Avg bus bandwidth"):
                avg = _average(body, excerpt)
            continue
        tokens = stripped.split()
        if names is None or not tokens or not tokens[0].isdigit():
            continue  # leading noise, NCCL INFO lines ("host:pid:tid ..."), prompts
        # A line that starts with a size is a row; one that does not read as a
        # row is garbage in the table, not something to skip.
        row = _parse_row(tokens, names, placements or ["out-of-place", "in-place"])
        if row is None:
            raise ParseError(TOOL, f"a result row that does not fit the header "
                                   f"({len(names)} columns): {snippet(stripped)}", excerpt)
        row_key = (row.size, row.dtype, row.redop, row.root)
        if row_key in seen:
            raise ParseError(TOOL, f"size {row.size} ({row.dtype}, {row.redop}) printed "
                                   f"twice: {snippet(stripped)}", excerpt)
        seen.add(row_key)
        rows.append(row)
    if names is None:
        raise ParseError(TOOL, "no result header (a '#  size  count  type ...' line)", excerpt)
    error_column = "#wrong" if "#wrong" in names else "error"
    return Table(collective, ranks, rows, error_column, oob, avg, header)


def _parse_row(tokens: list[str], names: list[str], placements: list[str]) -> Row | None:
    # A -S timestamp adds "YYYY-MM-DD HH:MM:SS" after the named columns.
    if len(tokens) < len(names):
        return None
    try:
        fixed: dict[str, str] = {}
        results: dict[str, dict[str, float | None]] = {}
        group = -1
        for name, token in zip(names, tokens, strict=False):
            if name == "timestamp":
                break  # -S: "YYYY-MM-DD HH:MM:SS", not a figure
            if name == "time":
                group += 1
            if group < 0:
                fixed[name] = token
                continue
            placement = placements[group] if group < len(placements) else f"group{group}"
            key = {"time": "time_us", "#wrong": "wrong"}.get(name, name)
            results.setdefault(placement, {})[key] = _number(token)
        root = int(fixed["root"]) if "root" in fixed else None
        return Row(int(fixed["size"]), int(fixed["count"]), fixed.get("type", ""),
                   fixed.get("redop", ""), root, results)
    except (KeyError, ValueError):
        return None


def infer_collective(table: Table, text: str) -> tuple[str, str]:
    """The collective's name and how we know it (header, command line, or the ratio)."""
    if table.collective:
        return table.collective, "header"
    named = _NAME_RE.search(text)
    if named:
        return named.group(1), "command line"
    # Old versions print no name: busbw/algbw is the bus factor, redop tells a
    # reduction from a copy (FORMAT_SPEC.txt; PERFORMANCE.md).
    for row in reversed(table.rows):
        out = next(iter(row.results.values()), {})
        algbw, busbw = out.get("algbw"), out.get("busbw")
        if algbw and busbw and table.ranks > 1:
            ratio = busbw / algbw
            reduces = row.redop not in ("none", "")
            if math.isclose(ratio, bus_factor("all_reduce", table.ranks), rel_tol=0.05):
                return "all_reduce", "bus factor"
            if math.isclose(ratio, bus_factor("all_gather", table.ranks), rel_tol=0.05):
                return ("reduce_scatter" if reduces else "all_gather"), "bus factor"
            return ("reduce" if reduces else "broadcast"), "bus factor"
    raise ParseError(TOOL, "cannot tell which collective ran (no name, no usable rows)",
                     text[:300])


def table_measurements(table: Table, collective: str, how: str) -> list[Measurement]:
    """busbw/algbw at the largest size (out-of-place), #wrong over all sizes, average."""
    if not table.rows:
        raise ParseError(TOOL, "a result header but no result rows")
    check = f"nccl.{collective}"
    largest = max(table.rows, key=lambda r: r.size)
    best = largest.results.get("out-of-place") or next(iter(largest.results.values()))
    rows_out = [{"size_bytes": r.size, "count": r.count, "type": r.dtype, "redop": r.redop,
                 "root": r.root, **{p: v for p, v in r.results.items()}} for r in table.rows]
    params: dict[str, Any] = {
        "collective": collective, "collective_from": how, "ranks": table.ranks,
        "size_bytes": largest.size, "placement": "out-of-place",
        "time_us": best.get("time_us"), "header": table.header, "rows": rows_out,
        "error_column": table.error_column,
    }
    if table.out_of_bounds is not None:
        params["out_of_bounds_values"] = table.out_of_bounds
    out: list[Measurement] = []

    def add(metric: str, value: float, unit: Unit) -> None:
        out.append(Measurement(check=check, metric=f"nccl.{collective}_{metric}", value=value,
                               unit=unit, tool=TOOL, params=params))

    if best.get("busbw") is not None:
        add("busbw", round(float(best["busbw"] or 0) * GB), Unit.BYTES_PER_SECOND)
    if best.get("algbw") is not None:
        add("algbw", round(float(best["algbw"] or 0) * GB), Unit.BYTES_PER_SECOND)
    if table.error_column == "#wrong":
        checked = [res["wrong"] for r in table.rows for res in r.results.values()
                   if res.get("wrong") is not None]
        if checked:  # all "N/A" means validation was off (-c 0): nothing to count
            add("wrong", float(sum(v for v in checked if v is not None)), Unit.COUNT)
    elif table.out_of_bounds is not None:
        # Old releases print a max delta ("error") instead of #wrong; their footer's
        # "Out of bounds values" count is the correctness figure then, judged by
        # the same "no wrong value" threshold.
        params["wrong_from"] = "Out of bounds values"
        add("wrong", float(table.out_of_bounds), Unit.COUNT)
    if table.avg_busbw_gbs is not None:
        add("avg_busbw", round(table.avg_busbw_gbs * GB), Unit.BYTES_PER_SECOND)
    if not out:
        raise ParseError(TOOL, "rows without busbw or algbw figures")
    return out


def parse_nccl_tests(text: str) -> list[Measurement]:
    """Measurements of every run in an nccl-tests output (the `parse` entry point)."""
    check_size(TOOL, text)
    failure = _FAILURE_RE.search(text)
    out: list[Measurement] = []
    runs: dict[str, str] = {}
    for lines in _split_sections(text):
        if not any(_is_column_header(ln) for ln in lines):
            continue
        section = "\n".join(lines)
        table = parse_table(lines, section[:300])
        if not table.rows and failure:
            break
        collective, how = infer_collective(table, section)
        if collective in runs:
            # Runs of different collectives in one file are read apart; a second run
            # of the same one gives every metric twice, and which stands is unknown.
            raise ParseError(TOOL, f"a second {collective} run in one output "
                                   f"({snippet(table.header.get('line', ''))} after "
                                   f"{snippet(runs[collective])})")
        runs[collective] = table.header.get("line", "")
        out.extend(table_measurements(table, collective, how))
    if not out:
        if failure:
            start = max(0, failure.start() - 100)
            raise ToolFailed(TOOL, text[start:failure.start() + 300])
        raise ParseError(TOOL, "no nccl-tests result table found", text[:300])
    return out
