"""Per-model baselines (suites/baselines/*.yaml): what a healthy GPU of a model reaches.

A baseline is chosen by the name NVML reports (nvmlDeviceGetName), compared
without case against the file's ``nvml_names``: exact names, so an "H100 PCIe" or
"H100 NVL" never borrows the SXM figures. A check that measured a metric with a
figure turns it into ``<metric>_baseline_fraction`` (measured / expected); the
profile fails it below a stated fraction and warns in a band above it. Rules stay
in profiles, numbers in baselines (superbench keeps the same split).

An unknown model gets no fraction measurements (those thresholds SKIP) and
``gpu.baseline_known`` = 0, which the profile turns into a WARN that says so: the
node is then judged by the guide's memory-class checks only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_agent.core.errors import ConfigError
from bench_agent.core.metrics import unknown_metric
from bench_agent.core.model import Measurement
from bench_agent.core.units import Unit, UnitError, format_value, parse_quantity


@dataclass(frozen=True, slots=True)
class Figure:
    metric: str
    value: float
    unit: Unit
    source: str
    ranks: int | None = None  # collectives: the GPU count the figure is for
    min_bytes: float | None = None  # collectives: the smallest size it holds at


@dataclass(frozen=True, slots=True)
class Baseline:
    model: str
    nvml_names: tuple[str, ...]
    figures: dict[str, Figure]
    path: str


def baselines_dir() -> Path:
    from bench_agent.config.loader import data_dir

    return data_dir() / "baselines"


def _figure(metric: str, raw: Any, path: Path) -> Figure:
    from bench_agent.checks import metric_catalog

    key = f"figures.{metric}"
    catalog = metric_catalog()
    info = catalog.get(metric)
    if info is None:
        raise ConfigError(unknown_metric(metric, catalog), file=str(path), key=key)
    if not isinstance(raw, dict) or "value" not in raw or not raw.get("source"):
        raise ConfigError("expected {value: ..., source: ...}", file=str(path), key=key)
    try:
        value = parse_quantity(raw["value"], info.unit).value
        min_bytes = (parse_quantity(raw["min_bytes"], Unit.BYTES).value
                     if "min_bytes" in raw else None)
    except (UnitError, TypeError) as exc:
        raise ConfigError(str(exc), file=str(path), key=key) from exc
    # Measurements are divided by the figure: it must be a positive amount.
    if not value > 0:
        raise ConfigError(f"a baseline figure must be above zero, got"
                          f" {format_value(value, info.unit)}", file=str(path),
                          key=f"{key}.value")
    ranks = raw.get("ranks")
    if ranks is not None and (isinstance(ranks, bool) or not isinstance(ranks, int)
                              or ranks < 1):
        raise ConfigError(f"expected a GPU count (a whole number >= 1), got {ranks!r}",
                          file=str(path), key=f"{key}.ranks")
    return Figure(metric, value, info.unit, str(raw["source"]), ranks, min_bytes)


def load_baseline(path: Path) -> Baseline:
    from bench_agent.config.loader import read_yaml

    # The strict loader: duplicate keys refused (safe_load keeps the last of two
    # gpu.matmul_bf16 figures without a word), depth and number size bounded.
    data, _digest = read_yaml(path)
    names = data.get("nvml_names")
    if not data.get("model") or not names:
        raise ConfigError("a baseline needs model and nvml_names", file=str(path))
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ConfigError("expected a list of the names NVML reports", file=str(path),
                          key="nvml_names")
    figures = data.get("figures") or {}
    if not isinstance(figures, dict):
        raise ConfigError("expected a mapping of metric -> figure", file=str(path),
                          key="figures")
    parsed = {str(metric): _figure(str(metric), raw, path) for metric, raw in figures.items()}
    return Baseline(str(data["model"]), tuple(names), parsed, str(path))


def load_baselines(folder: Path | None = None) -> list[Baseline]:
    folder = folder or baselines_dir()
    return [load_baseline(p) for p in sorted(folder.glob("*.yaml"))]


def baseline_for(gpu_name: str, folder: Path | None = None) -> Baseline | None:
    wanted = gpu_name.strip().lower()
    for baseline in load_baselines(folder):
        if any(wanted == name.lower() for name in baseline.nvml_names):
            return baseline
    return None


def baseline_known(check: str, gpu_name: str, baseline: Baseline | None) -> Measurement:
    """1 when a baseline matched; its params say which, or why none did."""
    note = (f"baseline {baseline.model} ({Path(baseline.path).name})" if baseline else
            f"no per-model baseline for {gpu_name!r}: judged by the guide's memory-class"
            " checks only (add suites/baselines/<model>.yaml to judge throughput)")
    return Measurement(check=check, metric="gpu.baseline_known", value=1 if baseline else 0,
                       unit=Unit.COUNT, params={"gpu_name": gpu_name, "note": note})


def fraction(measurement: Measurement, baseline: Baseline | None,
             ranks: int | None = None, size_bytes: float | None = None) -> Measurement | None:
    """``<metric>_baseline_fraction`` of a measurement, when the baseline has a figure.

    Collective figures hold only at their GPU count and from their size up; a run
    on 4 GPUs or capped at 1 GiB is not compared (None).
    """
    if baseline is None or measurement.metric not in baseline.figures:
        return None
    figure = baseline.figures[measurement.metric]
    if figure.ranks is not None and ranks != figure.ranks:
        return None
    if figure.min_bytes is not None and (size_bytes is None or size_bytes < figure.min_bytes):
        return None
    from bench_agent.checks import metric_catalog

    name = f"{measurement.metric}_baseline_fraction"
    if name not in metric_catalog():
        return None
    return Measurement(
        check=measurement.check, metric=name, value=measurement.value / figure.value,
        unit=Unit.COUNT, device=measurement.device,
        params={"measured": measurement.display,
                "baseline": format_value(figure.value, figure.unit),
                "model": baseline.model, "source": figure.source,
                "baseline_file": Path(baseline.path).name})
