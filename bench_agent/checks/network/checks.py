"""Network checks against a peer running `bench-agent peer` (see peer.py).

    network.tcp_bandwidth   iperf3 -J, several processes x streams, both directions
    network.tcp_latency     sockperf ping-pong --tcp (qperf tcp_lat as the fallback)
    network.udp_latency     sockperf ping-pong (UDP) (qperf udp_lat as the fallback)
    network.rdma_latency    ib_write_lat per RDMA device (-d, -x GID index)
    network.rdma_bandwidth  ib_write_bw per RDMA device
    network.ib_port_health  every InfiniBand/RoCE port's state and error counters
                            (sysfs, no peer)

Every peer check first asks the peer's control port what it serves ("hello"); a
peer that does not answer is an ERROR naming the address, within a few seconds
rather than at the check's time limit. Without --peer those checks are SKIP.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from bench_agent.checks.base import BurninVariant, Check, CheckContext, MetricSpec
from bench_agent.checks.network.burnin import Iperf3BurninParams
from bench_agent.core.errors import NotApplicable, ToolFailed, ToolMissing
from bench_agent.core.inventory import IbPort
from bench_agent.core.model import Measurement
from bench_agent.core.process import run_child
from bench_agent.core.units import Unit
from bench_agent.inventory.devices import link_speed_bps
from bench_agent.peer.protocol import DEFAULT_PORTS, peer_request

HELLO_TIMEOUT_S = 5.0
# Extra time a tool gets beyond its own duration: start-up, connection, the
# results exchange at the end (iperf3 exchanges JSON results after the test).
TOOL_SLACK_S = 15.0


class PeerParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    control_port: int = Field(default=DEFAULT_PORTS["control"], ge=1, le=65535)


def _peer_address(ctx: CheckContext) -> str:
    peer = ctx.options.peer
    if not peer:
        raise NotApplicable("no peer given: run `bench-agent peer` on another node and "
                            "`bench-agent run network --peer ADDRESS` here")
    return peer


def hello(ctx: CheckContext, control_port: int) -> tuple[str, dict[str, Any]]:
    """The peer's address and its hello response; ToolFailed naming the address."""
    host = _peer_address(ctx)
    timeout = min(HELLO_TIMEOUT_S, max(1.0, ctx.timeout / 4))
    try:
        response = peer_request(host, control_port, {"op": "hello"}, timeout=timeout)
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(
            exc).__name__
        raise ToolFailed("bench-agent peer", f"peer {host}:{control_port} unreachable: {why} "
                         "(is `bench-agent peer` running there?)") from exc
    if not response.get("ok"):
        raise ToolFailed("bench-agent peer", f"peer {host}:{control_port} refused hello: "
                         f"{response.get('error')}")
    return host, response


# --- link speed of the route to the peer --------------------------------------------


def route_interface(host: str) -> str | None:
    """The interface `ip route get` picks for ``host`` (None if unknown)."""
    try:
        proc = run_child(["ip", "-j", "route", "get", host], timeout=5)
        if proc.timed_out:
            return None
        routes = json.loads(proc.stdout or "[]")
    except (OSError, json.JSONDecodeError):
        return None
    if routes and isinstance(routes, list) and isinstance(routes[0], dict):
        dev = routes[0].get("dev")
        return str(dev) if dev else None
    return None


# --- bandwidth ----------------------------------------------------------------------


class BandwidthParams(PeerParams):
    # iperf3 -t and -O: 10 s measured after 2 s omitted (TCP slow start and
    # window growth; iperf3(1): "-O, --omit N: omit the first n seconds").
    duration: int = Field(default=10, ge=1, le=3600)
    omit: int = Field(default=2, ge=0, le=60)
    streams: int = Field(default=4, ge=1, le=128)
    # How many iperf3 processes (and peer server ports) to run at once; capped by
    # what the peer offers.
    processes: int = Field(default=2, ge=1, le=64)
    reverse: bool = True


class TcpBandwidthCheck(Check):
    name: ClassVar[str] = "network.tcp_bandwidth"
    domain: ClassVar[str] = "network"
    description: ClassVar[str] = "TCP bandwidth to the peer (iperf3, both directions)"
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("network.tcp_bandwidth", Unit.BITS_PER_SECOND, "TCP bandwidth to the peer"),
        MetricSpec("network.tcp_bandwidth_reverse", Unit.BITS_PER_SECOND,
                   "TCP bandwidth from the peer (iperf3 -R or --bidir)"),
        MetricSpec("network.tcp_retransmits", Unit.COUNT,
                   "TCP retransmits of the sender, to the peer", higher_is_better=False),
        MetricSpec("network.tcp_retransmits_reverse", Unit.COUNT,
                   "TCP retransmits of the sender, from the peer", higher_is_better=False),
        MetricSpec("network.tcp_bandwidth_link_ratio", Unit.COUNT,
                   "TCP bandwidth / link speed of the interface routing to the peer"))
    params_model: ClassVar[type[BaseModel]] = BandwidthParams
    burnin: ClassVar[BurninVariant | None] = BurninVariant(
        load="network_iperf3",
        rate=MetricSpec("burnin.network_iperf3", Unit.BITS_PER_SECOND,
                        "TCP to the peer's iperf3 server, sustained"),
        params_model=Iperf3BurninParams,
        loop="bench_agent.checks.network.burnin:iperf3_loop",
    )

    def run(self, ctx: CheckContext, params: BaseModel) -> list[Measurement]:
        from bench_agent.tools import iperf3

        assert isinstance(params, BandwidthParams)
        host, info = hello(ctx, params.control_port)
        ports = [int(p) for p in (info.get("services") or {}).get("iperf3") or []]
        if not ports:
            raise ToolMissing("iperf3", f"the peer {host} runs no iperf3 server")
        ports = ports[: params.processes]
        per_run = params.duration + params.omit + TOOL_SLACK_S
        settings = {"duration_s": params.duration, "omit_s": params.omit, "peer": host}
        out: list[Measurement] = []
        for reverse in (False, True) if params.reverse else (False,):
            commands = [iperf3.client_command(host, port, params.streams, params.duration,
                                              params.omit, reverse) for port in ports]
            results = iperf3.run_parallel(commands, per_run)
            out += iperf3.measurements_of(results, check=self.name, params=settings)
        interface = route_interface(host)
        speed = link_speed_bps(ctx.root, interface) if interface else None
        forward = next((m for m in out if m.metric == "network.tcp_bandwidth"), None)
        if speed and forward and interface:
            out.append(link_ratio_measurement(self.name, interface, speed, forward))
        return out


def link_ratio_measurement(check: str, interface: str, link_bps: float,
                           forward: Measurement) -> Measurement:
    """Measured TCP bandwidth over the link speed of the interface that routes to the
    peer; both figures go in the device label, so the verdict shows them together."""
    link = Measurement("x", "x", link_bps, Unit.BITS_PER_SECOND).display
    label = f"{interface}: {forward.display} measured, {link} link"
    return Measurement(check=check, metric="network.tcp_bandwidth_link_ratio",
                       value=forward.value / link_bps, unit=Unit.COUNT, device=label,
                       tool="iperf3", params={"interface": interface,
                                              "link_speed_bits_per_second": link_bps,
                                              "measured_bits_per_second": forward.value})


# --- latency ------------------------------------------------------------------------


class LatencyParams(PeerParams):
    duration: int = Field(default=5, ge=1, le=3600)
    # sockperf -m; None: sockperf's default (14 bytes). qperf's default is 1 byte.
    msg_size: int | None = Field(default=None, ge=1, le=65000)
    # --full-rtt: report round-trip metrics (network.*_round_trip*) instead.
    full_rtt: bool = False
    tool: str = Field(default="auto", pattern="^(auto|sockperf|qperf)$")


def latency_metrics(protocol: str) -> tuple[MetricSpec, ...]:
    """One-way latency (half sockperf's round trip) and, with --full-rtt, the round
    trip itself: average and the percentiles sockperf prints."""
    name = protocol.upper()
    out = []
    for metric, what, note in (("latency", "one-way latency", " (half the round trip)"),
                               ("round_trip", "round-trip time", " (sockperf --full-rtt)")):
        out.append(MetricSpec(f"network.{protocol}_{metric}", Unit.SECONDS,
                              f"{name} {what}{note}, average", higher_is_better=False))
        out += [MetricSpec(f"network.{protocol}_{metric}_{p}", Unit.SECONDS,
                           f"{name} {what}, {p.replace('_', '.')}", higher_is_better=False)
                for p in ("p50", "p99", "p99_9")]
    return tuple(out)


class _LatencyCheck(Check):
    protocol: ClassVar[str]
    domain: ClassVar[str] = "network"
    params_model: ClassVar[type[BaseModel]] = LatencyParams

    def run(self, ctx: CheckContext, params: BaseModel) -> list[Measurement]:
        import shutil

        from bench_agent.tools import qperf, sockperf

        assert isinstance(params, LatencyParams)
        host, info = hello(ctx, params.control_port)
        services = info.get("services") or {}
        timeout = params.duration + TOOL_SLACK_S
        use_sockperf = (params.tool in ("auto", "sockperf") and services.get("sockperf")
                        and shutil.which("sockperf"))
        if use_sockperf:
            command = sockperf.client_command(host, int(services["sockperf"]), self.protocol,
                                              params.duration, params.msg_size, params.full_rtt)
            text = sockperf.run_sockperf(command, timeout)
            found = sockperf.parse_sockperf(text, protocol=self.protocol, check=self.name)
        elif params.tool in ("auto", "qperf") and services.get("qperf"):
            if params.full_rtt:
                raise NotApplicable("qperf reports one-way latency only; full_rtt needs sockperf")
            command = qperf.client_command(host, int(services["qperf"]),
                                           f"{self.protocol}_lat", params.duration)
            found = [m for m in qperf.parse_qperf(qperf.run_qperf(command, timeout),
                                                  check=self.name)
                     if m.unit is Unit.SECONDS]
        else:
            raise ToolMissing("sockperf", f"neither sockperf nor qperf is usable with {host} "
                              f"(peer serves: {json.dumps(services)})")
        return [replace(m, params={**m.params, "peer": host, "duration_s": params.duration})
                for m in found]


class TcpLatencyCheck(_LatencyCheck):
    name: ClassVar[str] = "network.tcp_latency"
    protocol: ClassVar[str] = "tcp"
    description: ClassVar[str] = "TCP one-way latency to the peer (sockperf ping-pong)"
    metrics: ClassVar[tuple[MetricSpec, ...]] = latency_metrics("tcp")


class UdpLatencyCheck(_LatencyCheck):
    name: ClassVar[str] = "network.udp_latency"
    protocol: ClassVar[str] = "udp"
    description: ClassVar[str] = "UDP one-way latency to the peer (sockperf ping-pong)"
    metrics: ClassVar[tuple[MetricSpec, ...]] = latency_metrics("udp")


# --- RDMA ---------------------------------------------------------------------------


class RdmaParams(PeerParams):
    # -x: the GID index. None (the default): picked per port from its GID table, the
    # RoCE v2 IPv4-mapped entry on an Ethernet port (inventory/infiniband.py
    # pick_roce_gid; the peer picks its own the same way), none on InfiniBand. Set,
    # it overrides the pick on both sides (a port with several IPv4 addresses).
    gid_index: int | None = Field(default=None, ge=0, le=255)
    devices: list[str] = Field(default_factory=list)  # empty: every active port
    size: int | None = Field(default=None, ge=1)  # None: perftest's default
    iterations: int = Field(default=5000, ge=5)
    peer_device: str | None = None  # None: same name as the local device


def rdma_ports(root: Path) -> tuple[IbPort, ...]:
    from bench_agent.inventory.collect import collect_inventory

    return collect_inventory(root, gpu_probe=list).infiniband


# Both RDMA checks count the devices they found: a profile requires the metric of
# whichever runs.
RDMA_ACTIVE_DEVICES = MetricSpec("network.rdma_active_devices", Unit.COUNT,
                                 "RDMA devices with an ACTIVE port (/sys/class/infiniband)")


class _RdmaCheck(Check):
    tool: ClassVar[str]
    default_size: ClassVar[int]
    domain: ClassVar[str] = "network"
    params_model: ClassVar[type[BaseModel]] = RdmaParams

    def run(self, ctx: CheckContext, params: BaseModel) -> list[Measurement]:
        from bench_agent.tools import perftest

        assert isinstance(params, RdmaParams)
        ports = [p for p in rdma_ports(ctx.root) if p.active]
        devices = sorted({p.device for p in ports})
        if params.devices:
            devices = [d for d in devices if d in params.devices]
        count = Measurement(check=self.name, metric="network.rdma_active_devices",
                            value=len(devices), unit=Unit.COUNT,
                            params={"source": "/sys/class/infiniband"})
        if not devices:
            # SKIP with the reason; a profile that requires RDMA (required: true on
            # its threshold) turns it into a FAIL (runner.py).
            wanted = f" among {', '.join(params.devices)}" if params.devices else ""
            raise NotApplicable(f"no active RDMA device{wanted} in /sys/class/infiniband "
                                "(InfiniBand or RoCE)")
        host, _info = hello(ctx, params.control_port)
        size = params.size or self.default_size
        out = [count]
        for device in devices:
            gid_index = params.gid_index
            if gid_index is None:
                gid_index = local_gid_index(ctx.root, [p for p in ports if p.device == device])
            response = peer_request(host, params.control_port, {
                "op": "perftest", "tool": self.tool, "device": params.peer_device or device,
                "gid_index": params.gid_index, "size": size,
                "iterations": params.iterations}, timeout=HELLO_TIMEOUT_S + 5)
            if not response.get("ok"):
                raise ToolFailed(self.tool, f"peer {host} could not start a server: "
                                 f"{response.get('error')}")
            found = perftest.run_client(self.tool, host, int(response["port"]), device,
                                        gid_index, size, params.iterations,
                                        timeout=max(30.0, ctx.timeout / max(1, len(devices))))
            out += [replace(m, params={**m.params, "gid_index": gid_index}) for m in found]
        return out


def local_gid_index(root: Path, ports: list[IbPort]) -> int | None:
    """perftest's -x for a device: None on InfiniBand (the LID routes), the picked RoCE
    v2 IPv4 GID of its first active Ethernet port; ToolFailed when a RoCE port has
    none (no IPv4 address on its netdev: perftest could not connect either)."""
    from bench_agent.inventory.infiniband import roce_gid_index

    roce = [p for p in ports if p.link_layer == "Ethernet"]
    if not roce:
        return None
    port = roce[0]
    picked = roce_gid_index(root, port.device, port.port)
    if picked is None:
        raise ToolFailed("perftest", f"{port.device} port {port.port} is RoCE but its GID "
                         f"table (/sys/class/infiniband/{port.device}/ports/{port.port}/gids) "
                         "has no RoCE v2 entry with an IPv4 address: set an IPv4 address on "
                         "its interface, or give gid_index")
    return picked.index


class RdmaLatencyCheck(_RdmaCheck):
    name: ClassVar[str] = "network.rdma_latency"
    tool: ClassVar[str] = "ib_write_lat"
    default_size: ClassVar[int] = 2  # perftest DEF_SIZE_LAT
    description: ClassVar[str] = "RDMA write latency to the peer (ib_write_lat, per HCA)"
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        RDMA_ACTIVE_DEVICES,
        MetricSpec("network.rdma_write_latency", Unit.SECONDS,
                   "RDMA write one-way latency (ib_write_lat typical)",
                   higher_is_better=False, per_device=True),
        *(MetricSpec(f"network.rdma_write_latency_{k}", Unit.SECONDS,
                     f"RDMA write one-way latency, {t}", higher_is_better=False,
                     per_device=True)
          for k, t in (("avg", "average"), ("p99", "p99"), ("p99_9", "p99.9"))))


class RdmaBandwidthCheck(_RdmaCheck):
    name: ClassVar[str] = "network.rdma_bandwidth"
    tool: ClassVar[str] = "ib_write_bw"
    default_size: ClassVar[int] = 65536  # perftest DEF_SIZE_BW
    description: ClassVar[str] = "RDMA write bandwidth to the peer (ib_write_bw, per HCA)"
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        RDMA_ACTIVE_DEVICES,
        MetricSpec("network.rdma_write_bandwidth", Unit.BITS_PER_SECOND,
                   "RDMA write bandwidth (ib_write_bw average)", per_device=True))


# --- InfiniBand / RoCE port health (sysfs, no peer): its own module ---------------
# Re-exported: the registry finds the network checks in this module's CHECKS.
from bench_agent.checks.network.ib_ports import (  # noqa: E402
    IB_ERROR_COUNTERS as IB_ERROR_COUNTERS,
)
from bench_agent.checks.network.ib_ports import IbPortHealthCheck as IbPortHealthCheck  # noqa: E402
from bench_agent.checks.network.ib_ports import IbPortParams as IbPortParams  # noqa: E402

# The checks of this module, in `bench-agent list` order (checks/__init__.py finds them).
CHECKS: tuple[type[Check], ...] = (TcpBandwidthCheck, TcpLatencyCheck, UdpLatencyCheck,
                                   RdmaLatencyCheck, RdmaBandwidthCheck, IbPortHealthCheck)
