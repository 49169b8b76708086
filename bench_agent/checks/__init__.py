"""Every check the agent knows, found in the modules that declare them.

A check's module declares everything about it: its class (name, parameters,
metrics, kernel) and its place in the module's own ``CHECKS`` tuple. Adding a
check therefore touches its module, its test with a captured output, the suite
YAML that runs it and, when it is judged, a profile line; nothing here. Whatever
else knows about checks and metrics (the catalog, `bench-agent list --metrics`,
profile and baseline validation, fleet analysis, the README's check table)
derives from those declarations.

A check is found by the first part of its name (``network`` for
``network.tcp_bandwidth``): looking one up imports that module only, and
`bench-agent --help` imports none.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Iterable, Iterator, Mapping

from bench_agent.checks.base import Check
from bench_agent.core.errors import UsageError
from bench_agent.core.metrics import MetricInfo

# The first part of a check's name -> the module holding those checks. The order
# of the modules, then of each module's CHECKS, is the order `bench-agent list` shows.
MODULES: dict[str, str] = {
    "inventory": "bench_agent.checks.inventory.checks",
    "cpu": "bench_agent.checks.cpu.checks",
    "memory": "bench_agent.checks.cpu.checks",
    "gpu": "bench_agent.checks.gpu.checks",
    "nccl": "bench_agent.checks.nccl.checks",
    "storage": "bench_agent.checks.storage.checks",
    "network": "bench_agent.checks.network.checks",
    "health": "bench_agent.checks.health.checks",
    "topology": "bench_agent.checks.topology.checks",
    "config": "bench_agent.checks.config.checks",
}


def _module_checks(module_name: str) -> tuple[type[Check], ...]:
    found = getattr(importlib.import_module(module_name), "CHECKS", None)
    if not isinstance(found, tuple) or not all(
            isinstance(c, type) and issubclass(c, Check) for c in found):
        raise ValueError(f"{module_name}.CHECKS is not a tuple of Check classes")
    return found


@functools.cache
def _registry() -> dict[str, type[Check]]:
    out: dict[str, type[Check]] = {}
    for module_name in dict.fromkeys(MODULES.values()):
        for cls in _module_checks(module_name):
            home = MODULES.get(cls.name.split(".")[0])
            if home != module_name:
                raise ValueError(f"check {cls.name} is in {module_name}, but its name is looked"
                                 f" up in {home or 'no module'} (checks.MODULES)")
            if cls.name in out:
                raise ValueError(f"two checks are named {cls.name}")
            out[cls.name] = cls
    return out


def check_names() -> list[str]:
    """Every check's name, in `bench-agent list` order (imports every check module)."""
    return list(_registry())


def _find(name: str) -> type[Check] | None:
    module_name = MODULES.get(name.split(".")[0])
    if module_name is None:
        return None
    return next((c for c in _module_checks(module_name) if c.name == name), None)


def is_check(name: str) -> bool:
    """Whether ``name`` is a check (imports the module it would live in, only)."""
    return _find(name) is not None


def check_class(name: str) -> type[Check]:
    found = _find(name)
    if found is None:
        known = ", ".join(check_names())
        raise UsageError(f"unknown check {name!r} (known checks: {known})")
    return found


def get_check(name: str) -> Check:
    return check_class(name)()


def _build_catalog(checks: Iterable[tuple[str, type[Check]]]) -> dict[str, MetricInfo]:
    out: dict[str, MetricInfo] = {}
    for name, cls in checks:
        seen: set[str] = set()
        for spec in cls.metrics:
            if spec.name in seen:
                raise ValueError(f"check {name} declares metric {spec.name} twice")
            seen.add(spec.name)
            info = MetricInfo(spec.name, spec.unit, spec.meaning, (name,),
                              spec.higher_is_better, spec.per_device)
            known = out.get(spec.name)
            if known is None:
                out[spec.name] = info
                continue
            # Two checks may report the same metric (both RDMA checks count the
            # active devices), but it must mean the same thing in both.
            if (known.unit, known.meaning, known.higher_is_better, known.per_device) != (
                    info.unit, info.meaning, info.higher_is_better, info.per_device):
                raise ValueError(f"metric {spec.name} is declared differently by checks "
                                 f"{', '.join(known.checks)} and {name}")
            out[spec.name] = MetricInfo(spec.name, spec.unit, spec.meaning,
                                        (*known.checks, name), spec.higher_is_better,
                                        spec.per_device)
    return out


@functools.cache
def _catalog() -> dict[str, MetricInfo]:
    return _build_catalog(_registry().items())


@functools.cache
def _module_catalog(module_name: str) -> dict[str, MetricInfo]:
    return _build_catalog((cls.name, cls) for cls in _module_checks(module_name))


class DomainCatalog(Mapping[str, MetricInfo]):
    """The metric catalog looked up one domain at a time: a metric is found in the
    module of its first part ("health" for health.gpu_xid), and only that module is
    imported. `bench-agent health` loads its profile through it: importing every
    check module (storage, network, nccl, ...) costs a third of its time budget.
    Iterating (an unknown metric's suggestions) reads the whole catalog."""

    def __getitem__(self, name: str) -> MetricInfo:
        module_name = MODULES.get(name.split(".")[0])
        if module_name is None:
            raise KeyError(name)
        return _module_catalog(module_name)[name]

    def __iter__(self) -> Iterator[str]:
        return iter(_catalog())

    def __len__(self) -> int:
        return len(_catalog())


def metric_catalog() -> dict[str, MetricInfo]:
    """Every metric a check declares, by name, in registry order (imports every check
    module the first time; ValueError when two declarations of one metric differ)."""
    return dict(_catalog())
