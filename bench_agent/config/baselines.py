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

Every figure states how it was obtained (``kind`` and ``method``), so a
measurement is compared like with like:

- ``kind: measured``: a figure measured the way the check measures (the same
  shape, the same count of bytes); the check's value is divided by it.
- ``kind: datasheet_peak``: NVIDIA's published peak, which no benchmark reaches;
  ``expect`` is the calibrated fraction of it a healthy GPU reaches the way the
  check measures, and the check's value is divided by ``value x expect``. The
  calibration is stated in the figure's ``method`` (docs/gpu.md, "Baselines").

A baseline also says how many NVLinks of the model are active on a healthy
system (``nvlink_links``): 0 for a card without NVLink or a PCIe card without a
bridge, whose links then are not judged (gpu.health); absent for a model where
it depends on the system (a suite states it: gpu.health's ``expected_nvlinks``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

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
    kind: str = "measured"  # or "datasheet_peak" (module docstring)
    method: str = ""  # how the figure was measured, or how `expect` was calibrated
    expect: float = 1.0  # the fraction of `value` a healthy GPU reaches

    @property
    def expected(self) -> float:
        """What a healthy GPU reaches, measured the way the check measures."""
        return self.value * self.expect


@dataclass(frozen=True, slots=True)
class Baseline:
    model: str
    nvml_names: tuple[str, ...]
    # Read-only: one loaded Baseline is handed to every caller (load_baseline).
    figures: Mapping[str, Figure]
    path: str
    # Active NVLinks per GPU on a healthy system; 0: not judged; None: not stated.
    nvlink_links: int | None = None
    nvlink_source: str = ""


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
    kind: Literal["measured", "datasheet_peak"] = "measured"
    method: str = ""
    expect: float = Field(default=1.0, gt=0, le=1)


class _BaselineFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1)
    # The names NVML reports (nvmlDeviceGetName), compared without case.
    nvml_names: list[StrictStr] = Field(min_length=1)
    # Where those names were seen as NVML reports them.
    nvml_names_source: str = ""
    nvlink_links: int | None = Field(default=None, ge=0, le=18, strict=True)
    nvlink_source: str = ""
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
    if entry.kind == "datasheet_peak" and entry.expect >= 1:
        raise ConfigError("a datasheet peak is never reached: state `expect`, the calibrated"
                          " fraction of it a healthy GPU reaches, and how in `method`",
                          file=str(path), key=f"{key}.expect")
    return Figure(metric, value, info.unit, entry.source, entry.ranks, min_bytes,
                  entry.kind, entry.method, entry.expect)


# Loaded baselines by (path, SHA-256 of the bytes loaded): every GPU check asks for
# its model's figures, and a GPU node's run (or a test suite) would otherwise parse
# the 16 shipped files again each time with the pure-Python strict YAML loader. By
# the bytes' digest, not the file's time: an edit within one timestamp tick is seen.
_LOADED: dict[tuple[str, str], Baseline] = {}
_LOADED_MAX = 512


def load_baseline(path: Path) -> Baseline:
    from bench_agent.config.loader import load_model

    try:
        known = _LOADED.get((str(path), hashlib.sha256(path.read_bytes()).hexdigest()))
    except OSError:
        known = None  # load_model says why, as a ConfigError naming the file
    if known is not None:
        return known
    # The strict loader: duplicate keys refused (safe_load keeps the last of two
    # gpu.matmul_bf16 figures without a word), depth and number size bounded;
    # then the file's model: an unknown key (a "rank: 8" for "ranks") is refused,
    # not ignored.
    parsed, digest = load_model(path, _BaselineFile)
    figures = {metric: _figure(metric, entry, path) for metric, entry in parsed.figures.items()}
    baseline = Baseline(parsed.model, tuple(parsed.nvml_names), MappingProxyType(figures),
                        str(path), parsed.nvlink_links, parsed.nvlink_source)
    if len(_LOADED) >= _LOADED_MAX:
        _LOADED.pop(next(iter(_LOADED)))
    _LOADED[(str(path), digest)] = baseline
    return baseline


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
    params: dict[str, Any] = {
        "measured": measurement.display, "baseline": format_value(figure.value, figure.unit),
        "model": baseline.model, "source": figure.source,
        "baseline_file": Path(baseline.path).name, "kind": figure.kind, "method": figure.method}
    if figure.kind == "datasheet_peak":
        params["expected"] = format_value(figure.expected, figure.unit)
        params["expect"] = figure.expect
        params["judged_against"] = (f"{figure.expect:g} x the datasheet peak"
                                    f" ({params['expected']})")
    return Measurement(
        check=measurement.check, metric=name, value=measurement.value / figure.expected,
        unit=Unit.COUNT, device=measurement.device, params=params)
