"""The verdict of a check that raised comes from its error class's ``status``
(core/errors.py), carried by the worker's answer, never from the class's name:
a renamed or subclassed error keeps its verdict, and a name alone makes no SKIP."""

from __future__ import annotations

import json
import sys

import pytest

from bench_agent.core import errors
from bench_agent.core.model import Status
from bench_agent.run.runner import run_in_child
from tests.paths import DATA

RAISING = DATA / "workers" / "raising_worker.py"
MISBEHAVING = DATA / "workers" / "misbehaving_worker.py"
REQUEST = {"check": "test.raises", "params": {}, "root": "/", "output_dir": "results",
           "timeout": 30}
# Constructor arguments of the classes whose __init__ is not Exception's.
ARGS: dict[str, list[object]] = {
    "ToolMissing": ["fio", "apt install fio"],
    "ToolFailed": ["fio", "exit 1: no space left"],
    "GpuStackBroken": ["gpu stack", "8 NVIDIA GPU(s) on the PCI bus but NVML cannot start"],
    "ParseError": ["fio", "not JSON", "{garbage"],
    "EnrollmentError": ["bad PEM", "invalid_key"],
    "Refused": [400, "malformed_json", "the body is not JSON"],
}
TREE = [c for c in vars(errors).values()
        if isinstance(c, type) and issubclass(c, errors.BenchAgentError)]


def _raise_renamed(base: str, args: list[object]) -> tuple[Status | None, str]:
    command = [sys.executable, str(RAISING), base, f"Renamed{base}", json.dumps(args)]
    outcome = run_in_child(REQUEST, timeout=60, worker_command=command)
    return outcome.status, outcome.message


@pytest.mark.parametrize("cls", TREE, ids=lambda c: c.__name__)
def test_a_renamed_error_keeps_its_classs_verdict(cls: type[errors.BenchAgentError]) -> None:
    args = ARGS.get(cls.__name__, ["the check's own words"])
    expected = cls.status if cls.status is not None else Status.ERROR
    assert _raise_renamed(cls.__name__, args) == (expected, str(cls(*args)))


def test_the_tree_has_both_verdicts_to_keep() -> None:
    # The test above means something only if some classes SKIP and some ERROR.
    assert {c.status for c in TREE} == {Status.SKIP, Status.ERROR, None}
    assert errors.ToolMissing.status is errors.NotApplicable.status is Status.SKIP


def test_a_foreign_exception_is_error_with_its_traceback() -> None:
    status, message = _raise_renamed("ValueError", ["bad value 7"])
    assert status is Status.ERROR
    assert message.startswith("check crashed: ")
    assert message.endswith("RenamedValueError: bad value 7")


@pytest.mark.parametrize(("mode", "status", "message"), [
    ("skip-named-tool-failed", Status.SKIP, "no peer given"),
    ("error-named-tool-missing", Status.ERROR, "fio died"),
    ("error-without-status", Status.ERROR,
     "the worker gave no verdict status (None) for ToolMissing: fio is not installed"),
    ("error-with-pass-status", Status.ERROR,
     "the worker gave no verdict status ('PASS') for NotApplicable: nothing to do"),
])
def test_the_runner_reads_the_status_not_the_name(mode: str, status: Status,
                                                  message: str) -> None:
    command = [sys.executable, str(MISBEHAVING), mode]
    outcome = run_in_child({"check": "cpu.gemm"}, timeout=30, worker_command=command)
    assert (outcome.status, outcome.message) == (status, message)
