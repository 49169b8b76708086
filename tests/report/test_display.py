"""The verdict table and progress as people see them: on a real pseudo-terminal
(rich) and on a pipe (plain lines), with names from outside that look like markup,
HTML, escape sequences or unicode."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from bench_agent.core.inventory import Disk, Host, Inventory
from bench_agent.core.model import Measurement, NamedDigest, Report, Status, Verdict
from bench_agent.core.units import Unit
from bench_agent.report.display import (
    GuardedStream,
    print_inventory,
    print_table,
    printable,
)
from bench_agent.report.progress import PlainProgress, RichProgress
from bench_agent.run.runner import CheckOutcome

HOSTILE_PATH = "/tmp/x/[results]/<b>ü"
ESCAPE_MESSAGE = "fio said \x1b[31mred\x1b[0m\rover\x07 and \u202eevil [bold]x[/bold] :smile:"


def hostile_report() -> Report:
    return Report(
        report_id="00000000-0000-0000-0000-000000000000", agent_version="0",
        host="[node]<i>", inventory=Inventory(),
        suite=NamedDigest("s[/]", "0" * 64, ""), profile=NamedDigest("p", "0" * 64, ""),
        started_at="2026-01-01T00:00:00Z", finished_at="2026-01-01T00:00:01Z",
        measurements=[
            Measurement("storage.seqread", "storage.seqread_1m_bytes_per_second", 1e9,
                        Unit.BYTES_PER_SECOND, device="/tmp/reports"),
            Measurement("storage.seqread", "storage.seqread_1m_bytes_per_second", 2e9,
                        Unit.BYTES_PER_SECOND, device="results"),
            Measurement("storage.seqread", "storage.seqread_1m_bytes_per_second", 3e9,
                        Unit.BYTES_PER_SECOND, device=HOSTILE_PATH),
        ],
        verdicts=[
            Verdict("storage.randread", Status.ERROR, message=ESCAPE_MESSAGE),
            Verdict("inventory", Status.PASS, metric="inventory.disk_count", value=1.0,
                    unit=Unit.COUNT, threshold=">= 1", source="<b>guide</b> [link=x]",
                    device="nvme0n1"),
        ],
    )


@pytest.fixture
def pty_stream(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[IO[str], int]]:
    """The writing end of a real pseudo-terminal (isatty() is the kernel's answer)."""
    # rich sizes its output from $COLUMNS when the std streams are not terminals
    # (as under pytest): wide enough that no cell is folded.
    monkeypatch.setenv("COLUMNS", "300")
    master, slave = os.openpty()
    stream = open(slave, "w", encoding="utf-8", closefd=True)  # noqa: SIM115
    try:
        yield stream, master
    finally:
        stream.close()
        os.close(master)


def read_pty(master: int) -> str:
    chunks = []
    os.set_blocking(master, False)
    while True:
        try:
            chunk = os.read(master, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8")


def test_printable_escapes_controls_and_keeps_letters_and_brackets() -> None:
    assert printable(HOSTILE_PATH) == HOSTILE_PATH
    assert printable("a\x1b[2Jb") == "a\\x1b[2Jb"
    assert printable("one\ntwo\tthree\r") == "one\\ntwo\\tthree\\r"
    assert printable("x\u202ey\x7f\U000e0041") == "x\\u202ey\\x7f\\U000e0041"


def test_terminal_table_shows_names_as_written(pty_stream: tuple[IO[str], int]) -> None:
    stream, master = pty_stream
    assert stream.isatty()
    print_table(hostile_report(), stream)
    stream.flush()
    shown = read_pty(master)
    # Read as markup, "[/tmp/reports]" was a closing tag (MarkupError) and
    # "[results]", "[nvme0n1]" were styles that vanished.
    assert "storage.seqread_1m_bytes_per_second [/tmp/reports]" in shown
    assert "storage.seqread_1m_bytes_per_second [results]" in shown
    assert f"storage.seqread_1m_bytes_per_second [{HOSTILE_PATH}]" in shown
    assert "inventory.disk_count [nvme0n1]" in shown
    assert "<b>guide</b> [link=x]" in shown
    assert "[node]<i>: ERROR - suite s[/], profile p" in shown
    assert "[bold]x[/bold] :smile:" in shown
    # The tool's escape sequences arrive as text, not as commands to the terminal.
    assert "\\x1b[31mred\\x1b[0m\\rover\\x07 and \\u202eevil" in shown
    assert "\x1b[31mred" not in shown and "\u202e" not in shown and "\x07" not in shown


def test_plain_table_shows_names_as_written_and_escapes_controls() -> None:
    out = io.StringIO()
    print_table(hostile_report(), out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "[node]<i>: ERROR - suite s[/], profile p"
    assert any(f"[{HOSTILE_PATH}]" in line for line in lines)
    error = next(line for line in lines if line.startswith("storage.randread"))
    assert error.endswith("fio said \\x1b[31mred\\x1b[0m\\rover\\x07 and \\u202eevil "
                          "[bold]x[/bold] :smile:")
    assert "\x1b" not in out.getvalue() and "\r" not in out.getvalue()
    assert len(lines) == 2 + 5 + 1  # summary, header, 2 verdicts, 3 measurements, counts
    assert lines[-1] == "summary: 1 ERROR, 1 PASS, 3 measured without a threshold"


def test_rich_progress_shows_names_and_messages_as_written(
    pty_stream: tuple[IO[str], int], monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream, master = pty_stream
    monkeypatch.setattr(sys, "stderr", stream)
    progress = RichProgress()
    assert progress.console.is_terminal
    progress.check_started("storage.randread", 0, 1)
    progress.check_finished(CheckOutcome("storage.randread", status=Status.ERROR,
                                         message=f"cannot write [/tmp/reports] {ESCAPE_MESSAGE}"))
    stream.flush()
    shown = read_pty(master)
    assert "storage.randread" in shown
    assert "cannot write [/tmp/reports] fio said \\x1b[31mred" in shown
    assert "[bold]x[/bold]" in shown and "\x1b[31mred" not in shown


def test_plain_progress_escapes_controls() -> None:
    out = io.StringIO()
    progress = PlainProgress(stream=out)
    progress.check_started("inventory", 0, 2)
    progress.check_finished(CheckOutcome("inventory", status=Status.SKIP,
                                         message="line one\nline \x1b[2Jtwo", seconds=0.25))
    assert out.getvalue().splitlines() == [
        "[1/2] inventory ...",
        "      inventory SKIP in 0.2 s: line one\\nline \\x1b[2Jtwo",
    ]


def test_inventory_summary_escapes_controls(capsys: pytest.CaptureFixture[str]) -> None:
    print_inventory(Inventory(host=Host("n\x1b]0;owned\x07"),
                              disks=(Disk(name="[nvme0n1]", model="<b>ü", size_bytes=None),)))
    out = capsys.readouterr().out
    assert "host     n\\x1b]0;owned\\x07\n" in out
    assert "disk     [nvme0n1]: <b>ü ? SSD\n" in out


def test_guarded_stream_silences_a_closed_pipe_and_tells_other_failures(
    tmp_path: Path,
) -> None:
    read_end, write_end = os.pipe()
    inner = open(write_end, "w", encoding="utf-8")  # noqa: SIM115
    told: list[str] = []
    guarded = GuardedStream(inner, "stdout", on_failure=told.append)
    os.close(read_end)  # the reader went away (`| head -1` after its line)
    guarded.write("x" * 100_000)  # more than the buffer: written now, EPIPE
    guarded.flush()
    assert guarded.silenced
    assert told == []  # a reader that left is no error worth a line
    guarded.write("more")
    inner.close()  # the fd now points at /dev/null: the last flush cannot fail

    full = GuardedStream(open("/dev/full", "w", encoding="utf-8"), "stdout",  # noqa: SIM115
                         on_failure=told.append)
    full.write("y" * 100_000)
    full.flush()
    assert full.silenced
    assert told == ["bench-agent: stdout: cannot write (No space left on device); "
                    "the rest of its output is dropped\n"]


def test_a_closed_stdout_cannot_catch_the_report(tmp_path: Path) -> None:
    """`bench-agent ... >&-`: fd 1 closed. Without a stand-in on fd 1, the report
    file opened next would get fd 1 and receive what is printed."""
    code = ("import os, sys\n"
            "from bench_agent.report.display import guard_std_streams\n"
            "guard_std_streams()\n"
            f"f = open({str(tmp_path / 'report')!r}, 'w')\n"
            "print('meant for the terminal')\n"
            "sys.stdout.flush()\n"
            "print(f.fileno(), file=sys.stderr)\n")
    result = subprocess.run([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, timeout=60,
                            cwd=Path(__file__).parent.parent, pass_fds=(),
                            preexec_fn=lambda: os.close(1))
    assert result.returncode == 0, result.stderr
    assert int(result.stderr.strip()) > 2
    assert (tmp_path / "report").read_text() == ""
