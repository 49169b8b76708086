"""network.ib_port_health: every InfiniBand/RoCE port's state, rate and error counters,
and how much the error counters grew during the run.

The check brackets the run (Check.brackets_run): the runner takes its snapshot
(``snapshot``: every port's counters) in a child right after the inventory,
before the network and RDMA traffic of the same run, and calls ``run`` at the
check's place in the suite (last in suites/network.yaml). ``run`` reads the ports
again and reports, per port and counter, the absolute value (since the driver
loaded) and the growth since the snapshot (``network.ib_<counter>_delta``). The
profile judges them: a link that went down during the run (``link_downed_delta``
> 0) FAILs; errors grown under load FAIL or WARN as its thresholds' severity says.

Counters saturate, they do not wrap: IBA PortCounters stop at all ones (InfiniBand
Architecture Specification Vol 1, 16.1.3.5), and the kernel reads them at the
widths drivers/infiniband/core/sysfs.c declares (PORT_PMA_ATTR: symbol_error 16
bits, link_downed 8, local_link_integrity_errors 4, ...). A counter at its maximum
at the start cannot show growth: its delta is not reported and the absolute
figure says why. A counter lower at the end than at the start was reset during
the run (`perfquery -R`, a driver reload): its growth is at least the end value,
which is what is reported, with a note.

The file reading is inventory/infiniband.py's (read_port); the clock is injected
(``IbPortHealthCheck(clock=...)``) so tests can say how long the window was.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from bench_agent.checks.base import Check, CheckContext, MetricSpec
from bench_agent.core.errors import NotApplicable, ParseError
from bench_agent.core.model import Measurement
from bench_agent.core.units import Unit
from bench_agent.inventory.infiniband import IB_CLASS, PortReading, port_dirs, read_port

# The error counters judged, with the ABI document's meaning of each
# (Documentation/ABI/stable/sysfs-class-infiniband).
IB_ERROR_COUNTERS: dict[str, str] = {
    "symbol_error": "minor link errors detected on one or more physical lanes",
    "link_error_recovery": "link error recoveries completed by the port training state machine",
    "link_downed": "times the port training state machine failed link error recovery and "
                   "downed the link",
    "port_rcv_errors": "received packets that contained an error",
    "port_rcv_remote_physical_errors": "received packets marked with the EBP delimiter",
    "port_xmit_discards": "outbound packets discarded because the port was down or congested",
    "local_link_integrity_errors": "times the local physical errors exceeded the "
                                   "LocalPhyErrors threshold",
    "excessive_buffer_overrun_errors": "input buffer overruns (misconfiguration or poor "
                                       "link signal integrity)",
}
# Bits of each counter: drivers/infiniband/core/sysfs.c PORT_PMA_ATTR(name, counter,
# width, offset), the PortCounters attribute layout of IBA Vol 1 table 247.
IB_COUNTER_BITS: dict[str, int] = {
    "symbol_error": 16, "link_error_recovery": 8, "link_downed": 8, "port_rcv_errors": 16,
    "port_rcv_remote_physical_errors": 16, "port_xmit_discards": 16,
    "local_link_integrity_errors": 4, "excessive_buffer_overrun_errors": 4,
}


class IbPortParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # HCAs ("mlx5_0") or ports ("mlx5_0/1") to judge; empty: every port.
    devices: list[str] = Field(default_factory=list)


class IbPortHealthCheck(Check):
    name: ClassVar[str] = "network.ib_port_health"
    domain: ClassVar[str] = "network"
    description: ClassVar[str] = ("InfiniBand/RoCE ports: state, link, rate and error "
                                  "counters, and their growth during the run (sysfs)")
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("network.ib_port_active", Unit.COUNT,
                   "1 when the port's state is ACTIVE (sysfs state)", per_device=True),
        MetricSpec("network.ib_port_link_up", Unit.COUNT,
                   "1 when the port's physical state is LinkUp (sysfs phys_state)",
                   per_device=True),
        MetricSpec("network.ib_port_rate", Unit.BITS_PER_SECOND,
                   "the port's data rate, active width x lane speed (sysfs rate)",
                   per_device=True),
        *(MetricSpec(f"network.ib_{counter}", Unit.COUNT,
                     f"{meaning} (sysfs counters/{counter}, since the driver loaded)",
                     higher_is_better=False, per_device=True)
          for counter, meaning in IB_ERROR_COUNTERS.items()),
        *(MetricSpec(f"network.ib_{counter}_delta", Unit.COUNT,
                     f"growth of counters/{counter} during the run (from the start "
                     "snapshot to the end)", higher_is_better=False, per_device=True)
          for counter in IB_ERROR_COUNTERS),
    )
    params_model: ClassVar[type[BaseModel]] = IbPortParams
    brackets_run: ClassVar[bool] = True

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        # CLOCK_MONOTONIC is one clock for every process of the node, so the
        # snapshot's child and the run's child read times that subtract.
        self.clock = clock

    def available(self, ctx: CheckContext) -> str | None:
        if not (ctx.root / IB_CLASS).is_dir():
            return ("no /sys/class/infiniband: no InfiniBand or RoCE device here (or its "
                    "driver is not loaded)")
        return None

    def read(self, ctx: CheckContext, params: IbPortParams) -> list[PortReading]:
        from bench_agent.tools import tool_name

        out = []
        for device, port_dir in port_dirs(ctx.root):
            device = tool_name("sysfs", device)
            if params.devices and not {device, f"{device}/{port_dir.name}"} & set(params.devices):
                continue
            out.append(read_port(ctx.root, device, port_dir, IB_ERROR_COUNTERS, self.clock))
        if not out:
            wanted = f" among {', '.join(params.devices)}" if params.devices else ""
            raise NotApplicable(f"no InfiniBand or RoCE port{wanted} in /sys/class/infiniband")
        return out

    def snapshot(self, ctx: CheckContext, params: BaseModel) -> dict[str, Any]:
        assert isinstance(params, IbPortParams)
        return {"ports": {p.label: {"at": p.at, "state": p.state, "counters": p.counters}
                          for p in self.read(ctx, params)}}

    def run(self, ctx: CheckContext, params: BaseModel) -> list[Measurement]:
        assert isinstance(params, IbPortParams)
        # Read first: no port now is NotApplicable (SKIP), as the snapshot was.
        readings = self.read(ctx, params)
        if ctx.before_error is not None:
            # Asked to judge the growth and unable to: an ERROR with the reason,
            # never a PASS on the absolute counters alone.
            raise ParseError("sysfs", "the port counters could not be read at the start of "
                                      f"the run, so their growth is unknown: {ctx.before_error}")
        before = _before_ports(ctx.before)
        out: list[Measurement] = []
        for reading in readings:
            out += self._port(reading, before.get(reading.label) if before is not None else None,
                              before is not None)
        for label in sorted(set(before or {}) - {r.label for r in readings}):
            out.append(Measurement(
                check=self.name, metric="network.ib_port_active", value=0, unit=Unit.COUNT,
                device=label, tool="sysfs",
                params={"note": f"{label} was there at the start of the run and is gone at "
                                "the end (the HCA fell off the bus or its driver unloaded)"}))
        return out

    def _port(self, reading: PortReading, start: dict[str, Any] | None,
              bracketed: bool) -> list[Measurement]:
        facts: dict[str, Any] = {"state": reading.state, "phys_state": reading.phys_state,
                                 "rate": reading.rate,
                 "link_layer": reading.link_layer, "source": reading.source}
        notes: dict[str, str] = {}
        deltas: dict[str, int] = {}
        if start is not None:
            deltas, notes = _deltas(start["counters"], reading.counters)
            facts["window_s"] = round(reading.at - float(start["at"]), 3)
            facts["state_at_start"] = start["state"]
        elif bracketed:
            notes = {c: "the port appeared during the run: no start value to compare"
                     for c in reading.counters}

        def m(metric: str, value: float, unit: Unit, extra: dict[str, Any]) -> Measurement:
            return Measurement(check=self.name, metric=metric, value=value, unit=unit,
                               device=reading.label, tool="sysfs", params=extra)

        out = [m("network.ib_port_active", int(reading.active), Unit.COUNT,
                 {**facts, "counters_unavailable": reading.unavailable}),
               m("network.ib_port_link_up", int(reading.link_up), Unit.COUNT, facts),
               m("network.ib_port_rate", float(reading.rate_bits_per_second),
                 Unit.BITS_PER_SECOND, facts)]
        for counter, value in reading.counters.items():
            extra: dict[str, Any] = {"source": f"{reading.source}/counters/{counter}"}
            if counter in notes and counter not in deltas:
                extra["note"] = notes[counter]
            out.append(m(f"network.ib_{counter}", value, Unit.COUNT, extra))
        for counter, delta in deltas.items():
            extra = {"source": f"{reading.source}/counters/{counter}",
                     "window_s": facts["window_s"]}
            if counter in notes:
                extra["note"] = notes[counter]
            out.append(m(f"network.ib_{counter}_delta", delta, Unit.COUNT, extra))
        return out


def _before_ports(before: dict[str, Any] | None) -> dict[str, dict[str, Any]] | None:
    """The snapshot's ports, checked (it crossed a process boundary as JSON)."""
    if before is None:
        return None
    ports = before.get("ports")
    if not isinstance(ports, dict) or not all(
            isinstance(p, dict) and isinstance(p.get("counters"), dict)
            and isinstance(p.get("at"), int | float) for p in ports.values()):
        raise ParseError("sysfs", "the start snapshot of the port counters is malformed",
                         str(before)[:200])
    return ports


def _deltas(start: dict[str, Any], end: dict[str, int]) -> tuple[dict[str, int], dict[str, str]]:
    """Growth per counter, and a note for each counter whose growth is odd or unknown."""
    deltas: dict[str, int] = {}
    notes: dict[str, str] = {}
    for counter, now in end.items():
        was = start.get(counter)
        if not isinstance(was, int) or isinstance(was, bool):
            notes[counter] = "not readable at the start of the run: growth unknown"
            continue
        ceiling = (1 << IB_COUNTER_BITS.get(counter, 64)) - 1
        if was >= ceiling:
            notes[counter] = (f"saturated at {was} ({IB_COUNTER_BITS[counter]}-bit PMA counter) "
                              "since before the run: growth cannot be seen; reset the "
                              "counters (perfquery -R) and run again")
        elif now < was:
            deltas[counter] = now
            notes[counter] = (f"reset during the run (was {was}, now {now}): grew by at least "
                              f"{now}")
        else:
            deltas[counter] = now - was
    return deltas, notes
