"""What a check is: a name, an availability test, and a run that returns measurements.

A check knows *what* to measure and in which unit; how to drive an external tool
lives in tools/. Checks raise errors from errors.py and never build verdicts:
runner.py turns errors into verdicts, thresholds.py turns measurements into
verdicts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

from bench_agent.checks.plain_params import PlainParams
from bench_agent.core.config_rules import Expectation
from bench_agent.core.model import Measurement
from bench_agent.core.units import Unit

if TYPE_CHECKING:
    # Only named in annotations: importing pydantic costs `bench-agent health` a
    # fifth of its time budget (checks/plain_params.py), and its checks need none.
    from pydantic import BaseModel

# A check's parameters class: a pydantic model (most checks; bytes fields with a
# unit are checks/byte_size.py's ByteSize), or a PlainParams (the passive checks).
ParamsModel = type["BaseModel"] | type[PlainParams]


@dataclass(frozen=True)
class NoParams(PlainParams):
    """Parameters of a check that takes none; unknown keys are refused."""


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
    params_model: ParamsModel
    loop: str


# A burn-in loop's two callbacks: ``emit(rate)`` reports one interval's rate in the
# variant's unit; ``stopping()`` is true once the loop must return (SIGTERM from the
# supervisor, or the run's time limit).
Emit = Callable[[float], None]
Stopping = Callable[[], bool]
BURNIN_INTERVAL_S = 10.0


def burnin_interval(ctx: CheckContext) -> float:
    """Seconds between two readings of a burn-in loop (``interval`` of burnin.yaml,
    the worker request's ``interval`` in burn-in mode)."""
    return ctx.interval


@dataclass(frozen=True, slots=True)
class RunOptions:
    """The run-wide options of `bench-agent run` that checks read (cli/main.py builds
    them from the command line; the runner sends them to each check's child).

    The defaults are a run without any of them: storage tests the output folder,
    network has no peer (SKIP), nccl runs on this node alone.
    """

    target: Path | None = None  # --target DIR: the directory storage tests in
    devices: tuple[str, ...] = ()  # --device DEV, repeatable: raw block devices
    all_nvme: bool = False  # --all-nvme: every NVMe namespace of the inventory too
    destructive: bool = False  # --destructive: writes on raw devices allowed
    peer: str | None = None  # --peer ADDRESS: the node running `bench-agent peer`
    nnodes: int = 1  # --nnodes: nodes taking part in an nccl run
    rdzv_endpoint: str | None = None  # --rdzv-endpoint HOST:PORT (torchrun c10d)
    rdzv_id: str | None = None  # --rdzv-id: same on every node of one run
    # run topology --expect FILE (or the profile's topology key): the file's parsed
    # document (the CLI read it strictly) and its path, for messages.
    expected_topology: dict[str, Any] | None = None
    expected_topology_file: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.nnodes, bool) or not isinstance(self.nnodes, int) \
                or self.nnodes < 1:
            raise ValueError(f"nnodes must be a whole number >= 1, got {self.nnodes!r}")
        if not isinstance(self.devices, tuple) or not all(isinstance(d, str)
                                                          for d in self.devices):
            raise ValueError(f"devices must be a tuple of paths, got {self.devices!r}")
        for name in ("all_nvme", "destructive"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if not isinstance(self.expected_topology, dict | None):
            raise ValueError(f"expected_topology must be an object, got "
                             f"{type(self.expected_topology).__name__}")
        for name in ("peer", "rdzv_endpoint", "rdzv_id", "expected_topology_file"):
            if not isinstance(getattr(self, name), str | None):
                raise ValueError(f"{name} must be text, got {getattr(self, name)!r}")
        if not isinstance(self.target, Path | None):
            raise ValueError(f"target must be a path, got {self.target!r}")

    def to_dict(self) -> dict[str, Any]:
        """The JSON of the worker protocol (run/worker.py)."""
        return {"target": str(self.target) if self.target is not None else None,
                "devices": list(self.devices), "all_nvme": self.all_nvme,
                "destructive": self.destructive, "peer": self.peer, "nnodes": self.nnodes,
                "rdzv_endpoint": self.rdzv_endpoint, "rdzv_id": self.rdzv_id,
                "expected_topology": self.expected_topology,
                "expected_topology_file": self.expected_topology_file}

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        """The options of a worker request; ValueError for an unknown key (an agent
        and a worker of different versions) or a value of the wrong type."""
        if not isinstance(data, dict):
            raise ValueError(f"options must be an object, got {type(data).__name__}")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown run option(s): {', '.join(unknown)}")
        values = dict(data)
        if values.get("target") is not None:
            if not isinstance(values["target"], str):
                raise ValueError(f"target must be a path, got {values['target']!r}")
            values["target"] = Path(values["target"])
        if "devices" in values:
            if not isinstance(values["devices"], list):
                raise ValueError(f"devices must be a list, got {values['devices']!r}")
            values["devices"] = tuple(values["devices"])
        return cls(**values)


@dataclass(frozen=True)
class CheckContext:
    """What a check may use from its surroundings, injected so tests can swap it.

    ``root`` is the filesystem root /proc and /sys are read under (psutil's idea:
    tests point it at a captured tree). ``timeout`` is the check's time limit in
    seconds, so a check can size its own tool runs to fit. ``options`` are the
    run-wide command-line options (RunOptions: storage targets, the network peer,
    the nccl rendezvous).
    """

    root: Path = Path("/")
    output_dir: Path = Path("results")
    timeout: float = 600.0
    options: RunOptions = field(default_factory=RunOptions)
    # Burn-in mode only: seconds between two readings of the check's loop.
    interval: float = BURNIN_INTERVAL_S
    # A check that brackets the run (Check.brackets_run): what its ``snapshot``
    # returned at the start of the run, or why there is none (``before_error``);
    # both None when the check runs without a start snapshot (alone, in a test).
    before: dict[str, Any] | None = None
    before_error: str | None = None
    # The profile's configuration section (core/config_rules.Expectation), which
    # config.consistency judges itself: a fact is text or a flag, not a number
    # the threshold engine compares.
    expected_config: tuple[Expectation, ...] = ()


class Check(ABC):
    name: ClassVar[str]
    domain: ClassVar[str]
    description: ClassVar[str]
    # Every metric this check may produce, declared here and nowhere else: the
    # metric catalog (checks.metric_catalog) is built from these declarations.
    metrics: ClassVar[tuple[MetricSpec, ...]]
    params_model: ClassVar[ParamsModel] = NoParams
    # The check's own kernel in a loop for `bench-agent burnin`, or None.
    burnin: ClassVar[BurninVariant | None] = None
    # True for a check that compares the node before and after the other checks of
    # the run (network.ib_port_health: error counters grown under the traffic):
    # the runner calls ``snapshot`` in a child before the first check, and hands its
    # result to ``run`` (at the check's place in the suite) as ``ctx.before``.
    brackets_run: ClassVar[bool] = False

    def available(self, ctx: CheckContext) -> str | None:
        """None when the check can run here, else the reason it cannot (-> SKIP)."""
        return None

    # ``params``: an instance of ``params_model`` (Any: each check narrows it to its own).
    def snapshot(self, ctx: CheckContext, params: Any) -> dict[str, Any]:
        """The state ``run`` compares against (JSON), taken at the start of the run;
        only called when ``brackets_run`` is true."""
        raise NotImplementedError(f"{self.name} takes no snapshot")

    @abstractmethod
    def run(self, ctx: CheckContext, params: Any) -> list[Measurement]:
        """Measure and return measurements; raise errors.CheckError subclasses."""
