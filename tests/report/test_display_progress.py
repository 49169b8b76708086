"""Progress as people see it: the check's time limit, a ticking clock on a terminal,
"still running" lines in a log, and fio's layout announced."""

from __future__ import annotations

import io
import os
import sys
import time

import pytest

from bench_agent.config.loader import CheckPlan
from bench_agent.core.model import Status
from bench_agent.report.progress import PlainProgress, RichProgress, check_infos, clock
from bench_agent.run.runner import CheckOutcome

SEQREAD = CheckPlan("storage.seqread", {"size": 16 * 2**30, "runtime": 30.0}, 300.0, False)
CPU = CheckPlan("cpu.stream", {"size": 2048}, 90.0, False)


def test_clock_reads_as_a_clock() -> None:
    assert [clock(s) for s in (0, 42.9, 300, 3725, -1)] == [
        "0:00", "0:42", "5:00", "1:02:05", "0:00"]


def test_fio_layout_is_announced_for_storage_checks_only() -> None:
    seqread, cpu = check_infos([SEQREAD, CPU])
    assert seqread.note == ("storage.seqread: fio first lays out its 16 GiB test file in a "
                            "directory target (minutes on a spinning disk), then measures")
    assert seqread.timeout == 300.0
    assert cpu.note == ""


def test_plain_progress_says_the_limit_and_beats_while_a_check_runs() -> None:
    out = io.StringIO()
    progress = PlainProgress(check_infos([SEQREAD, CPU]), heartbeat_s=0.2, stream=out)
    progress.check_started("storage.seqread", 0, 2)
    time.sleep(0.5)
    progress.check_finished(CheckOutcome("storage.seqread", status=Status.PASS, seconds=0.5))
    time.sleep(0.3)  # no beat after the check finished
    lines = out.getvalue().splitlines()
    assert lines[0] == "[1/2] storage.seqread ... (time limit 5:00)"
    assert lines[1].startswith("      storage.seqread: fio first lays out")
    beats = lines[2:-1]
    assert len(beats) == 2, lines
    assert all(b == "      storage.seqread still running: 0:00 of 5:00" for b in beats)
    assert lines[-1] == "      storage.seqread PASS in 0.5 s"


def test_plain_progress_without_plans_still_works() -> None:
    out = io.StringIO()
    progress = PlainProgress(stream=out)
    progress.check_started("cpu.stream", 0, 1)
    progress.check_finished(CheckOutcome("cpu.stream", status=Status.FAIL, seconds=1.0))
    assert out.getvalue().splitlines() == ["[1/1] cpu.stream ...",
                                           "      cpu.stream FAIL in 1.0 s"]


def test_rich_progress_ticks_its_clock_beside_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    master, slave = os.openpty()
    stream = open(slave, "w", encoding="utf-8", closefd=True)  # noqa: SIM115
    monkeypatch.setattr(sys, "stderr", stream)
    shown = b""
    try:
        progress = RichProgress(check_infos([CPU]), heartbeat_s=0.3)
        assert progress.console.is_terminal
        progress.check_started("cpu.stream", 0, 1)
        time.sleep(1.4)
        progress.check_finished(CheckOutcome("cpu.stream", status=Status.PASS, seconds=1.4))
        stream.flush()
        os.set_blocking(master, False)
        while True:
            try:
                chunk = os.read(master, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        stream.close()
        os.close(master)
    text = shown.decode()
    assert "[1/1] running cpu.stream 0:00 / limit 1:30" in text
    assert "[1/1] running cpu.stream 0:01 / limit 1:30" in text  # the clock moved
    assert "cpu.stream \x1b[32mPASS\x1b[0m in 1.4 s" in text
