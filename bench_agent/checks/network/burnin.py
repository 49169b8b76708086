"""Burn-in loop of the TCP bandwidth check: its iperf3 client, back to back.

One ``iperf3 -J`` run per interval to the peer's iperf3 server (tools/iperf3.py
builds the command, runs it through the seam and reads the result strictly):
iperf3 prints JSON only at the end of a run, and a run's end.sum_received is
exact. The peer is `bench-agent burnin --peer ADDRESS`; without one the load is
not applicable here (SKIP).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from bench_agent.checks.base import CheckContext, Emit, Stopping, burnin_interval
from bench_agent.core.errors import BenchAgentError
from bench_agent.peer.protocol import DEFAULT_PORTS


class Iperf3BurninParams(BaseModel):
    """`network_iperf3` in burnin.yaml."""

    model_config = ConfigDict(extra="forbid")
    streams: int = Field(default=4, ge=1, le=128)
    port: int = Field(default=DEFAULT_PORTS["iperf3"], ge=1, le=65535)


def iperf3_loop(ctx: CheckContext, params: BaseModel, emit: Emit, stopping: Stopping) -> None:
    from bench_agent.checks.network.checks import TOOL_SLACK_S, _peer_address
    from bench_agent.tools import iperf3

    if not isinstance(p := params, Iperf3BurninParams):
        raise TypeError(f"expected Iperf3BurninParams, got {type(params).__name__}")
    host = _peer_address(ctx)
    interval = max(1, round(burnin_interval(ctx)))
    command = iperf3.client_command(host, p.port, p.streams, interval, 0)
    while not stopping():
        try:
            (result,) = iperf3.run_parallel([command], interval + TOOL_SLACK_S)
        except BenchAgentError:
            if stopping():
                break  # iperf3 got the supervisor's SIGTERM too
            raise
        if stopping():
            break
        emit(result.received_bps)
