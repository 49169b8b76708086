"""The burn-in while it runs: one line per sampling interval when piped, a panel
redrawn in place on a terminal (tmux), with each load's rate, GPUs, time left."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from bench_agent.cli.burnin_view import PlainBurninView, sample_parts
from tests.paths import REPO

SAMPLE = {"type": "sample", "t": 0.0, "elapsed": 125.0, "readings": [
    {"metric": "burnin.cpu_matmul", "device": "", "value": 5.28e10, "unit": "FLOP/s"},
    {"metric": "burnin.storage_fio", "device": "", "value": 1.5e9, "unit": "bytes/s"},
    {"metric": "burnin.cpu_temperature", "device": "", "value": 64.0, "unit": "degC"},
    {"metric": "burnin.cpu_load", "device": "", "value": 2.0, "unit": "count"},
    {"metric": "burnin.gpu_temperature", "device": "0", "value": 71.0, "unit": "degC"},
    {"metric": "burnin.gpu_power", "device": "0", "value": 350.0, "unit": "W"},
    {"metric": "burnin.gpu_temperature", "device": "[1]\x1b[2J", "value": 90.0, "unit": "degC"},
]}

SUITE = """name: view-test
interval: 1s
loads:
  cpu_matmul: {size: 96}
thresholds:
  - {id: held, metric: burnin.cpu_matmul, comparator: ">=", value: 5%, of_first: 2s,
     for_at_least: 2s, source: test}
"""


def test_a_sample_line_has_time_left_rates_gpus_and_cpu() -> None:
    unit = {u["metric"]: u["unit"] for u in SAMPLE["readings"]}  # type: ignore[index]
    assert unit["burnin.gpu_power"] == "W"
    parts = sample_parts(SAMPLE, 4 * 3600)
    assert parts[0] == "2:05 of 4:00:00 (3:57:55 left)"
    assert parts[1].startswith("cpu_matmul 52.8 GFLOP/s")
    assert parts[2] == "storage_fio 1.5 GB/s"
    assert "GPU 0 71 °C 350 W" in parts
    # A device name from outside: shown, its escape sequence made visible, no power read.
    assert "GPU [1]\\x1b[2J 90 °C ?" in parts
    assert parts[-1] == "CPU 64 °C"
    assert not any("cpu_load" in p for p in parts)  # health, not a load's rate


def test_plain_view_writes_one_line_per_sample_and_per_event() -> None:
    out = io.StringIO()
    view = PlainBurninView(60.0, out)
    view({"type": "start"})
    view({**SAMPLE, "elapsed": 10.0, "readings": SAMPLE["readings"][:1]})
    view({"type": "event", "kind": "xid", "elapsed": 11.2, "device": "0",
          "detail": "XID 79 on GPU 0: fallen off the bus"})
    view({"type": "end"})
    assert out.getvalue().splitlines() == [
        "burn-in 0:10 of 1:00 (0:50 left) | cpu_matmul 52.8 GFLOP/s",
        "burn-in event at +11 s: xid: XID 79 on GPU 0: fallen off the bus",
    ]


def _suite(tmp_path: Path) -> Path:
    path = tmp_path / "view [test].yaml"
    path.write_text(SUITE, encoding="utf-8")
    return path


@pytest.mark.e2e
def test_piped_burnin_says_every_interval_where_it_is(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench_agent", "burnin", "--duration", "6s", "--suite-file",
         str(_suite(tmp_path)), "--output", str(tmp_path / "out"), "--no-plots", "--no-sign"],
        capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode in (0, 1), done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("burn-in 0:")]
    assert 4 <= len(lines) <= 7, done.stderr  # one per 1 s interval of a 6 s run
    assert lines[0].startswith("burn-in 0:01 of 0:06 (0:05 left)")
    assert any(" | cpu_matmul " in ln and "FLOP/s" in ln for ln in lines), lines
    assert "\x1b[" not in done.stderr  # a pipe gets no terminal codes


@pytest.mark.e2e
def test_burnin_on_a_terminal_redraws_a_live_panel(tmp_path: Path) -> None:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    session = f"ba-{uuid.uuid4().hex[:8]}"
    command = (f"cd {REPO} && {sys.executable} -m bench_agent burnin --duration 8s "
               f"--suite-file '{_suite(tmp_path)}' --output {tmp_path / 'out'} --no-plots "
               f"--no-sign; echo EXIT=$? > {tmp_path / 'rc'}; sleep 30")
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "50",
                    command], check=True, timeout=30)
    try:
        seen = ""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (tmp_path / "rc").exists():
            shot = subprocess.run(["tmux", "capture-pane", "-p", "-t", session],
                                  capture_output=True, text=True, timeout=30).stdout
            if "burn-in view-test:" in shot and "left)" in shot:
                seen = shot
            time.sleep(0.5)
        assert (tmp_path / "rc").exists(), "the burn-in did not finish"
        assert seen, "no live panel was drawn"
        assert "cpu_matmul" in seen and "FLOP/s" in seen
        final = subprocess.run(["tmux", "capture-pane", "-p", "-S", "-5000", "-t", session],
                               capture_output=True, text=True, timeout=30).stdout
        # Redrawn in place: the panel's title is on the screen once, not once per sample.
        assert final.count("burn-in view-test: 0:0") == 1, final
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False, timeout=30)
    assert os.path.exists(tmp_path / "rc")
