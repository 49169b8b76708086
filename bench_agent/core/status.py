"""The verdict statuses: its own module so that errors.py (each error says which
status it becomes) and model.py (verdicts, reports) both build on it without a cycle.
``from bench_agent.core.model import Status`` keeps working."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """Verdict statuses, from best to worst for the exit code."""

    PASS = "PASS"
    WARN = "WARN"
    SKIP = "SKIP"
    FAIL = "FAIL"
    ERROR = "ERROR"

    def __str__(self) -> str:
        return self.value
