"""Fleet analysis: compare nodes with each other, find outliers, derive baselines.

A fleet of healthy nodes of one model is its own best reference: a node whose
figure sits far from the fleet's median, in the bad direction, is worth a look
even when it passes the guide. "Far" is measured with the modified z-score of
Iglewicz and Hoaglin (1993), 0.6745 · (x − median) / MAD, robust to the very
outliers it looks for; they suggest |z| > 3.5 as the outlier line.

Input is the newest report of each node (a folder of report files, signed or
not, or a collector's API). Per node, a metric measured on several devices
(drives, GPUs) is reduced to its worst device: a node is as good as its slowest
GPU. pandas is imported here only, never at `bench-agent --help` time.
"""

from __future__ import annotations

import csv
import io
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench_agent.checks import metric_catalog
from bench_agent.core.config_rules import FactValue
from bench_agent.core.errors import ReportError, StrictJSONError
from bench_agent.core.units import Unit, format_value

if TYPE_CHECKING:
    import pandas as pd

    from bench_agent.fleet.drift import Drift

# Iglewicz & Hoaglin's constants: 0.6745 is the 0.75 quantile of the standard
# normal, so the modified z of a normal sample has a standard deviation of ~1.
MODIFIED_Z = 0.6745
OUTLIER_Z = 3.5
# When more than half the nodes share a value the MAD is 0; IBM SPSS's fallback
# scales the mean absolute deviation by 1.253314 (= sqrt(pi/2)) instead.
MEAN_AD_SCALE = 1.253314


@dataclass
class FleetData:
    """Long-format rows (node, report, time, metric, device, value, unit)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    reports: int = 0
    # node -> (finished_at, configuration facts) of its newest report that has them
    # (fleet/drift.py).
    facts: dict[str, tuple[str, dict[str, FactValue]]] = field(default_factory=dict)

    def add_facts(self, report: dict[str, Any]) -> None:
        from bench_agent.fleet.drift import node_facts_of

        facts = node_facts_of(report)
        if facts is None:
            return
        node, finished = str(report.get("host", "")), str(report.get("finished_at", ""))
        if node not in self.facts or self.facts[node][0] < finished:
            self.facts[node] = (finished, facts)

    def facts_by_node(self) -> dict[str, dict[str, FactValue]]:
        return {node: facts for node, (_, facts) in self.facts.items()}


def _rows_of(report: dict[str, Any]) -> list[dict[str, Any]]:
    node = str(report.get("host", ""))
    finished = str(report.get("finished_at", ""))
    report_id = str(report.get("report_id", ""))
    return [{"node": node, "report_id": report_id, "finished_at": finished,
             "metric": m["metric"], "device": m.get("device", ""), "value": float(m["value"]),
             "unit": m["unit"]}
            for m in report.get("measurements", [])
            if isinstance(m, dict) and "metric" in m and "value" in m]


def load_dir(folder: Path) -> FleetData:
    """Every report under folder (signed envelopes or plain JSON), recursively."""
    from bench_agent.report.attest import read_report_file

    data = FleetData()
    for path in sorted(folder.rglob("*.json")):
        if path.parent.name == "schema":
            continue
        try:
            # As strictly as verify, report show and the collector read reports: a
            # duplicate "value" or a NaN is not a figure to compare nodes by.
            raw, _envelope = read_report_file(path)
        except ReportError as exc:
            data.unreadable.append(str(exc))
            continue
        if "measurements" not in raw:
            data.unreadable.append(f"{path}: not a report")
            continue
        try:
            rows = _rows_of(raw)
        except (TypeError, ValueError) as exc:  # a value that is no number, a list that is not
            data.unreadable.append(f"{path}: unreadable measurements: {exc}")
            continue
        data.reports += 1
        data.rows.extend(rows)
        data.add_facts(raw)
    return data


def load_collector(url: str, timeout: float = 60) -> FleetData:
    """The newest report of each node, from the collector's read API.

    Raises ReportError when the collector cannot be reached or answers with
    something that is not its API's JSON.
    """
    try:
        return _load_collector(url.rstrip("/"), timeout)
    except (OSError, ValueError) as exc:  # URLError and HTTPError are OSErrors
        raise ReportError(f"cannot read reports from the collector {url}: {exc}") from exc
    except (KeyError, TypeError, AttributeError) as exc:
        raise ReportError(f"the collector {url} answered in an unexpected shape: "
                          f"{type(exc).__name__}: {exc}") from exc


def _load_collector(base: str, timeout: float) -> FleetData:
    data = FleetData()

    from bench_agent.core.strict_json import loads_strict

    def get(path: str) -> Any:
        with urllib.request.urlopen(base + path, timeout=timeout) as reply:
            try:
                return loads_strict(reply.read())
            except StrictJSONError as exc:
                raise ValueError(f"{path}: not the collector's JSON: {exc}") from exc

    for node in _all_nodes(get):
        name = node["name"] if isinstance(node, dict) else str(node)
        listing = get(f"/v1/reports?node={urllib.parse.quote(name)}")
        reports = listing.get("reports", listing) if isinstance(listing, dict) else listing
        if not reports:
            continue
        newest = max(reports, key=lambda r: str(r.get("finished_at") or r.get("received_at")))
        full = get(f"/v1/reports/{newest['id']}")
        report = full.get("report", full) if isinstance(full, dict) else full
        data.reports += 1
        data.rows.extend(_rows_of(report))
        data.add_facts(report)
    return data


def _all_nodes(get: Callable[[str], Any]) -> Iterator[Any]:
    """Every node the collector lists, page after page (GET /v1/nodes answers a page
    and the name to ask after for the next; a collector before paging, all at once)."""
    path = "/v1/nodes"
    while True:
        page = get(path)
        yield from page.get("nodes", page) if isinstance(page, dict) else page
        following = page.get("next") if isinstance(page, dict) else None
        if following is None:
            return
        path = f"/v1/nodes?{urllib.parse.urlencode({'after': following})}"


def node_metric_table(data: FleetData) -> pd.DataFrame:
    """Nodes × metrics: each node's newest report, each metric at its worst device."""
    import pandas as pd

    if not data.rows:
        return pd.DataFrame()
    long = pd.DataFrame.from_records(data.rows)
    newest = long.groupby("node")["finished_at"].transform("max")
    long = long[long["finished_at"] == newest]
    catalog = metric_catalog()
    higher = long["metric"].map(lambda m: catalog[m].higher_is_better if m in catalog else True)
    # Worst device first: lowest where higher is better, highest otherwise.
    long = long.assign(score=long["value"].where(higher, -long["value"]))
    worst = long.sort_values("score").groupby(["node", "metric"], as_index=False).first()
    return worst.pivot(index="node", columns="metric", values="value").sort_index()


@dataclass(frozen=True)
class MetricStats:
    metric: str
    unit: Unit | None
    n: int
    median: float
    mad: float
    higher_is_better: bool


@dataclass(frozen=True)
class Outlier:
    node: str
    metric: str
    value: float
    z: float
    median: float


@dataclass
class Comparison:
    table: pd.DataFrame
    stats: list[MetricStats]
    outliers: list[Outlier]
    z_limit: float
    # Configuration drift (fleet/drift.py), set by the caller that has the facts.
    drift: list[Drift] = field(default_factory=list)


def modified_z(values: pd.Series, median: float, mad: float) -> pd.Series:
    if mad > 0:
        return MODIFIED_Z * (values - median) / mad
    mean_ad = float((values - median).abs().mean())
    if mean_ad == 0:
        return values * 0.0
    return (values - median) / (MEAN_AD_SCALE * mean_ad)


def compare(table: pd.DataFrame, z_limit: float = OUTLIER_Z) -> Comparison:
    stats: list[MetricStats] = []
    outliers: list[Outlier] = []
    catalog = metric_catalog()
    for metric in table.columns:
        column = table[metric].dropna()
        if column.empty:
            continue
        median = float(column.median())
        mad = float((column - median).abs().median())
        info = catalog.get(metric)
        higher = info.higher_is_better if info else True
        stats.append(MetricStats(metric, info.unit if info else None, len(column), median, mad,
                                 higher))
        if len(column) < 3:
            continue  # no fleet to speak of
        z = modified_z(column, median, mad)
        bad = z < -z_limit if higher else z > z_limit
        for node in column[bad].index:
            outliers.append(Outlier(str(node), metric, float(column[node]), float(z[node]),
                                    median))
    outliers.sort(key=lambda o: (o.metric, -abs(o.z)))
    return Comparison(table, stats, outliers, z_limit)


def _fmt(value: float, unit: Unit | None) -> str:
    return format_value(value, unit) if unit is not None else f"{value:.4g}"


def render_text(result: Comparison) -> str:
    lines = [f"{len(result.table)} node(s); outliers: modified z beyond {result.z_limit:g} "
             "in the bad direction", "",
             f"{'metric':<36} {'n':>5} {'median':>14} {'MAD':>14}  better"]
    for s in result.stats:
        lines.append(f"{s.metric:<36} {s.n:>5} {_fmt(s.median, s.unit):>14} "
                     f"{_fmt(s.mad, s.unit):>14}  {'higher' if s.higher_is_better else 'lower'}")
    lines.append("")
    if not result.outliers:
        lines.append("no outliers")
    units = {s.metric: s.unit for s in result.stats}
    for o in result.outliers:
        unit = units.get(o.metric)
        lines.append(f"OUTLIER {o.node}: {o.metric} = {_fmt(o.value, unit)} "
                     f"(fleet median {_fmt(o.median, unit)}, z = {o.z:+.1f})")
    from bench_agent.fleet.drift import render_drift_text

    lines += ["", *render_drift_text(result.drift, len(result.table))]
    return "\n".join(lines) + "\n"


CSV_COLUMNS = ("node", "metric", "value", "unit", "fleet_median", "fleet_mad", "modified_z",
               "outlier")


def render_csv(result: Comparison) -> str:
    """One row per node and metric, with the z-score and the outlier flag.

    RFC 4180 through the csv module: a node name with a comma, a quote or a line
    break is quoted (names come from reports, untrusted); floats are written with
    repr, so they read back to the same value.
    """
    flagged = {(o.node, o.metric) for o in result.outliers}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for s in result.stats:
        column = result.table[s.metric].dropna()
        z = modified_z(column, s.median, s.mad)
        for node, value in column.items():
            writer.writerow([node, s.metric, repr(float(value)), s.unit.value if s.unit else "",
                             repr(s.median), repr(s.mad), f"{float(z[node]):.4f}",
                             str((node, s.metric) in flagged).lower()])
    return out.getvalue()


def render_html(result: Comparison) -> str:
    """A self-contained page (no internet): a histogram per metric, outliers marked.

    Jinja2 with autoescape on (templates/fleet.html): node and metric names come
    from reports and are escaped wherever they land; the SVG histograms
    (report/plots.py) escape their own texts.
    """
    from jinja2 import Environment, FileSystemLoader, select_autoescape
    from markupsafe import Markup

    from bench_agent.report.plots import histogram

    env = Environment(loader=FileSystemLoader(Path(__file__).resolve().parent / "templates"),
                      autoescape=select_autoescape(["html"], default_for_string=True,
                                                   default=True))
    units = {s.metric: s.unit for s in result.stats}
    outliers = [{"node": o.node, "metric": o.metric, "z": o.z,
                 "value": _fmt(o.value, units.get(o.metric)),
                 "median": _fmt(o.median, units.get(o.metric))}
                for o in result.outliers]
    metrics = []
    for s in result.stats:
        column = result.table[s.metric].dropna()
        unit = s.unit.value if s.unit else ""
        marks = [o.value for o in result.outliers if o.metric == s.metric]
        svg = histogram([float(v) for v in column], unit, f"{s.metric} ({unit})", marks)
        metrics.append({"name": s.metric, "n": s.n, "median": _fmt(s.median, s.unit),
                        "mad": _fmt(s.mad, s.unit), "svg": Markup(svg)})
    from bench_agent.core.config_rules import shown

    drift = [{"node": d.node, "fact": d.fact, "value": shown(d.value),
              "fleet": shown(d.fleet.common), "have": round(d.fleet.share * d.fleet.nodes),
              "of": d.fleet.nodes} for d in result.drift]
    return env.get_template("fleet.html").render(nodes=len(result.table), outliers=outliers,
                                                 metrics=metrics, drift=drift)


def generate_baseline(result: Comparison, name: str, source: str,
                      configuration: list[dict[str, Any]] | None = None) -> str:
    """A baseline YAML from a healthy fleet: per metric the median, the limit a node
    must meet (median ∓ z_limit robust deviations) and the fraction that misses it;
    and the expected ``configuration`` (fleet/drift.expected_configuration)."""
    import yaml

    figures: dict[str, Any] = {}
    for s in result.stats:
        if s.unit is None:
            continue
        column = result.table[s.metric].dropna()
        spread = s.mad / MODIFIED_Z if s.mad > 0 else float(
            MEAN_AD_SCALE * (column - s.median).abs().mean())
        if s.higher_is_better:
            limit = s.median - result.z_limit * spread
            failing = float((column < limit).mean())
            comparator = ">="
        else:
            limit = s.median + result.z_limit * spread
            failing = float((column > limit).mean())
            comparator = "<="
        figures[s.metric] = {
            "value": float(s.median), "unit": s.unit.value, "mad": float(s.mad),
            "comparator": comparator, "limit": float(limit), "nodes": s.n,
            "fail_fraction": round(failing, 6),
            "source": f"{source}: median of {s.n} nodes; limit = median "
                      f"{'-' if s.higher_is_better else '+'} {result.z_limit:g} x MAD/0.6745",
        }
    document: dict[str, Any] = {"kind": "fleet", "model": name, "nvml_names": [],
                                "figures": figures}
    if configuration:
        document["configuration"] = configuration
    header = (f"# Fleet baseline {name}: generated by `bench-agent baseline generate` from\n"
              f"# {source}. Use it as a profile: bench-agent run --profile THIS_FILE\n")
    return header + yaml.safe_dump(document, sort_keys=False)
