"""Slurm: drain the node when its health run fails, resume it when it passes,
and never resume a node that someone else drained.

Through scontrol, as LBNL NHC does (https://github.com/mej/nhc,
scripts/node-mark-offline and scripts/node-mark-online: they first read the
node's state and note, "to avoid overwriting notes which were not placed by
NHC", mark it offline with ``scontrol update State=DRAIN Reason="NHC: ..."``,
and online again only when the note starts with their leader "NHC:"). Ours is
"bench-agent:".

    node's state             health  action
    not drained              fail    drain, reason "bench-agent: <code> <component>"
    drained by bench-agent   fail    drain again with the new reason (if it changed)
    drained by anyone else   fail    leave it: the admin's reason stays (NHC does so)
    drained by bench-agent   pass    resume
    drained by anyone else   pass    leave it drained (NHC issue 134)
    not drained              pass    nothing

Every scontrol call runs through core/process.py under a deadline: when
slurmctld cannot be reached, scontrol retries for MessageTimeout and more
(slurm.conf(5): MessageTimeout, default 10 s), and NHC issue 159 is a health
check that hung there. Ours stops after SCONTROL_TIMEOUT_S with a message that
says slurmctld did not answer.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from bench_agent.core.errors import CheckTimeout, ParseError, ToolFailed
from bench_agent.core.process import run_tool, tail
from bench_agent.sched.summary import HealthSummary

REASON_PREFIX = "bench-agent:"
# Slurm stores the reason as a plain string of any length, but `sinfo -R` and
# `scontrol show node` print it on one line that SREs read: kept to one short
# line. 200 characters hold a code, a GPU's index, UUID, serial and PCI address.
REASON_MAX = 200
# One scontrol call: its own MessageTimeout (10 s by default, slurm.conf(5))
# plus room for one retry to the backup controller.
SCONTROL_TIMEOUT_S = 25.0
INSTALL_HINT = "apt-get install slurm-client (Debian) or the site's Slurm packages"

# scontrol(1) prints "Reason=<text> [<user>@<time>]" (slurm's
# src/api/node_info.c); the text itself may hold brackets ("admin: hw ticket
# [INC-7]"), the suffix is the first "[user@YYYY-MM-DDTHH:MM:SS]" that ends a word.
_REASON = re.compile(r"(?:^|\s)Reason=(?P<text>.*?) \[(?P<user>[^\]\s@]+)@"
                     r"(?P<time>\d{4}-\d\d-\d\dT[\d:]+)\](?=\s|$)")
# A reason without its user suffix (none recorded) runs to the end of the line.
_BARE_REASON = re.compile(r"(?:^|\s)Reason=(?P<text>.*)$")
_STATE = re.compile(r"(?:^|\s)State=(?P<state>\S+)")
_NAME = re.compile(r"^NodeName=(?P<name>\S+)")


@dataclass(frozen=True, slots=True)
class SlurmNode:
    name: str
    states: frozenset[str]  # "IDLE", "DRAIN", "DOWN", "NOT_RESPONDING", ...
    reason: str  # "" when the node has none
    reason_user: str = ""

    @property
    def drained(self) -> bool:
        # scontrol prints a drained node as <base state>+DRAIN (IDLE+DRAIN,
        # MIXED+DRAIN, DOWN+DRAIN): slurm's node_state_string().
        return "DRAIN" in self.states

    @property
    def ours(self) -> bool:
        return self.reason.startswith(REASON_PREFIX)


def parse_show_node(text: str, node: str) -> SlurmNode:
    """``scontrol show node -o <node>``: one line per node."""
    lines = [line for line in text.splitlines() if line.strip()]
    for line in lines:
        name = _NAME.match(line.strip())
        if name is None or name["name"] != node:
            continue
        state = _STATE.search(line)
        if state is None:
            raise ParseError("scontrol", f"no State= for node {node}", line[:300])
        reason = _REASON.search(line) or _BARE_REASON.search(line)
        text_ = reason["text"].strip() if reason else ""
        user = reason.groupdict().get("user") or "" if reason else ""
        return SlurmNode(node, frozenset(state["state"].upper().split("+")),
                         "" if text_ == "(null)" else text_, user)
    raise ParseError("scontrol", f"no line for node {node}", text[:300])


def _printable_ascii(text: str) -> str:
    return "".join(c if " " <= c <= "~" else "?" for c in text)


def drain_reason(summary: HealthSummary) -> str:
    """``bench-agent: <code> <component>``, then how many more faults; one line of
    printable ASCII of at most REASON_MAX characters, the code always whole."""
    first = summary.first
    assert first is not None, "a failed summary has at least one fault"
    more = len(summary.faults) - 1
    tail = f" (+{more} more)" if more else ""
    head = f"{REASON_PREFIX} {first.code}"
    component = f" {first.component}" if first.component else ""
    reason = _printable_ascii(" ".join(f"{head}{component}".split()))
    if len(reason) + len(tail) > REASON_MAX:
        reason = reason[: REASON_MAX - len(tail) - 3].rstrip() + "..."
    return reason + tail


class Action(Enum):
    DRAIN = "drain"
    RESUME = "resume"
    NOTHING = "nothing"


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    why: str
    reason: str = ""  # the drain reason, for DRAIN


def decide(node: SlurmNode, summary: HealthSummary) -> Decision:
    if summary.state == "fail":
        reason = drain_reason(summary)
        if node.drained and not node.ours:
            return Decision(Action.NOTHING, f"already drained by {node.reason_user or 'someone'}"
                            f" with reason {node.reason!r}: left as it is")
        if node.drained and node.reason == reason:
            return Decision(Action.NOTHING, f"already drained with reason {reason!r}")
        return Decision(Action.DRAIN, f"draining: {reason}", reason)
    if node.drained and node.ours:
        return Decision(Action.RESUME, f"resuming: it was drained by bench-agent ({node.reason})")
    if node.drained:
        return Decision(Action.NOTHING, f"drained by {node.reason_user or 'someone'} with "
                        f"reason {node.reason!r}, not by bench-agent: left drained")
    return Decision(Action.NOTHING, "in service, healthy")


# (argv, timeout) -> (exit code, stdout, stderr); core.process.run_tool by default.
Runner = Callable[[list[str], float], tuple[int, str, str]]


def _run_scontrol(command: list[str], timeout: float) -> tuple[int, str, str]:
    done = run_tool("scontrol", command, timeout, INSTALL_HINT)
    return done.returncode, done.stdout, done.stderr


@dataclass
class Scontrol:
    """scontrol, each call bounded; failures as ToolFailed/CheckTimeout with its words."""

    timeout: float = SCONTROL_TIMEOUT_S
    run: Runner = _run_scontrol

    def _call(self, args: list[str], timeout: float | None) -> str:
        limit = self.timeout if timeout is None else min(self.timeout, timeout)
        command = ["scontrol", *args]
        try:
            code, out, err = self.run(command, limit)
        except CheckTimeout as exc:
            raise CheckTimeout(f"slurmctld did not answer within {limit:.1f} s "
                               f"(`{' '.join(command)}` was stopped): {exc}") from exc
        if code != 0:
            # scontrol says one thing per line ("error: ...", "fatal: ..."): one line here.
            words = "; ".join(line.strip() for line in (err or out).splitlines() if line.strip())
            raise ToolFailed("scontrol", f"`{' '.join(command)}`: "
                             f"{tail(words, 400) or 'no output'}", returncode=code)
        return out

    def show_node(self, node: str, timeout: float | None = None) -> SlurmNode:
        return parse_show_node(self._call(["show", "node", "-o", node], timeout), node)

    def drain(self, node: str, reason: str, timeout: float | None = None) -> None:
        # One argv element per key=value: no shell, so the reason needs no quoting.
        self._call(["update", f"nodename={node}", "state=drain", f"reason={reason}"], timeout)

    def resume(self, node: str, timeout: float | None = None) -> None:
        self._call(["update", f"nodename={node}", "state=resume"], timeout)


def apply(scontrol: Scontrol, node: str, summary: HealthSummary,
          deadline: float | None = None) -> Decision:
    """Read the node, decide, act: the decision taken (its ``why`` for the log).

    ``deadline`` (time.monotonic()) bounds the read and the update together; each
    call gets at least a second of it.
    """
    def left() -> float | None:
        return None if deadline is None else max(1.0, deadline - time.monotonic())

    decision = decide(scontrol.show_node(node, left()), summary)
    if decision.action is Action.DRAIN:
        scontrol.drain(node, decision.reason, left())
    elif decision.action is Action.RESUME:
        scontrol.resume(node, left())
    return decision
