"""One module per external tool: ``run_*`` drives the tool, ``parse_*`` reads its output.

Parsers are pure functions from the tool's text to measurements, tested on real
captured outputs. ``PARSERS`` is the explicit list `bench-agent parse TOOL FILE`
knows; each issue that adds a tool adds its line here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from bench_agent.core.errors import ParseError, UsageError
from bench_agent.core.model import Measurement, check_name

# tool name -> "module:function"; the function takes the output text and returns
# measurements, or raises ToolFailed (the output reports a failure) or ParseError.
PARSERS: dict[str, str] = {
    "fio": "bench_agent.tools.fio:parse_fio",
    "iperf3": "bench_agent.tools.iperf3:parse_iperf3",
    "sockperf": "bench_agent.tools.sockperf:parse_sockperf",
    "qperf": "bench_agent.tools.qperf:parse_qperf",
    "perftest": "bench_agent.tools.perftest:parse_perftest_output",
    "ib_write_lat": "bench_agent.tools.perftest:parse_perftest_output",
    "ib_write_bw": "bench_agent.tools.perftest:parse_perftest_output",
    "nccl-tests": "bench_agent.tools.nccl_tests:parse_nccl_tests",
    "dcgm": "bench_agent.tools.dcgm:parse_dcgm",
    "nvbandwidth": "bench_agent.tools.nvbandwidth:parse_nvbandwidth",
}
# tool name -> "module:function" taking the parsed measurements and returning what
# the output reports as failed: `bench-agent parse` prints each and exits 1.
FAILURE_READERS: dict[str, str] = {
    "dcgm": "bench_agent.tools.dcgm:dcgm_failures",
    "nvbandwidth": "bench_agent.tools.nvbandwidth:nvbandwidth_failures",
}


def parse_tool_output(tool: str, path: Path) -> list[Measurement]:
    target = PARSERS.get(tool)
    if target is None:
        known = ", ".join(sorted(PARSERS)) or "none yet"
        raise UsageError(f"no parser for {tool!r} (known tools: {known})")
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    module_name, function_name = target.split(":")
    parser: Callable[[str], list[Measurement]] = getattr(
        importlib.import_module(module_name), function_name
    )
    return parser(text)


def parse_failures(tool: str, measurements: list[Measurement]) -> list[str]:
    """What the parsed output of ``tool`` reports as failed (none for a tool whose
    parser raises ToolFailed instead)."""
    target = FAILURE_READERS.get(tool)
    if target is None:
        return []
    module_name, function_name = target.split(":")
    reader: Callable[[list[Measurement]], list[str]] = getattr(
        importlib.import_module(module_name), function_name)
    return reader(measurements)


def refuse_control_keys(tool: str, document: object) -> None:
    """ParseError when a key of a tool's JSON holds a control character ("error_id\\u0000"):
    no tool prints one, and a reader that skips the key as unknown would read the
    document as if the figure were absent."""
    stack = [document]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                if any(ord(c) < 0x20 or 0x7f <= ord(c) < 0xa0 for c in key):
                    raise ParseError(tool, f"a JSON key holds a control character: {key!r:.80}")
                stack.append(item)
        elif isinstance(value, list):
            stack.extend(value)


def tool_name(tool: str, value: str, what: str = "device name") -> str:
    """A name read from a tool's output (a device, a file), or ParseError when it
    holds a control or format character (ESC, NUL, CR, a bidirectional override)
    that no Measurement may hold (model.check_name): the output is not what the
    tool prints, and it must not reach a terminal or a page."""
    try:
        return check_name(value, what)
    except ValueError as exc:
        raise ParseError(tool, str(exc)) from None
