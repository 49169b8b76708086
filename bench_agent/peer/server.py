"""`bench-agent peer`: the other end of the network suite.

Started on the node the client measures against, it starts and supervises the
servers the network checks need, and answers a tiny control protocol:

    iperf3 -s        one process per port (5201, 5202, ...): before 3.16 an iperf3
                     process is single-threaded and serves one test at a time
                     (iperf3 FAQ), so the client runs one client per server port
                     in parallel and sums them.
    sockperf server  one for TCP (--tcp) and one for UDP, on the same port number.
    qperf            the latency fallback (one listener serves TCP and UDP tests).
    control port     TCP, JSON lines: one request line, one response line.

Control protocol (version 1). Requests are one JSON object per line:

    {"op": "hello"}
        -> {"ok": true, "protocol": 1, "agent": "0.1.0", "services":
            {"iperf3": [5201, ...], "sockperf": 11111, "qperf": 19765},
            "rdma_devices": ["mlx5_0", ...]}
    {"op": "perftest", "tool": "ib_write_lat", "device": "mlx5_0",
     "gid_index": 3, "size": 2, "iterations": 1000}
        -> {"ok": true, "port": 18515}   a one-shot perftest server now listens
        -> {"ok": false, "error": "..."}

perftest servers serve exactly one client and exit, so they are started on
demand, with a whitelisted tool and validated options (never a command line from
the network), on the next free port from perftest's default 18515
(perftest_parameters.h, DEF_PORT), and killed if no client came within
PERFTEST_SERVER_TTL_S.

Services that exit are restarted with a back-off; on SIGTERM or SIGINT every
child is stopped (SIGTERM, then SIGKILL after a grace period) and the command
exits 0.
"""

from __future__ import annotations

import contextlib
import json
import re
import selectors
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from bench_agent.core.errors import PeerError
from bench_agent.core.process import DEVNULL, Child, spawn, stop_all
from bench_agent.inventory.devices import rdma_devices
from bench_agent.inventory.infiniband import IB_CLASS, roce_gid_index
from bench_agent.peer.protocol import DEFAULT_PORTS, MAX_REQUEST_BYTES, PROTOCOL

DEFAULT_IPERF3_SERVERS = 4
PERFTEST_TOOLS = ("ib_write_lat", "ib_write_bw", "ib_read_lat")
PERFTEST_PORT_SPAN = 16
PERFTEST_SERVER_TTL_S = 120.0
# A perftest server needs a moment to open its TCP exchange socket before the
# client connects (perftest_communication.c, ethernet_server_connect).
PERFTEST_START_S = 0.5
STOP_GRACE_S = 3.0
_DEVICE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _roce_gid(root: Path, device: str, port: object) -> int | None:
    """This node's GID index for ``device``'s port when it is RoCE, else None."""
    from bench_agent.core.sysfs import read_line

    if not isinstance(port, int) or isinstance(port, bool):
        return None
    layer = read_line(root / IB_CLASS / device / "ports" / str(port) / "link_layer")
    if layer != "Ethernet":
        return None
    picked = roce_gid_index(root, device, port)
    return picked.index if picked is not None else None


# Control connections served at once (each a thread; a client needs one at a time).
MAX_CONTROL_CLIENTS = 32


# --- services ------------------------------------------------------------------------


@dataclass
class Service:
    """One supervised server process and how to restart it."""

    name: str
    command: list[str]
    proc: Child | None = None
    restarts: list[float] = field(default_factory=list)
    given_up: bool = False

    def start(self) -> None:
        # Started from the main thread (start, supervise_once): the parent-death
        # signal then ends the server with the peer, even a SIGKILLed one.
        self.proc = spawn(self.command, stdout=DEVNULL, stderr=DEVNULL, grace=STOP_GRACE_S)


def _stop_processes(procs: Sequence[Child]) -> None:
    """SIGTERM every server with what it started, one grace for all, then SIGKILL."""
    stop_all(procs, STOP_GRACE_S)


@dataclass
class PeerConfig:
    bind: str = ""  # empty: every address
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    iperf3_servers: int = DEFAULT_IPERF3_SERVERS
    root: Path = Path("/")


def build_services(config: PeerConfig, which: Callable[[str], str | None] = shutil.which
                   ) -> tuple[list[Service], dict[str, Any]]:
    """The server commands for the tools installed here, and what to announce."""
    services: list[Service] = []
    announced: dict[str, Any] = {"iperf3": [], "sockperf": None, "qperf": None}
    if which("iperf3"):
        for index in range(config.iperf3_servers):
            port = config.ports["iperf3"] + index
            command = ["iperf3", "-s", "-p", str(port)]
            if config.bind:
                command += ["-B", config.bind]
            services.append(Service(f"iperf3:{port}", command))
            announced["iperf3"].append(port)
    if which("sockperf"):
        port = config.ports["sockperf"]
        address = config.bind or "0.0.0.0"
        services.append(Service(f"sockperf-tcp:{port}",
                                ["sockperf", "server", "-i", address, "-p", str(port), "--tcp"]))
        services.append(Service(f"sockperf-udp:{port}",
                                ["sockperf", "server", "-i", address, "-p", str(port)]))
        announced["sockperf"] = port
    if which("qperf"):
        # qperf has no option to bind one address: it listens on all of them.
        port = config.ports["qperf"]
        services.append(Service(f"qperf:{port}", ["qperf", "--listen_port", str(port)]))
        announced["qperf"] = port
    return services, announced


class Peer:
    """The supervisor: services, the control listener, on-demand perftest servers."""

    def __init__(self, config: PeerConfig, out: TextIO = sys.stdout) -> None:
        self.config = config
        self.out = out
        self.services, self.announced = build_services(config)
        self.perftest_procs: list[tuple[Child, float, int]] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        # Set by the signal handler, which must take no lock: Event.set() takes one,
        # and a second SIGTERM arriving inside it (timeout(1) forwards one, the
        # playbook sends another) deadlocked the peer on that lock.
        self.stop_requested = False
        self.listener: socket.socket | None = None
        # The control port has no authentication: bound the threads a flood of
        # connections can take; one over the bound is closed at once.
        self.clients = threading.BoundedSemaphore(MAX_CONTROL_CLIENTS)

    # -- control protocol --

    def handle(self, request: Any) -> dict[str, Any]:
        if not isinstance(request, dict):
            return {"ok": False, "error": "a request is a JSON object"}
        op = request.get("op")
        if op == "hello":
            from bench_agent import __version__

            return {"ok": True, "protocol": PROTOCOL, "agent": __version__,
                    "services": self.announced,
                    "rdma_devices": rdma_devices(self.config.root),
                    "perftest": bool(shutil.which("ib_write_lat"))}
        if op == "perftest":
            return self._start_perftest(request)
        return {"ok": False, "error": f"unknown op {op!r}"}

    def _start_perftest(self, request: dict[str, Any]) -> dict[str, Any]:
        tool = request.get("tool")
        if tool not in PERFTEST_TOOLS:
            return {"ok": False, "error": f"tool must be one of {', '.join(PERFTEST_TOOLS)}"}
        if shutil.which(str(tool)) is None:
            return {"ok": False, "error": f"{tool} is not installed on the peer"}
        command = [str(tool)]
        device = request.get("device")
        if device is not None:
            if not isinstance(device, str) or not _DEVICE_RE.match(device):
                return {"ok": False, "error": "invalid device name"}
            if device not in rdma_devices(self.config.root):
                devices = rdma_devices(self.config.root)
                if not devices:
                    return {"ok": False, "error": "the peer has no RDMA device"}
                device = devices[0]
            command += ["-d", device]
            if request.get("gid_index") is None:
                # The client's GID index is its own table's; this side picks from its
                # own the same way (RoCE v2, IPv4-mapped), none on InfiniBand.
                picked = _roce_gid(self.config.root, device, request.get("ib_port") or 1)
                if picked is not None:
                    command += ["-x", str(picked)]
        for key, flag, low, high in (("gid_index", "-x", 0, 255), ("size", "-s", 1, 1 << 30),
                                     ("iterations", "-n", 5, 100_000_000),
                                     ("ib_port", "-i", 1, 255)):
            value = request.get(key)
            if value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                return {"ok": False, "error": f"{key} must be an integer in [{low}, {high}]"}
            command += [flag, str(value)]
        with self.lock:
            port = self._free_perftest_port()
            if port is None:
                return {"ok": False, "error": "every perftest port is busy"}
            # No bind address: perftest's server listens on every address for its
            # out-of-band exchange (perftest_communication.c).
            command += ["-p", str(port)]
            # No parent-death signal: it would fire when this client thread ends
            # (prctl(2)), right after the answer; the TTL and stop() end it.
            proc = spawn(command, stdout=DEVNULL, stderr=DEVNULL, die_with_parent=False,
                         grace=STOP_GRACE_S)
            self.perftest_procs.append((proc, time.monotonic(), port))
        time.sleep(PERFTEST_START_S)
        code = proc.poll()
        if code is not None:
            return {"ok": False, "error": f"{tool} server exited with code {code}"}
        self._say(f"perftest: {' '.join(command)} (pid {proc.pid})")
        return {"ok": True, "port": port}

    def _free_perftest_port(self) -> int | None:
        busy = {port for proc, _, port in self.perftest_procs if proc.poll() is None}
        base = self.config.ports["perftest"]
        for port in range(base, base + PERFTEST_PORT_SPAN):
            if port not in busy:
                return port
        return None

    def _serve_client_counted(self, conn: socket.socket) -> None:
        try:
            self._serve_client(conn)
        finally:
            self.clients.release()

    def _serve_client(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5.0)
            data = b""
            try:
                while b"\n" not in data and len(data) < MAX_REQUEST_BYTES:
                    chunk = conn.recv(MAX_REQUEST_BYTES)
                    if not chunk:
                        break
                    data += chunk
                try:
                    request = json.loads(data.split(b"\n", 1)[0] or b"null")
                except (json.JSONDecodeError, UnicodeDecodeError):
                    response: dict[str, Any] = {"ok": False, "error": "not JSON"}
                else:
                    response = self.handle(request)
                conn.sendall(json.dumps(response).encode() + b"\n")
            except OSError:
                return

    # -- lifecycle --

    def _say(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def start(self) -> None:
        host = self.config.bind or "0.0.0.0"
        listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((host, self.config.ports["control"]))
        except OSError as exc:
            listener.close()
            raise PeerError(f"cannot listen on {host}:{self.config.ports['control']}: "
                            f"{exc.strerror}") from exc
        listener.listen(16)
        self.listener = listener
        if not self.services:
            raise PeerError("none of iperf3, sockperf, qperf is installed")
        for service in self.services:
            service.start()
            self._say(f"listening: {service.name} ({' '.join(service.command)}, "
                      f"pid {service.proc.pid if service.proc else '?'})")
        self._say(f"listening: control {host}:{self.config.ports['control']} "
                  f"(JSON lines, protocol {PROTOCOL})")

    def supervise_once(self) -> None:
        """Restart services that exited (at most 5 times a minute each); reap perftest."""
        now = time.monotonic()
        for service in self.services:
            proc = service.proc
            code = None if proc is None else proc.poll()
            if service.given_up or code is None:
                continue
            service.restarts = [t for t in service.restarts if now - t < 60.0]
            if len(service.restarts) >= 5:
                service.given_up = True
                self._say(f"giving up on {service.name}: exited 5 times within a minute")
                continue
            self._say(f"restarting {service.name} (exited with code {code})")
            service.restarts.append(now)
            service.start()
        with self.lock:
            kept = []
            for proc, started, port in self.perftest_procs:
                if proc.poll() is not None:
                    continue
                if now - started > PERFTEST_SERVER_TTL_S:
                    _stop_processes([proc])
                    continue
                kept.append((proc, started, port))
            self.perftest_procs = kept

    def serve(self) -> None:
        assert self.listener is not None
        selector = selectors.DefaultSelector()
        selector.register(self.listener, selectors.EVENT_READ)
        try:
            while not (self.stop_requested or self.stopping.is_set()):
                for _key, _mask in selector.select(timeout=0.5):
                    with contextlib.suppress(OSError):
                        conn, _addr = self.listener.accept()
                        if not self.clients.acquire(blocking=False):
                            conn.close()
                            continue
                        threading.Thread(target=self._serve_client_counted, args=(conn,),
                                         daemon=True).start()
                self.supervise_once()
        finally:
            selector.close()

    def stop(self) -> None:
        self.stopping.set()
        if self.listener is not None:
            with contextlib.suppress(OSError):
                self.listener.close()
        procs = [s.proc for s in self.services if s.proc is not None]
        with self.lock:
            procs += [p for p, _, _ in self.perftest_procs]
        _stop_processes(procs)


def parse_ports(specs: Sequence[str]) -> dict[str, int]:
    """"--ports iperf3=5301,sockperf=11200" (repeatable) over the defaults."""
    ports = dict(DEFAULT_PORTS)
    for spec in specs:
        for item in spec.split(","):
            name, sep, value = item.partition("=")
            name = name.strip()
            if not sep or name not in ports or not value.strip().isdigit():
                raise ValueError(f"--ports expects NAME=PORT with NAME one of "
                                 f"{', '.join(DEFAULT_PORTS)}; got {item!r}")
            port = int(value)
            if not 1 <= port <= 65535:
                raise ValueError(f"port out of range: {item!r}")
            ports[name] = port
    return ports


def run_peer(config: PeerConfig, out: TextIO = sys.stdout) -> int:
    """Run until SIGTERM or SIGINT; 0 on a clean stop, 2 when it cannot start."""
    peer = Peer(config, out)

    def _stop(signum: int, frame: FrameType | None) -> None:
        peer.stop_requested = True  # a plain store: safe however often signals come

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            peer.start()
        except PeerError as exc:
            print(f"bench-agent peer: {exc}", file=sys.stderr)
            return 2
        peer._say("ready")
        peer.serve()
        peer._say("stopping")
        return 0
    finally:
        peer.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
