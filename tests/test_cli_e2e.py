"""`bench-agent` as SREs run it: a subprocess, a report on disk, an exit code."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from bench_agent.attest import read_report_file
from bench_agent.config import schema_dir

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data"
TINY_SUITE = DATA / "suites" / "tiny-cpu.yaml"
TINY_PROFILE = DATA / "profiles" / "tiny-node.yaml"


@pytest.fixture(autouse=True)
def node_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every run signs with a throwaway key: tests never touch /etc/bench-agent."""
    path = tmp_path / "keys" / "node.key"
    monkeypatch.setenv("BENCH_AGENT_KEY", str(path))
    return path


def bench_agent(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench_agent.cli", *args],
        capture_output=True, text=True, timeout=timeout, cwd=REPO,
    )


def only_report(output: Path) -> dict[str, object]:
    files = list(output.glob("*/*.json"))
    assert len(files) == 1, files
    data, envelope = read_report_file(files[0])
    assert envelope is not None, "bench-agent run signs every report by default"
    schema = json.loads((schema_dir() / "report-v1.schema.json").read_text())
    jsonschema.validate(data, schema)
    assert isinstance(data, dict)
    return data


def test_run_cpu_as_written_writes_a_valid_report(tmp_path: Path) -> None:
    """`bench-agent run cpu --output DIR` with the shipped cpu suite and guide profile."""
    result = bench_agent("run", "cpu", "--output", str(tmp_path))
    report = only_report(tmp_path)
    assert report["suite"]["name"] == "cpu"  # type: ignore[index]
    assert report["profile"]["name"] == "guide-minimum"  # type: ignore[index]
    units = {m["metric"]: m["unit"] for m in report["measurements"]}  # type: ignore[attr-defined]
    assert units["cpu.gemm_fp64_all_cores"] == "FLOP/s"
    assert units["cpu.gemm_fp32_one_core"] == "FLOP/s"
    assert units["memory.stream_triad"] == "bytes/s"
    assert units["inventory.memory_total"] == "bytes"
    for m in report["measurements"]:  # type: ignore[attr-defined]
        assert m["value"] >= 0
    # The exit code follows the report's status, whatever the machine.
    expected = {"PASS": 0, "WARN": 0, "SKIP": 0, "FAIL": 1, "ERROR": 2}[str(report["status"])]
    assert result.returncode == expected, result.stderr
    # A node under the guide minimum (32 vCPUs, 128 GB) must fail.
    cpus = os.cpu_count() or 0
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if cpus < 32 or ram < 128e9:
        assert report["status"] == "FAIL"
    path = Path(result.stdout.strip().splitlines()[-1].removeprefix("report: "))
    assert path.parent.parent == tmp_path


def test_run_with_a_profile_the_node_meets_passes(tmp_path: Path) -> None:
    result = bench_agent("run", "--suite-file", str(TINY_SUITE), "--profile", str(TINY_PROFILE),
                         "--output", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    report = only_report(tmp_path)
    statuses = {v["metric"]: v["status"] for v in report["verdicts"]}  # type: ignore[attr-defined]
    assert statuses == {
        "inventory.logical_cpus": "PASS",
        "inventory.memory_total": "PASS",
        "cpu.gemm_fp64_all_cores": "PASS",
        "memory.stream_triad": "PASS",
    }
    # The plain (non-terminal) table names the check, metric, value, threshold and status.
    table = result.stdout
    assert "tiny-cpu" in table
    assert "memory.stream_triad" in table and ">= 50 MB/s" in table


def test_run_with_a_profile_the_node_cannot_meet_fails_with_the_threshold(
    tmp_path: Path,
) -> None:
    result = bench_agent("run", "--suite-file", str(TINY_SUITE), "--profile",
                         "guide-high-performance", "--output", str(tmp_path))
    assert result.returncode == 1, result.stderr
    failing = [line for line in result.stdout.splitlines()
               if "inventory.logical_cpus" in line]
    assert len(failing) == 1
    assert ">= 96" in failing[0] and "FAIL" in failing[0]
    assert "High-Performance 96+ vCPUs" in failing[0]


def test_json_output_is_the_report(tmp_path: Path) -> None:
    result = bench_agent("run", "inventory", "--profile", str(TINY_PROFILE), "--json",
                         "--output", str(tmp_path))
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed == only_report(tmp_path)


def test_report_show_reads_a_report_back(tmp_path: Path) -> None:
    bench_agent("run", "inventory", "--profile", str(TINY_PROFILE), "--output", str(tmp_path))
    file = next(tmp_path.glob("*/*.json"))
    shown = bench_agent("report", "show", str(file))
    assert shown.returncode == 0
    assert "inventory.logical_cpus" in shown.stdout and "PASS" in shown.stdout
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    bad = bench_agent("report", "show", str(garbage))
    assert bad.returncode == 5
    assert "not a readable JSON report" in bad.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["run", "no-such-domain"], 3, "'no-such-domain' is not a domain, suite or check"),
        (["run", "cpu", "--profile", "nope"], 4, "unknown profile 'nope'"),
        (["frobnicate"], 3, "invalid choice"),
        (["parse", "notatool", "/dev/null"], 3, "no parser for 'notatool'"),
    ],
)
def test_usage_and_config_errors_have_their_exit_codes(
    args: list[str], code: int, message: str
) -> None:
    result = bench_agent(*args)
    assert result.returncode == code
    assert message in result.stderr


def test_bad_suite_file_is_a_config_error_naming_file_and_key(tmp_path: Path) -> None:
    suite = tmp_path / "mine.yaml"
    suite.write_text("name: mine\nchecks:\n  - check: cpu.gemm\n    params: {size: big}\n")
    result = bench_agent("run", "--suite-file", str(suite))
    assert result.returncode == 4
    assert f"{suite}: checks[0].params.size" in result.stderr


def _default_sigint() -> None:
    # A shell that starts the test run in the background ("pytest &" in a script)
    # makes it, and so the agent, ignore SIGINT (POSIX sh, "Asynchronous Lists"),
    # and an ignored SIGINT stays ignored in Python: the agent would run on. The
    # agent under test gets Ctrl-C's usual meaning back.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _workers_of(parent: int) -> list[int]:
    """The agent's live `bench_agent.worker` children."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if fields[0] not in "ZX" and int(fields[1]) == parent and b"bench_agent.worker" in cmdline:
            found.append(int(entry.name))
    return found


def test_sigint_stops_the_run_and_writes_a_partial_report(tmp_path: Path) -> None:
    suite = tmp_path / "long.yaml"
    suite.write_text(
        "name: long\nchecks:\n  - check: inventory\n  - check: cpu.gemm\n"
        "    timeout: 300s\n    params: {size: 4096, repetitions: 200}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench_agent.cli", "run", "--suite-file", str(suite),
         "--output", str(tmp_path / "out")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        preexec_fn=_default_sigint,
    )
    workers: list[int] = []
    try:
        assert proc.stderr is not None
        # Wait for a real state: the GEMM check started and its worker runs.
        for line in proc.stderr:
            if "cpu.gemm ..." in line:
                break
        deadline = time.monotonic() + 120
        while not (workers := _workers_of(proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert workers, "the cpu.gemm worker never started"
        proc.send_signal(signal.SIGINT)  # the agent alone: the worker has its own session
        stdout, _ = proc.communicate(timeout=120)
        # The agent stopped its worker before it wrote the report and exited.
        assert [pid for pid in workers if Path(f"/proc/{pid}").exists()
                and Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] not in "ZX"] == []
    finally:
        if proc.poll() is None:
            proc.kill()  # its worker dies with it (parent-death signal)
            proc.wait(timeout=30)
        for pid in workers:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 2
    report = only_report(tmp_path / "out")
    assert report["interrupted"] is True
    assert report["status"] == "ERROR"
    verdicts = {v["check"]: v for v in report["verdicts"]}  # type: ignore[attr-defined]
    assert verdicts["cpu.gemm"]["status"] == "ERROR"
    assert "interrupted" in verdicts["cpu.gemm"]["message"]
    assert any(m["metric"] == "inventory.logical_cpus"
               for m in report["measurements"])  # type: ignore[attr-defined]
    assert "INTERRUPTED" in stdout


def test_help_imports_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "from bench_agent.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = {'torch', 'pandas', 'numpy', 'fastapi', 'uvicorn', 'sqlalchemy', 'rich',"
        " 'pydantic', 'yaml', 'pynvml'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=REPO, timeout=60)
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_wheel_ships_suites_profiles_and_schema(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(REPO)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    wheel = next(tmp_path.glob("bench_agent-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "bench_agent/_data/suites/quick.yaml",
        "bench_agent/_data/suites/acceptance.yaml",
        "bench_agent/_data/suites/profiles/guide-minimum.yaml",
        "bench_agent/_data/suites/profiles/guide-high-performance.yaml",
        "bench_agent/_data/schema/report-v1.schema.json",
    ):
        assert expected in names


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A tiny tmpfs, filled up: a real ENOSPC for the report write (needs root)."""
    mount_point = tmp_path / "full"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs",
                              str(mount_point)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        (mount_point / "host").mkdir()
        fd = os.open(mount_point / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=False)


def test_full_disk_is_a_clear_error_after_the_table(full_disk: Path) -> None:
    result = bench_agent("run", "inventory", "--no-sign", "--profile", str(TINY_PROFILE),
                         "--output", str(full_disk))
    assert result.returncode == 5
    assert "No space left on device" in result.stderr
    assert "inventory.logical_cpus" in result.stdout  # the verdicts were shown anyway
    leftovers = [p for p in full_disk.rglob("*") if p.is_file() and p.name != "filler"]
    assert leftovers == []  # no half-written report, no temp file


def test_unusable_key_writes_the_report_unsigned_and_says_so(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the key's folder should be")
    result = bench_agent("run", "inventory", "--profile", str(TINY_PROFILE), "--key",
                         str(blocker / "node.key"), "--output", str(tmp_path / "out"))
    assert result.returncode == 5
    assert "cannot sign the report" in result.stderr
    files = list((tmp_path / "out").glob("*/*.unsigned.json"))
    assert len(files) == 1
    assert json.loads(files[0].read_text())["schema_version"] == 1
    assert "UNSIGNED: signing failed" in result.stdout
