"""Misspelt names get the nearest names, not the whole list; a suite or profile
file with several problems gets them all in one run, each with its key."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.cli_support import run_cli
from tests.paths import REPO


def bench_agent(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, timeout=120, cwd=REPO)


def test_misspelt_check_suite_and_profile_get_did_you_mean(tmp_path: Path) -> None:
    done = bench_agent("run", "cpu.gem", "--output", str(tmp_path))
    assert (done.returncode, done.stderr) == (3, (
        "bench-agent: 'cpu.gem' is not a domain, suite or check; did you mean cpu.gemm, cpu? "
        "(every domain, suite and check: bench-agent list)\n"))
    done = bench_agent("run", "acceptence", "--output", str(tmp_path))
    assert done.returncode == 3 and "did you mean acceptance?" in done.stderr
    done = bench_agent("run", "cpu", "--profile", "guide-recomended", "--output", str(tmp_path))
    assert done.returncode == 3
    assert done.stderr.startswith("bench-agent: --profile: unknown profile 'guide-recomended'; "
                                  "did you mean guide-recommended")
    assert "guide-high-performance" not in done.stderr  # not the whole list
    assert list(tmp_path.iterdir()) == []


def test_a_suite_file_gets_every_problem_at_once(tmp_path: Path) -> None:
    suite = tmp_path / "mine [v2].yaml"
    suite.write_text(
        "name: mine\n"
        "checks:\n"
        "  - check: cpu.gem\n"
        "  - check: cpu.gemm\n"
        "    timeout: soon\n"
        "    params: {size: -1, repetitons: 3}\n"
        "  - check: memory.stream\n", encoding="utf-8")
    done = bench_agent("run", "--suite-file", str(suite), "--output", str(tmp_path / "o"))
    assert done.returncode == 4
    lines = done.stderr.splitlines()
    assert lines[0] == f"bench-agent: configuration error: {suite}: 4 problems:"
    assert lines[1] == ("  checks[0].check: unknown check 'cpu.gem'; did you mean cpu.gemm? "
                        "(every check: bench-agent list)")
    assert lines[2].startswith("  checks[1].timeout: ") and "soon" in lines[2]
    assert sorted(lines[3:]) == sorted([
        "  checks[1].params.size: Input should be greater than or equal to 64",
        "  checks[1].params.repetitons: Extra inputs are not permitted"])
    assert len(lines) == 5


def test_a_profile_gets_every_problem_at_once(tmp_path: Path) -> None:
    profile = tmp_path / "p.yaml"
    profile.write_text(
        "name: p\n"
        "thresholds:\n"
        "  - {id: a, metric: cpu.gemm_fp64_all_cores_flop, comparator: '>=', value: 1,"
        " source: me}\n"
        "  - {id: b, metric: memory.stream_triad, comparator: '>=',"
        " value: 10 kg, source: me}\n"
        "  - {id: b, metric: inventory.logical_cpus, comparator: '>=', value: 8, source: me}\n",
        encoding="utf-8")
    done = bench_agent("run", "inventory", "--profile", str(profile), "--output",
                       str(tmp_path / "o"))
    assert done.returncode == 4
    lines = done.stderr.splitlines()
    assert lines[0] == f"bench-agent: configuration error: {profile}: 3 problems:"
    assert lines[1].startswith("  thresholds[0].metric: threshold a: unknown metric "
                               "'cpu.gemm_fp64_all_cores_flop'; did you mean ")
    assert lines[2].startswith("  thresholds[1].value: ")
    assert lines[3] == "  thresholds[2]: duplicate threshold id 'b'"


def test_a_single_problem_reads_as_one_line(tmp_path: Path) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\nchecks:\n  - check: cpu.gemm\n    params: {sise: 9}\n",
                     encoding="utf-8")
    done = bench_agent("run", "--suite-file", str(suite), "--output", str(tmp_path / "o"))
    assert (done.returncode, done.stderr) == (4, (
        f"bench-agent: configuration error: {suite}: checks[0].params.sise: "
        "Extra inputs are not permitted\n"))
