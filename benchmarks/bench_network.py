"""How close the agent's network checks come to raw iperf3 and raw sockperf.

    sudo python benchmarks/bench_network.py [ROUNDS]

Two network namespaces joined by a veth pair (10.250.X.0/29, created here and
removed at the end, also on failure); `bench-agent peer` in one, and in the
other, alternating ROUNDS times: the agent's check (network.tcp_bandwidth,
network.tcp_latency, in-process as the worker runs them) and the same tool
command by hand against the same peer servers, its figure read with json.loads
(iperf3) or a regular expression (sockperf), not with our parsers. The table
shows medians and ratios; targets: bandwidth agent/raw >= 0.95, latency
agent/raw <= 1.05. It reports and does not assert: exit code 0 whatever the figures.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
DURATION, OMIT, STREAMS, PROCESSES, LAT_S = 5, 1, 4, 2, 3

AGENT = """
import json, sys
from bench_agent.checks.base import CheckContext
from bench_agent.checks.network.checks import TcpBandwidthCheck, TcpLatencyCheck
name, peer = sys.argv[1], sys.argv[2]
ctx = CheckContext(extra={"peer": peer}, timeout=120)
if name == "bw":
    check = TcpBandwidthCheck()
    d, o, s, n = (int(v) for v in sys.argv[3:7])
    p = check.params_model(duration=d, omit=o, streams=s, processes=n, reverse=False)
else:
    check = TcpLatencyCheck()
    p = check.params_model(duration=int(sys.argv[7]))
print(json.dumps({m.metric: m.value for m in check.run(ctx, p)}))
"""


def sh(*args: str, timeout: float = 120) -> str:
    return subprocess.run(list(args), check=True, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT).stdout


def agent(ns: str, which: str, peer: str) -> dict[str, float]:
    settings = (DURATION, OMIT, STREAMS, PROCESSES, LAT_S)
    out = sh("ip", "netns", "exec", ns, PY, "-c", AGENT, which, peer, *map(str, settings))
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def raw_bandwidth(ns: str, peer: str) -> float:
    procs = [subprocess.Popen(["ip", "netns", "exec", ns, "iperf3", "-c", peer, "-p",
                               str(5201 + i), "-J", "-P", str(STREAMS), "-t", str(DURATION),
                               "-O", str(OMIT)], stdout=subprocess.PIPE, text=True)
             for i in range(PROCESSES)]
    total = 0.0
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        total += json.loads(out)["end"]["sum_received"]["bits_per_second"]
    return total


def raw_latency(ns: str, peer: str) -> float:
    out = sh("ip", "netns", "exec", ns, "sockperf", "ping-pong", "-i", peer, "-p", "11111",
             "--tcp", "-t", str(LAT_S))
    match = re.search(r"avg-lat(?:ency)?=\s*([0-9.]+)", out)
    assert match, out
    return float(match.group(1)) * 1e-6


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    tag = f"{random.randrange(10**6):06d}"
    pns, cns, net = f"bb-p-{tag}", f"bb-c-{tag}", f"10.250.{random.randrange(256)}"
    peer_addr = f"{net}.2"
    created: list[str] = []
    peer: subprocess.Popen[str] | None = None
    try:
        for ns in (pns, cns):
            sh("ip", "netns", "add", ns)
            created.append(ns)
        sh("ip", "link", "add", f"bp{tag}", "netns", pns, "type", "veth", "peer", "name",
           f"bc{tag}", "netns", cns)
        for ns, dev, addr in ((pns, f"bp{tag}", peer_addr), (cns, f"bc{tag}", f"{net}.1")):
            sh("ip", "-n", ns, "addr", "add", f"{addr}/29", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        peer = subprocess.Popen(["ip", "netns", "exec", pns, PY, "-m", "bench_agent.cli",
                                 "peer", "--iperf3-servers", str(PROCESSES)], cwd=ROOT,
                                stdout=subprocess.PIPE, text=True, start_new_session=True)
        assert peer.stdout is not None
        for line in peer.stdout:
            if line.strip() == "ready":
                break
        bw: dict[str, list[float]] = {"agent": [], "raw": []}
        lat: dict[str, list[float]] = {"agent": [], "raw": []}
        for _ in range(rounds):
            bw["agent"].append(agent(cns, "bw", peer_addr)["network.tcp_bandwidth"])
            bw["raw"].append(raw_bandwidth(cns, peer_addr))
            lat["agent"].append(agent(cns, "lat", peer_addr)["network.tcp_latency"])
            lat["raw"].append(raw_latency(cns, peer_addr))
        print(f"veth pair, {rounds} rounds alternating; iperf3 {PROCESSES} processes x "
              f"{STREAMS} streams, -t {DURATION} -O {OMIT}; sockperf TCP ping-pong -t {LAT_S}")
        print(f"{'metric':<24}{'agent (median)':>18}{'raw (median)':>18}{'ratio':>9}"
              f"{'target':>10}")
        b_a, b_r = statistics.median(bw["agent"]), statistics.median(bw["raw"])
        l_a, l_r = statistics.median(lat["agent"]), statistics.median(lat["raw"])
        print(f"{'tcp bandwidth':<24}{b_a / 1e9:>13.2f} Gb/s{b_r / 1e9:>13.2f} Gb/s"
              f"{b_a / b_r:>9.3f}{'>= 0.95':>10}")
        print(f"{'tcp one-way latency':<24}{l_a * 1e6:>15.2f} us{l_r * 1e6:>15.2f} us"
              f"{l_a / l_r:>9.3f}{'<= 1.05':>10}")
        print("samples: bw agent " + ", ".join(f"{v / 1e9:.2f}" for v in bw["agent"])
              + " | raw " + ", ".join(f"{v / 1e9:.2f}" for v in bw["raw"])
              + "; lat agent " + ", ".join(f"{v * 1e6:.2f}" for v in lat["agent"])
              + " | raw " + ", ".join(f"{v * 1e6:.2f}" for v in lat["raw"]))
    finally:
        if peer is not None and peer.poll() is None:
            peer.send_signal(signal.SIGTERM)
            try:
                peer.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(peer.pid, signal.SIGKILL)
                peer.wait()
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
