"""The network suite end to end: two network namespaces joined by a veth pair.

`bench-agent peer` runs in one namespace, `bench-agent run` in the other, with the
real iperf3, sockperf and qperf. Traffic never leaves the namespaces this file
creates (10.250.X.0/29), and the namespaces and every process are removed in a
`finally`, also when a test fails. Needs root and `ip netns`; skipped otherwise.
"""

from __future__ import annotations

import contextlib
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench_agent.checks.base import CheckContext, RunOptions
from bench_agent.checks.network.checks import RdmaLatencyCheck, RdmaParams, TcpLatencyCheck
from bench_agent.core.errors import NotApplicable
from bench_agent.peer.server import Peer, PeerConfig
from bench_agent.report.attest import load_report
from tests.paths import DATA, REPO

REPO = REPO
PYTHON = sys.executable

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("iperf3") is None
    or shutil.which("sockperf") is None,
    reason="needs root, iproute2, iperf3 and sockperf",
)


@dataclass
class NetnsPair:
    peer_ns: str
    client_ns: str
    peer_addr: str
    client_addr: str
    free_addr: str  # in the subnet, no host behind it


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def netns() -> Iterator[NetnsPair]:
    suffix = f"{os.getpid() % 10000}{random.randrange(10**4):04d}"
    peer_ns, client_ns = f"ba-p-{suffix}", f"ba-c-{suffix}"
    octet = random.randrange(256)
    net = f"10.250.{octet}"
    created: list[str] = []
    try:
        for ns in (peer_ns, client_ns):
            _ip("netns", "add", ns)
            created.append(ns)
        veth_p, veth_c = f"vp{suffix}", f"vc{suffix}"
        _ip("link", "add", veth_p, "netns", peer_ns, "type", "veth", "peer", "name", veth_c,
            "netns", client_ns)
        for ns, dev, addr in ((peer_ns, veth_p, f"{net}.2"), (client_ns, veth_c, f"{net}.1")):
            _ip("-n", ns, "addr", "add", f"{addr}/29", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield NetnsPair(peer_ns, client_ns, f"{net}.2", f"{net}.1", f"{net}.5")
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot create network namespaces: {exc.stderr!r}")
    finally:
        for ns in created:  # deleting a namespace deletes its veth end, then the pair
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


@pytest.fixture
def peer(netns: NetnsPair) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        ["ip", "netns", "exec", netns.peer_ns, PYTHON, "-m", "bench_agent.cli", "peer",
         "--bind", netns.peer_addr, "--iperf3-servers", "2"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)  # its own group: the peer and its servers, killable at once
    try:
        lines = _wait_for(proc, "ready", 15.0)
        proc.lines = lines  # type: ignore[attr-defined]
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # the peer stops and reaps its servers
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=8)
        _kill_group_leftovers(proc.pid)
        proc.wait(timeout=10)


def _kill_group_leftovers(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _wait_for(proc: subprocess.Popen[str], word: str, timeout: float) -> list[str]:
    """The peer's lines up to ``word``; a thread reads, so buffering cannot hide a line."""
    assert proc.stdout is not None
    stream = proc.stdout
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line.rstrip())
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        if line is None:
            break
        seen.append(line)
        if line == word:
            return seen
    raise AssertionError(f"peer did not print {word!r}: {seen}")


def _suite(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(f"name: net-test\nprofile: guide-minimum\nchecks:\n{body}")
    return path


def _run(netns: NetnsPair, tmp_path: Path, suite: Path, peer_addr: str,
         timeout: float = 80.0) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    out = tmp_path / "out"
    env = {**os.environ, "BENCH_AGENT_KEY": str(tmp_path / "node.key")}
    proc = subprocess.run(
        ["ip", "netns", "exec", netns.client_ns, PYTHON, "-m", "bench_agent.cli", "run",
         "--suite-file", str(suite), "--peer", peer_addr, "--output", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)
    reports = list(out.rglob("*.json"))
    assert len(reports) == 1, proc.stdout + proc.stderr
    return proc, load_report(reports[0]).to_dict()  # signed: a DSSE envelope


FULL = """\
  - check: network.tcp_bandwidth
    timeout: 40s
    params: {duration: 2, omit: 1, streams: 2, processes: 2}
  - check: network.tcp_latency
    timeout: 20s
    params: {duration: 2}
  - check: network.udp_latency
    timeout: 20s
    params: {duration: 2, tool: qperf}
  - check: network.rdma_latency
    timeout: 20s
"""


@pytest.mark.netns
def test_peer_and_run_over_veth(netns: NetnsPair, peer: subprocess.Popen[str],
                                tmp_path: Path) -> None:
    lines = peer.lines  # type: ignore[attr-defined]
    assert any("iperf3:5201" in line for line in lines)
    assert any("iperf3:5202" in line for line in lines)
    assert any("sockperf-udp:11111" in line for line in lines)
    proc, report = _run(netns, tmp_path, _suite(tmp_path, FULL), netns.peer_addr)
    measured = {m["metric"]: m for m in report["measurements"]}
    bw = measured["network.tcp_bandwidth"]
    assert bw["unit"] == "bits/s" and bw["value"] > 1e8
    assert bw["params"]["processes"] == 2 and len(bw["samples"]) == 2
    assert measured["network.tcp_bandwidth_reverse"]["value"] > 1e8
    assert measured["network.tcp_retransmits"]["unit"] == "count"
    for metric in ("network.tcp_latency", "network.tcp_latency_p50", "network.tcp_latency_p99",
                   "network.tcp_latency_p99_9", "network.udp_latency"):
        assert measured[metric]["unit"] == "s"
        assert 1e-7 < measured[metric]["value"] < 0.05, metric
    assert measured["network.tcp_latency"]["tool"] == "sockperf"
    assert measured["network.udp_latency"]["tool"] == "qperf"
    # veth reports a link speed (10000 Mbit/s) inside the namespace's sysfs
    ratio = measured["network.tcp_bandwidth_link_ratio"]
    assert ratio["params"]["link_speed_bits_per_second"] == 1e10
    assert ratio["value"] == pytest.approx(bw["value"] / 1e10)
    assert ratio["device"].startswith("vc") and "10 Gbit/s link" in ratio["device"]
    verdicts = {(v["metric"] or v["check"]): v["status"] for v in report["verdicts"]}
    assert verdicts["network.tcp_latency"] in ("PASS", "WARN")
    assert verdicts["network.tcp_bandwidth"] in ("PASS", "WARN", "FAIL")
    # No RDMA device here: the check SKIPs with the reason, so does its threshold.
    assert verdicts["network.rdma_latency"] == "SKIP"
    rdma = next(v for v in report["verdicts"] if v["check"] == "network.rdma_latency")
    assert "no active RDMA device in /sys/class/infiniband" in rdma["message"]
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr


def test_link_ratio_fails_with_both_figures_side_by_side() -> None:
    """A 100 Gbit/s NIC delivering 40: FAIL under the guide profiles' 0.6 line."""
    from bench_agent.checks.network.checks import link_ratio_measurement
    from bench_agent.config.loader import load_profile_named
    from bench_agent.core.model import Measurement
    from bench_agent.core.thresholds import evaluate
    from bench_agent.core.units import Unit

    forward = Measurement("network.tcp_bandwidth", "network.tcp_bandwidth", 4e10,
                          Unit.BITS_PER_SECOND)
    ratio = link_ratio_measurement("network.tcp_bandwidth", "eth0", 1e11, forward)
    profile = load_profile_named("guide-minimum")
    verdicts = evaluate([forward, ratio], profile.thresholds, ["network.tcp_bandwidth"])
    by_metric = {v.metric: v for v in verdicts}
    link = by_metric["network.tcp_bandwidth_link_ratio"]
    assert link.status.value == "FAIL" and link.value == pytest.approx(0.4)
    assert link.device == "eth0: 40 Gbit/s measured, 100 Gbit/s link"
    assert by_metric["network.tcp_bandwidth"].status.value == "PASS"  # >= 25 Gbit/s


@pytest.mark.netns
def test_peer_killed_during_a_check_is_an_error_and_the_report_is_written(
        netns: NetnsPair, peer: subprocess.Popen[str], tmp_path: Path) -> None:
    suite = _suite(tmp_path, """\
  - check: network.tcp_bandwidth
    timeout: 40s
    params: {duration: 8, omit: 0, streams: 1, processes: 1, reverse: false}
""")
    killer = subprocess.Popen([PYTHON, "-c", f"import os, signal, time; time.sleep(3); "
                               f"os.killpg({peer.pid}, signal.SIGKILL)"])
    started = time.monotonic()
    try:
        proc, report = _run(netns, tmp_path, suite, netns.peer_addr)
    finally:
        killer.wait(timeout=10)
    assert time.monotonic() - started < 35
    assert proc.returncode == 2
    verdicts = report["verdicts"]
    # The profile's thresholds are in the report too, SKIP (nothing measured).
    assert [v["status"] for v in verdicts if v["status"] != "SKIP"] == ["ERROR"]


@pytest.mark.netns
@pytest.mark.parametrize("which", ["refused", "no_host"])
def test_unreachable_peer_is_an_error_naming_the_address(
        netns: NetnsPair, tmp_path: Path, which: str) -> None:
    address = netns.peer_addr if which == "refused" else netns.free_addr
    suite = _suite(tmp_path, """\
  - check: network.tcp_latency
    timeout: 20s
    params: {duration: 2}
""")
    started = time.monotonic()
    proc, report = _run(netns, tmp_path, suite, address)
    assert time.monotonic() - started < 20
    assert proc.returncode == 2
    (verdict,) = [v for v in report["verdicts"] if v["status"] != "SKIP"]
    assert verdict["status"] == "ERROR"
    assert f"{address}:5200" in verdict["message"]


@pytest.mark.netns
def test_peer_stops_its_servers_on_sigterm(netns: NetnsPair,
                                           peer: subprocess.Popen[str]) -> None:
    lines = peer.lines  # type: ignore[attr-defined]
    pids = [int(line.rsplit("pid ", 1)[1].rstrip(")")) for line in lines if "pid " in line]
    assert len(pids) == 5  # 2 iperf3, sockperf TCP and UDP, qperf
    peer.send_signal(signal.SIGTERM)
    assert peer.wait(timeout=10) == 0
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


# --- in-process pieces --------------------------------------------------------------------


def test_no_peer_option_is_skip() -> None:
    with pytest.raises(NotApplicable, match="--peer"):
        TcpLatencyCheck().run(CheckContext(), TcpLatencyCheck.params_model())


def test_rdma_without_devices_is_skip_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(NotApplicable, match="no active RDMA device in /sys/class/infiniband"):
        RdmaLatencyCheck().run(CheckContext(root=tmp_path, options=RunOptions(peer="192.0.2.1")),
                               RdmaParams())


def test_rdma_with_devices_needs_a_peer() -> None:
    root = DATA / "sysroots" / "dual-socket-nvme-ib"
    with pytest.raises(NotApplicable):
        RdmaLatencyCheck().run(CheckContext(root=root), RdmaParams())


def test_control_protocol_refuses_what_it_does_not_know() -> None:
    peer = Peer(PeerConfig())
    assert peer.handle({"op": "hello"})["ok"] is True
    assert peer.handle({"op": "rm -rf"})["ok"] is False
    assert peer.handle({"op": "perftest", "tool": "bash"})["ok"] is False
    assert peer.handle([1, 2])["ok"] is False
    bad = peer.handle({"op": "perftest", "tool": "ib_write_lat", "device": "x; reboot"})
    assert bad["ok"] is False


def test_control_port_bounds_its_connection_threads() -> None:
    """An unauthenticated port: connections past the bound are closed, not queued."""
    import socket as socket_module
    import threading

    from bench_agent.peer import server as peer_module

    config = PeerConfig(bind="127.0.0.1", ports={**peer_module.DEFAULT_PORTS, "control": 0})
    server = Peer(config)
    server.listener = socket_module.create_server(("127.0.0.1", 0))
    port = server.listener.getsockname()[1]
    held = [server.clients.acquire(blocking=False)
            for _ in range(peer_module.MAX_CONTROL_CLIENTS)]
    assert all(held)  # every slot taken, as by a flood of idle connections
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        with socket_module.create_connection(("127.0.0.1", port), timeout=5) as conn:
            assert conn.recv(100) == b""  # closed at once, unread: no thread for it
        server.clients.release()
        with socket_module.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(b'{"op": "hello"}\n')
            assert b'"ok": true' in conn.recv(4096)
    finally:
        server.stopping.set()
        thread.join(timeout=5)
        server.listener.close()


@pytest.mark.e2e
def test_a_burst_of_sigterms_stops_the_peer(tmp_path: Path) -> None:
    """timeout(1) forwards SIGTERM and a playbook sends its own: several signals at
    once must stop the peer, not deadlock it in its own signal handler."""
    import signal as signal_module
    import socket as socket_module

    def free_port() -> int:
        with socket_module.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return int(probe.getsockname()[1])

    ports = (f"control={free_port()},iperf3={free_port()},sockperf={free_port()},"
             f"qperf={free_port()},perftest={free_port()}")
    for _attempt in range(3):
        proc = subprocess.Popen(
            [PYTHON, "-m", "bench_agent.cli", "peer", "--bind", "127.0.0.1", "--ports", ports,
             "--iperf3-servers", "1"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            assert proc.stdout is not None
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if "ready" in proc.stdout.readline():
                    break
            for _ in range(20):
                proc.send_signal(signal_module.SIGTERM)
            assert proc.wait(timeout=20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
