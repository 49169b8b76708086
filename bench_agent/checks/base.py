"""What a check is: a name, an availability test, and a run that returns measurements.

A check knows *what* to measure and in which unit; how to drive an external tool
lives in tools/. Checks raise errors from errors.py and never build verdicts:
runner.py turns errors into verdicts, thresholds.py turns measurements into
verdicts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict

from bench_agent.core.errors import UnitError
from bench_agent.core.model import Measurement
from bench_agent.core.units import Unit, parse_quantity


def _bytes_from_text(value: Any) -> Any:
    """ "4 MiB" or "16G" as a whole number of bytes; anything else goes on to
    pydantic's own int validation (and its ge/le bounds)."""
    if isinstance(value, str):
        try:
            return int(parse_quantity(value, Unit.BYTES).value)
        except UnitError as exc:
            raise ValueError(str(exc)) from exc
    return value


# A params field in bytes that the suite YAML may write with a unit ("64 MiB").
ByteSize = Annotated[int, BeforeValidator(_bytes_from_text)]


class NoParams(BaseModel):
    """Parameters of a check that takes none; unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric a check declares: the only place its name, unit and meaning are written.

    The metric catalog (`bench-agent list --metrics`), profile and baseline
    validation, fleet analysis and the README's check table all derive from these.
    """

    name: str
    unit: Unit
    meaning: str
    higher_is_better: bool = True
    per_device: bool = False


@dataclass(frozen=True)
class BurninVariant:
    """The check's own kernel in a loop, for `bench-agent burnin`.

    ``loop`` names a function ``(ctx, params, emit, stopping) -> None`` as
    "module:function"; it runs in the one worker child and reports ``rate`` once
    per interval through ``emit``, until ``stopping()`` is true.
    """

    load: str
    rate: MetricSpec
    params_model: type[BaseModel]
    loop: str


# A burn-in loop's two callbacks: ``emit(rate)`` reports one interval's rate in the
# variant's unit; ``stopping()`` is true once the loop must return (SIGTERM from the
# supervisor, or the run's time limit).
Emit = Callable[[float], None]
Stopping = Callable[[], bool]
BURNIN_INTERVAL_S = 10.0


def burnin_interval(ctx: CheckContext) -> float:
    """Seconds between two readings of a burn-in loop (``interval`` of burnin.yaml,
    passed as the run-wide option ``interval``)."""
    return float(ctx.extra.get("interval", BURNIN_INTERVAL_S))


@dataclass(frozen=True)
class CheckContext:
    """What a check may use from its surroundings, injected so tests can swap it.

    ``root`` is the filesystem root /proc and /sys are read under (psutil's idea:
    tests point it at a captured tree). ``timeout`` is the check's time limit in
    seconds, so a check can size its own tool runs to fit. ``extra`` holds the
    run-wide command-line options (``target``, ``devices``, ``all_nvme``,
    ``destructive`` for storage; ``peer`` for network); absent keys mean defaults.
    """

    root: Path = Path("/")
    output_dir: Path = Path("results")
    timeout: float = 600.0
    extra: dict[str, Any] = field(default_factory=dict)


class Check(ABC):
    name: ClassVar[str]
    domain: ClassVar[str]
    description: ClassVar[str]
    # Every metric this check may produce, declared here and nowhere else: the
    # metric catalog (checks.metric_catalog) is built from these declarations.
    metrics: ClassVar[tuple[MetricSpec, ...]]
    params_model: ClassVar[type[BaseModel]] = NoParams
    # The check's own kernel in a loop for `bench-agent burnin`, or None.
    burnin: ClassVar[BurninVariant | None] = None

    def available(self, ctx: CheckContext) -> str | None:
        """None when the check can run here, else the reason it cannot (-> SKIP)."""
        return None

    @abstractmethod
    def run(self, ctx: CheckContext, params: BaseModel) -> list[Measurement]:
        """Measure and return measurements; raise errors.CheckError subclasses."""
