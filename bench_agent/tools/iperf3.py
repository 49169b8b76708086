"""iperf3: run clients with -J and read their JSON.

What the JSON means (iperf3's iperf_api.c, ``iperf_print_results`` and its
``cJSON_AddItemToObject`` calls; field names as iperf 3.0.11 through 3.12 print them):

- ``start.test_start``: ``protocol`` ("TCP"/"UDP"), ``num_streams``, ``omit``,
  ``duration``, ``reverse`` (1 with -R), ``bidir`` (3.7+, 1 with --bidir).
- ``end.sum_sent`` / ``end.sum_received`` (TCP; UDP from 3.11 on too): bytes,
  ``bits_per_second``, ``seconds`` of the sender and the receiver side, summed
  over the streams; ``sum_sent.retransmits`` on Linux. We report the *received*
  rate: what arrived, not what was pushed into socket buffers.
- ``--bidir`` (3.7+) adds ``sum_sent_bidir_reverse`` / ``sum_received_bidir_reverse``
  for the server-to-client direction.
- UDP before 3.11 has only ``end.sum`` with ``jitter_ms``, ``lost_packets``,
  ``packets``, ``lost_percent``.
- With -O N the first N seconds are left out of the ``end`` sums (intervals carry
  ``"omitted": true``), which is why the end sums are the figures to use.
- ``error``: iperf3 can exit 0 with ``{"error": "..."}`` and empty ``end`` (3.7:
  "error - unable to connect to server: Connection refused").
- iperf 3.0 prints floats with %g ("9.50062e+08", valid JSON) and lacks the
  ``sender`` keys; nothing here needs them.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench_agent.core.errors import CheckTimeout, ParseError, ToolFailed, ToolMissing
from bench_agent.core.model import Measurement
from bench_agent.core.process import TOOL_GRACE_S, spawn
from bench_agent.core.strict_json import REFUSE, Path, read_document, snippet
from bench_agent.core.units import Unit

TOOL = "iperf3"


@dataclass(frozen=True, slots=True)
class Iperf3Result:
    """One iperf3 client run, in canonical units (bits/s, seconds, counts)."""

    version: str
    protocol: str  # "TCP" or "UDP"
    reverse: bool
    bidir: bool
    streams: int
    received_bps: float
    sent_bps: float
    retransmits: int | None
    # --bidir: the server-to-client direction
    reverse_received_bps: float | None = None
    reverse_retransmits: int | None = None
    # UDP
    jitter_s: float | None = None
    lost_packets: int | None = None
    packets: int | None = None


# iperf3 adds these to "start" once per connected TCP stream: -P 2 and --bidir
# runs of iperf 3.12 repeat them (tests/data/network/iperf3_3.12_tcp_*). They are
# socket buffer sizes, not figures read here; the last stream's are kept.
_PER_STREAM_KEYS = frozenset({"sock_bufsize", "sndbuf_actual", "rcvbuf_actual"})


def _duplicate(path: Path, key: str, values: list[Any]) -> Any:
    return values[-1] if path == ("start",) and key in _PER_STREAM_KEYS else REFUSE


def _document(text: str) -> dict[str, Any]:
    """The one ``-J`` document (warning lines before it are allowed; strict_json:
    no other duplicate key, no NaN, huge integer, deep nesting or text after it)."""
    return read_document(text, TOOL, duplicates=_duplicate)[0]


def _section(parent: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    """An object of the document; absent or empty is {}, any other type is an error."""
    value = parent.get(key)
    if value is None or value == {} or value == []:
        return {}
    if not isinstance(value, dict):
        raise ParseError(TOOL, f"{where}{key} is {snippet(json.dumps(value), 60)}, "
                               "not an object")
    return value


def _number(section: dict[str, Any], key: str, where: str) -> float | None:
    """A figure of the document: absent is None; negative or not a number is an
    error (a negative rate or count is no measurement, and would crash later)."""
    value = section.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ParseError(TOOL, f"{where}{key} is {snippet(json.dumps(value), 60)}, "
                               "not a number")
    if value < 0:
        raise ParseError(TOOL, f"{where}{key} is negative ({value!r})")
    return float(value)


def _count(section: dict[str, Any], key: str, where: str) -> int | None:
    value = _number(section, key, where)
    if value is not None and not value.is_integer():
        raise ParseError(TOOL, f"{where}{key} is {value!r}, not a whole count")
    return int(value) if value is not None else None


def parse_iperf3_result(text: str) -> Iperf3Result:
    """Read one ``iperf3 -J`` document; ToolFailed when it reports an error."""
    doc = _document(text)
    start = _section(doc, "start", "")
    version = str(start.get("version", "")).removeprefix("iperf ").strip()
    error = doc.get("error")
    if error:
        raise ToolFailed(TOOL, str(error))
    end = _section(doc, "end", "")
    if not end:
        raise ParseError(TOOL, "no 'end' section (the test did not finish)", text.strip()[:300])
    test = _section(start, "test_start", "start.")
    protocol = str(test.get("protocol", "TCP")).upper()
    reverse = bool(test.get("reverse", 0))
    bidir = bool(test.get("bidir", 0)) or "sum_received_bidir_reverse" in end
    streams = _count(test, "num_streams", "start.test_start.") or 1
    sent = _section(end, "sum_sent", "end.")
    received = _section(end, "sum_received", "end.")
    summed = _section(end, "sum", "end.")
    if protocol == "UDP":
        # 3.11+: sum_received is the receiver's view; before: only "sum".
        base, base_name = (received, "end.sum_received.") if received else (summed, "end.sum.")
        received_bps = _number(base, "bits_per_second", base_name)
        sent_bps = (_number(sent, "bits_per_second", "end.sum_sent.") if sent
                    else _number(summed, "bits_per_second", "end.sum."))
        jitter = _number(base, "jitter_ms", base_name)
        lost = _count(base, "lost_packets", base_name)
        packets = _count(base, "packets", base_name)
        if received_bps is None or sent_bps is None:
            raise ParseError(TOOL, "UDP result without bits_per_second", text.strip()[:300])
        return Iperf3Result(version, protocol, reverse, bidir, streams, received_bps, sent_bps,
                            None, jitter_s=jitter / 1e3 if jitter is not None else None,
                            lost_packets=lost, packets=packets)
    received_bps = _number(received, "bits_per_second", "end.sum_received.")
    sent_bps = _number(sent, "bits_per_second", "end.sum_sent.")
    if received_bps is None or sent_bps is None:
        raise ParseError(TOOL, "no end.sum_sent/sum_received bits_per_second", text.strip()[:300])
    retrans = _count(sent, "retransmits", "end.sum_sent.")
    reverse_bps = reverse_retrans = None
    if bidir:
        reverse_bps = _number(_section(end, "sum_received_bidir_reverse", "end."),
                              "bits_per_second", "end.sum_received_bidir_reverse.")
        reverse_retrans = _count(_section(end, "sum_sent_bidir_reverse", "end."),
                                 "retransmits", "end.sum_sent_bidir_reverse.")
    return Iperf3Result(version, protocol, reverse, bidir, streams, received_bps, sent_bps,
                        retrans, reverse_received_bps=reverse_bps,
                        reverse_retransmits=reverse_retrans)


def measurements_of(
    results: Sequence[Iperf3Result],
    check: str = "network.tcp_bandwidth",
    device: str = "",
    params: dict[str, Any] | None = None,
) -> list[Measurement]:
    """Several simultaneous iperf3 processes, summed per direction."""
    if not results:
        return []
    first = results[0]
    common: dict[str, Any] = {
        "check": check, "tool": TOOL, "tool_version": first.version, "device": device,
        "params": {"processes": len(results), "streams_per_process": first.streams,
                   **(params or {})},
    }
    if first.protocol == "UDP":
        out = [Measurement(metric="network.udp_bandwidth", unit=Unit.BITS_PER_SECOND,
                           value=sum(r.received_bps for r in results),
                           samples=tuple(r.received_bps for r in results), **common)]
        lost = [r.lost_packets for r in results if r.lost_packets is not None]
        if lost:
            out.append(Measurement(metric="network.udp_lost_packets", unit=Unit.COUNT,
                                   value=sum(lost), **common))
        jitter = [r.jitter_s for r in results if r.jitter_s is not None]
        if jitter:
            out.append(Measurement(metric="network.udp_jitter", unit=Unit.SECONDS,
                                   value=max(jitter), **common))
        return out
    suffix = "_reverse" if first.reverse else ""
    out = [Measurement(metric=f"network.tcp_bandwidth{suffix}", unit=Unit.BITS_PER_SECOND,
                       value=sum(r.received_bps for r in results),
                       samples=tuple(r.received_bps for r in results), **common)]
    retrans = [r.retransmits for r in results if r.retransmits is not None]
    if retrans:
        out.append(Measurement(metric=f"network.tcp_retransmits{suffix}", unit=Unit.COUNT,
                               value=sum(retrans), **common))
    back = [r.reverse_received_bps for r in results if r.reverse_received_bps is not None]
    if first.bidir and back:
        out.append(Measurement(metric="network.tcp_bandwidth_reverse",
                               unit=Unit.BITS_PER_SECOND, value=sum(back),
                               samples=tuple(back), **common))
        back_retrans = [r.reverse_retransmits for r in results
                        if r.reverse_retransmits is not None]
        if back_retrans:
            out.append(Measurement(metric="network.tcp_retransmits_reverse", unit=Unit.COUNT,
                                   value=sum(back_retrans), **common))
    return out


def parse_iperf3(text: str) -> list[Measurement]:
    """`bench-agent parse iperf3 FILE`: one -J document as measurements."""
    return measurements_of([parse_iperf3_result(text)])


# --- running -------------------------------------------------------------------------


def client_command(host: str, port: int, streams: int, duration: int, omit: int,
                   reverse: bool = False, udp_bitrate: str | None = None) -> list[str]:
    command = [TOOL, "-c", host, "-p", str(port), "-J", "-P", str(streams),
               "-t", str(duration), "-O", str(omit)]
    if reverse:
        command.append("-R")
    if udp_bitrate is not None:
        command += ["-u", "-b", udp_bitrate]
    return command


def run_parallel(commands: Sequence[list[str]], timeout: float) -> list[Iperf3Result]:
    """Start every client at once, wait for all, parse each (first failure raises).

    Each client talks to its own server process, so N processes use N cores on
    both ends; the sum is what the link carried.
    """
    if shutil.which(TOOL) is None:
        raise ToolMissing(TOOL, "install iperf3 (apt install iperf3)")
    deadline = time.monotonic() + timeout
    outputs: list[tuple[int, str, str]] = []
    # Every client is owned by the stack from its start: if a later one cannot
    # start, or the time runs out, or we are interrupted, all are stopped.
    with contextlib.ExitStack() as owned:
        try:
            children = [owned.enter_context(spawn(list(command), grace=TOOL_GRACE_S))
                        for command in commands]
        except OSError as exc:
            raise ToolFailed(TOOL, f"cannot start {TOOL}: {exc}") from exc
        for child in children:
            done = child.finish(timeout=max(0.1, deadline - time.monotonic()))
            if done.timed_out:
                raise CheckTimeout(f"iperf3 ran past {timeout:g} s ({' '.join(child.command)})")
            assert done.returncode is not None  # it exited: that is what ended the wait
            outputs.append((done.returncode, done.stdout, done.stderr))
    results = []
    for returncode, stdout, stderr in outputs:
        try:
            results.append(parse_iperf3_result(stdout))
        except ParseError:
            if returncode != 0:
                raise ToolFailed(TOOL, stderr or stdout, returncode=returncode) from None
            raise
    return results
