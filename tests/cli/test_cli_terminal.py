"""`bench-agent run` as a person sees it: on a real pseudo-terminal (`script -qec`)
and piped; an output folder whose name holds [ ], HTML and unicode."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import REPO

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _run_args(output: Path) -> list[str]:
    # inventory against the guide's minimum: this small test machine FAILs it (fewer
    # than 32 vCPUs) or passes it (a big one): the re-run line follows the verdicts.
    return [sys.executable, "-m", "bench_agent", "run", "inventory", "--profile",
            "guide-minimum", "--output", str(output), "--no-sign"]


def _failed(text: str) -> bool:
    return bool(re.search(r"^inventory\s.*\sFAIL\s", text, re.MULTILINE))


def test_piped_run_shows_counts_and_next_steps(tmp_path: Path) -> None:
    output = tmp_path / "[out] <b>ü"
    done = subprocess.run(_run_args(output), capture_output=True, text=True, timeout=300,
                          cwd=REPO)
    assert done.returncode in (0, 1), done.stderr
    lines = done.stdout.splitlines()
    assert "\x1b" not in done.stdout
    summary = next(ln for ln in lines if ln.startswith("summary: "))
    assert re.fullmatch(r"summary: (\d+ (FAIL|ERROR|WARN|SKIP|PASS)(, )?)+"
                        r"(, \d+ measured without a threshold)?", summary), summary
    report = next(ln for ln in lines if ln.startswith("report: "))
    assert report.startswith(f"report: {output}/") and report.endswith("(unsigned)")
    upload = next(ln for ln in lines if ln.startswith("upload: "))
    assert shlex.split(upload.removeprefix("upload: "))[:4] == [
        "bench-agent", "upload", "--output", str(output)]
    header = next(ln for ln in lines if ln.startswith("check "))
    at = header.index("status")
    statuses = [ln[at:].split()[0] for ln in lines[lines.index(header) + 1:]
                if ln.startswith("inventory ")]
    assert statuses
    ranks = [["FAIL", "ERROR", "WARN", "SKIP", "PASS", "-"].index(s) for s in statuses]
    assert ranks == sorted(ranks)  # worst first
    rerun = [ln for ln in lines if ln.startswith("re-run what failed: ")]
    if _failed(done.stdout):
        assert len(rerun) == 1
        assert shlex.split(rerun[0].removeprefix("re-run what failed: ")) == [
            "bench-agent", "run", "--output", str(output), "inventory", "--profile",
            "guide-minimum"]
    else:
        assert rerun == []


def test_terminal_run_shows_the_same_through_a_pty(tmp_path: Path) -> None:
    if shutil.which("script") is None:
        pytest.skip("script (util-linux) is not installed")
    output = tmp_path / "[out] <b>ü"
    command = shlex.join(_run_args(output))
    done = subprocess.run(["script", "-qec", command, "/dev/null"], capture_output=True,
                          timeout=300, cwd=REPO, env={**os.environ, "COLUMNS": "250"})
    assert done.returncode in (0, 1), done.stdout
    raw = done.stdout.decode()
    assert ANSI.search(raw)  # rich drew it: a terminal
    text = ANSI.sub("", raw).replace("\r", "")
    assert "[1/1] running inventory" in text or "inventory measured in" in text
    assert re.search(r"summary: \d+ ", text)
    assert f"report: {output}/" in text  # brackets and HTML shown as written
    if _failed(text.replace("│", " ")):
        assert "re-run what failed: bench-agent run --output " in text
        assert "inventory --profile guide-minimum" in text
