"""Where a run is, while it runs: the check, its elapsed time and its time limit.

On a terminal (stderr) a spinner line whose clock ticks every second; otherwise
(logs, Ansible, CI, a pipe) one line when a check starts, one when it ends, and
a "still running" line every HEARTBEAT_S seconds in between, so that a log that
has been quiet for long says the run is alive and how far it is from its limit.

Names from outside go through display.printable and reach rich as ``Text``
(see display.py for why).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from bench_agent.report.display import _STYLE, _is_terminal, printable

if TYPE_CHECKING:
    from rich.text import Text

    from bench_agent.config.plans import CheckPlan
    from bench_agent.run.runner import CheckOutcome

# A log line every minute: often enough that a person tailing a log, or Ansible's
# async poll, sees progress; rare enough that a 4-hour suite writes a few hundred.
HEARTBEAT_S = 60.0


def clock(seconds: float) -> str:
    """Seconds as a clock: 42 s -> "0:42", 3725 s -> "1:02:05"."""
    whole = max(0, int(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@dataclass(frozen=True)
class CheckInfo:
    """What progress knows of a planned check before it runs."""

    timeout: float
    note: str = ""  # a line said when it starts (fio's layout)


def check_infos(plans: Sequence[CheckPlan]) -> list[CheckInfo]:
    """The time limit and start note of each planned check, in run order."""
    return [CheckInfo(plan.timeout, _start_note(plan)) for plan in plans]


def _start_note(plan: CheckPlan) -> str:
    # The storage checks' fio job first writes its whole test file in a directory
    # target ("Laying out IO file", fio's HOWTO, option `size`), before the timed
    # part: at 100-150 MB/s a 16 GiB file takes about two minutes on a spinning
    # disk, during which nothing else would be said.
    size = plan.params.get("size")
    if plan.check.startswith("storage.") and isinstance(size, int) and size > 0:
        return (f"{plan.check}: fio first lays out its "
                f"{size / 2**30:.4g} GiB test file in a directory target "
                "(minutes on a spinning disk), then measures")
    return ""


def _finished_parts(outcome: CheckOutcome) -> tuple[str, str, str]:
    state = outcome.status.value if outcome.status else "measured"
    detail = f": {printable(outcome.message)}" if outcome.message else ""
    return printable(outcome.check), state, f" in {outcome.seconds:.1f} s{detail}"


class _Ticker:
    """Calls ``tick(elapsed)`` every ``period`` seconds on a daemon thread until stopped."""

    def __init__(self, period: float, tick: Callable[[float], None]) -> None:
        self._period = period
        self._tick = tick
        self._stop = threading.Event()
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="progress")
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._period):
            self._tick(time.monotonic() - self._started)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class _Base:
    def __init__(self, infos: Sequence[CheckInfo] = (), heartbeat_s: float = HEARTBEAT_S
                 ) -> None:
        self.infos = list(infos)
        self.heartbeat_s = heartbeat_s
        self._ticker: _Ticker | None = None

    def _info(self, index: int) -> CheckInfo | None:
        return self.infos[index] if index < len(self.infos) else None

    def _stop_ticker(self) -> None:
        if self._ticker is not None:
            self._ticker.stop()
            self._ticker = None


class PlainProgress(_Base):
    """Lines on stderr: for logs, pipes and Ansible output."""

    def __init__(self, infos: Sequence[CheckInfo] = (), heartbeat_s: float = HEARTBEAT_S,
                 stream: IO[str] | None = None) -> None:
        super().__init__(infos, heartbeat_s)
        # Looked up when built, not at import: guard_std_streams may replace sys.stderr.
        self.stream = stream or sys.stderr

    def _say(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def check_started(self, check: str, index: int, total: int) -> None:
        info = self._info(index)
        limit = f" (time limit {clock(info.timeout)})" if info else ""
        self._say(f"[{index + 1}/{total}] {printable(check)} ...{limit}")
        if info and info.note:
            self._say(f"      {printable(info.note)}")
        name = printable(check)

        def beat(elapsed: float) -> None:
            of = f" of {clock(info.timeout)}" if info else ""
            self._say(f"      {name} still running: {clock(elapsed)}{of}")

        self._stop_ticker()
        self._ticker = _Ticker(self.heartbeat_s, beat)

    def check_finished(self, outcome: CheckOutcome) -> None:
        self._stop_ticker()
        check, state, rest = _finished_parts(outcome)
        self._say(f"      {check} {state}{rest}")


class RichProgress(_Base):
    """A spinner per running check on a terminal (stderr), its clock ticking each
    second beside the check's time limit; finished lines are kept."""

    def __init__(self, infos: Sequence[CheckInfo] = (), heartbeat_s: float = 1.0) -> None:
        super().__init__(infos, heartbeat_s)
        from rich.console import Console

        self.console = Console(stderr=True)
        self._status: Any = None

    def _text(self, *parts: tuple[str, str] | str) -> Text:
        from rich.text import Text

        return Text.assemble(*parts)

    def _running(self, check: str, index: int, total: int, elapsed: float) -> Text:
        info = self._info(index)
        limit = f" / limit {clock(info.timeout)}" if info else ""
        return self._text(f"[{index + 1}/{total}] running {printable(check)} "
                          f"{clock(elapsed)}{limit}")

    def check_started(self, check: str, index: int, total: int) -> None:
        info = self._info(index)
        if info and info.note:
            self.console.print(self._text(f"  {printable(info.note)}"))
        self._status = self.console.status(self._running(check, index, total, 0))
        self._status.start()
        status = self._status
        self._stop_ticker()
        self._ticker = _Ticker(self.heartbeat_s, lambda elapsed: status.update(
            self._running(check, index, total, elapsed)))

    def check_finished(self, outcome: CheckOutcome) -> None:
        self._stop_ticker()
        if self._status is not None:
            self._status.stop()
        check, state, rest = _finished_parts(outcome)
        self.console.print(self._text(f"  {check} ", (state, _STYLE.get(state, "green")), rest))


def make_progress(plans: Sequence[CheckPlan] = ()) -> PlainProgress | RichProgress:
    infos = check_infos(plans)
    return RichProgress(infos) if _is_terminal(sys.stderr) else PlainProgress(infos)
