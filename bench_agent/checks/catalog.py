"""The checks and their metrics as people and tools read them, derived from the registry.

``bench-agent list --metrics`` prints ``metric_rows`` (a table; ``--json``:
``metric_records``), ``bench-agent list --markdown`` prints ``readme_block``, the
README's check table between its markers, and ``snapshot`` is what
tests/data/catalog.json pins. Nothing here is written by hand: a check's module
declares it (``Check.name``, ``description``, ``metrics``).
"""

from __future__ import annotations

from typing import Any

from bench_agent.checks import check_class, check_names, metric_catalog

METRIC_COLUMNS = ("metric", "unit", "better", "per device", "check", "meaning")
README_BEGIN = ("<!-- checks:begin (generated from the checks by scripts/gen-catalog;"
                " do not edit) -->")
README_END = "<!-- checks:end -->"


def metric_records() -> list[dict[str, Any]]:
    """One JSON object per metric, in registry order."""
    return [{"metric": info.name, "unit": info.unit.value,
             "better": "higher" if info.higher_is_better else "lower",
             "per_device": info.per_device, "checks": list(info.checks),
             "meaning": info.meaning}
            for info in metric_catalog().values()]


def metric_rows() -> list[tuple[str, str, str, str, str, str]]:
    """The rows of `bench-agent list --metrics`, columns METRIC_COLUMNS."""
    return [(r["metric"], r["unit"], r["better"], "yes" if r["per_device"] else "no",
             ", ".join(r["checks"]), r["meaning"]) for r in metric_records()]


def check_records() -> list[dict[str, Any]]:
    """One object per registered check: its name, domain, description, metric names."""
    out = []
    for name in check_names():
        cls = check_class(name)
        out.append({"check": name, "domain": cls.domain, "description": cls.description,
                    "metrics": [spec.name for spec in cls.metrics]})
    return out


def snapshot() -> dict[str, Any]:
    """The registry and the catalog as tests/data/catalog.json pins them."""
    return {"checks": check_records(), "metrics": metric_records()}


def _short(metric: str) -> str:
    # The check's row names the domain; the metric's own part is enough there.
    return metric.split(".", 1)[1]


def readme_block() -> str:
    """The README's check table, markers included (ends with a newline)."""
    lines = [README_BEGIN, "",
             "| check | domain | what it measures | metrics (`bench-agent list --metrics`) |",
             "|---|---|---|---|"]
    for record in check_records():
        metrics = ", ".join(f"`{_short(m)}`" for m in record["metrics"])
        lines.append(f"| `{record['check']}` | {record['domain']} | "
                     f"{record['description']} | {metrics} |")
    lines += ["", README_END]
    return "\n".join(lines) + "\n"


def replace_readme_block(text: str) -> str:
    """``text`` (the README) with its generated block rewritten; ValueError when the
    markers are missing or out of order."""
    start = text.find(README_BEGIN)
    end = text.find(README_END)
    if start < 0 or end < start:
        raise ValueError(f"README has no {README_BEGIN!r} ... {README_END!r} block")
    after = end + len(README_END)
    if text[after:after + 1] == "\n":
        after += 1
    return text[:start] + readme_block() + text[after:]
