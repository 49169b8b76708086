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

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

from bench_agent.core.errors import ConfigError, UnitError
from bench_agent.core.metrics import unknown_metric
from bench_agent.core.model import Measurement
from bench_agent.core.units import Unit, format_value, parse_quantity


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


class _FigureEntry(BaseModel):
    """One figure of a baseline file; values with units are parsed against the metric."""

    model_config = ConfigDict(extra="forbid")
    # Strict: YAML `true` must not become a figure of 1.
    value: StrictStr | StrictFloat | StrictInt
    source: str = Field(min_length=1)
    # Collectives: the GPU count the figure is for, and the smallest size it holds at.
    ranks: int | None = Field(default=None, ge=1, strict=True)
    min_bytes: StrictStr | StrictFloat | StrictInt | None = None


class _BaselineFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1)
    # The names NVML reports (nvmlDeviceGetName), compared without case.
    nvml_names: list[StrictStr] = Field(min_length=1)
    figures: dict[str, _FigureEntry] = Field(default_factory=dict)


def _figure(metric: str, entry: _FigureEntry, path: Path) -> Figure:
    from bench_agent.checks import metric_catalog

    key = f"figures.{metric}"
    catalog = metric_catalog()
    info = catalog.get(metric)
    if info is None:
        raise ConfigError(unknown_metric(metric, catalog), file=str(path), key=key)
    try:
        value = parse_quantity(entry.value, info.unit).value
    except UnitError as exc:
        raise ConfigError(str(exc), file=str(path), key=f"{key}.value") from exc
    try:
        min_bytes = (parse_quantity(entry.min_bytes, Unit.BYTES).value
                     if entry.min_bytes is not None else None)
    except UnitError as exc:
        raise ConfigError(str(exc), file=str(path), key=f"{key}.min_bytes") from exc
    # Measurements are divided by the figure: it must be a positive amount.
    if not value > 0:
        raise ConfigError(f"a baseline figure must be above zero, got"
                          f" {format_value(value, info.unit)}", file=str(path),
                          key=f"{key}.value")
    return Figure(metric, value, info.unit, entry.source, entry.ranks, min_bytes)


def load_baseline(path: Path) -> Baseline:
    from bench_agent.config.loader import load_model

    # The strict loader: duplicate keys refused (safe_load keeps the last of two
    # gpu.matmul_bf16 figures without a word), depth and number size bounded;
    # then the file's model: an unknown key (a "rank: 8" for "ranks") is refused,
    # not ignored.
    parsed, _digest = load_model(path, _BaselineFile)
    figures = {metric: _figure(metric, entry, path) for metric, entry in parsed.figures.items()}
    return Baseline(parsed.model, tuple(parsed.nvml_names), figures, str(path))


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
