"""`run --runtime/--size/--repetitions`: validated by each check's params model,
applied to the checks that take them, refused with one line otherwise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench_agent.cli.overrides import apply_overrides, requested
from bench_agent.config.loader import resolve_targets
from bench_agent.core.errors import UsageError
from tests.cli_support import run_cli
from tests.paths import REPO


def test_runtime_reaches_storage_runtime_and_network_duration() -> None:
    suite = resolve_targets(["storage.seqread", "network.tcp_bandwidth", "cpu.gemm"])
    changed = apply_overrides(suite, requested("2m", None, None), set())
    params = {p.check: p.params for p in changed.checks}
    assert params["storage.seqread"]["runtime"] == 120.0
    assert params["network.tcp_bandwidth"]["duration"] == 120
    assert params["cpu.gemm"] == {p.check: p.params for p in suite.checks}["cpu.gemm"]
    assert changed.sha256 != suite.sha256  # the report's suite digest says it changed
    assert changed.description.endswith("(changed on the command line: --runtime 120)")


def test_size_goes_through_each_checks_model() -> None:
    suite = resolve_targets(["storage.seqread"])
    changed = apply_overrides(suite, requested(None, "4GiB", None), set())
    assert changed.checks[0].params["size"] == 4 * 2**30
    with pytest.raises(UsageError) as refused:
        apply_overrides(suite, requested(None, "12 parsecs", None), set())
    assert str(refused.value).startswith("--size 12 parsecs: storage.seqread refuses it: ")


def test_a_named_check_without_the_parameter_is_refused() -> None:
    suite = resolve_targets(["inventory", "cpu.gemm"])
    with pytest.raises(UsageError) as refused:
        apply_overrides(suite, requested("10s", None, None), {"inventory", "cpu.gemm"})
    assert str(refused.value) == "--runtime: cpu.gemm, inventory take no runtime parameter"
    with pytest.raises(UsageError) as refused:
        apply_overrides(suite, requested(None, None, 3), {"inventory", "cpu.gemm"})
    assert str(refused.value) == ("--repetitions: inventory takes no repetitions parameter; "
                                  "selected checks that do: cpu.gemm")


def test_a_flag_no_selected_check_takes_is_refused() -> None:
    suite = resolve_targets(["cpu"])
    with pytest.raises(UsageError, match=r"^--runtime: none of the selected checks \("):
        apply_overrides(suite, requested("10s", None, None), set())
    with pytest.raises(UsageError, match=r"^--runtime 10 lightyears: "):
        requested("10 lightyears", None, None)


def test_run_applies_them_and_the_report_shows_them(tmp_path: Path) -> None:
    done = run_cli("run", "cpu.gemm", "--size", "96", "--repetitions", "2", "--output",
                   str(tmp_path), "--no-sign", "--json", timeout=300, cwd=REPO)
    assert done.returncode in (0, 1, 2), done.stderr
    report = json.loads(done.stdout)
    gemm = [m for m in report["measurements"] if m["check"] == "cpu.gemm"]
    assert gemm and all((m["params"]["size"], m["params"]["repetitions"]) == (96, 2)
                        for m in gemm)


def test_run_refuses_with_one_line_and_exit_3(tmp_path: Path) -> None:
    done = run_cli("run", "cpu.gemm", "--runtime", "10s", "--output", str(tmp_path),
                   timeout=300, cwd=REPO)
    assert done.returncode == 3
    assert done.stderr == "bench-agent: --runtime: cpu.gemm takes no runtime parameter\n"
    assert list(tmp_path.iterdir()) == []  # refused before anything ran
