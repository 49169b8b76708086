"""The catalog's pattern matcher: fnmatch's answer for every pattern, literal
ones compared without compiling a regular expression (`bench-agent health`
speed, docs/health.md "Speed")."""

from __future__ import annotations

import fnmatch

import pytest

from bench_agent.faults.catalog import _glob, load_catalog


@pytest.mark.parametrize(("name", "pattern", "expected"), [
    ("health.gpu_xid", "health.gpu_xid", True),
    ("health.gpu_xid", "health.gpu_xi", False),
    ("health.gpu_xidx", "health.gpu_xid", False),
    ("Health.gpu_xid", "health.gpu_xid", False),  # case-sensitive, as fnmatchcase
    ("healthXgpu_xid", "health.gpu_xid", False),  # "." is no wildcard
    ("health.gpu_xid", "health.*", True),
    ("gpu.hbm", "gpu.hb?", True),
    ("gpu.hbm", "gpu.hb[mn]", True),
    ("gpu.hbx", "gpu.hb[mn]", False),
    ("a+b", "a+b", True),  # regular-expression characters are literal
    ("ab", "a+b", False),
])
def test_glob_agrees_with_fnmatchcase(name: str, pattern: str, expected: bool) -> None:
    assert _glob(name, pattern) is expected
    assert fnmatch.fnmatchcase(name, pattern) is expected


def test_every_catalog_pattern_answers_as_fnmatch_does() -> None:
    catalog = load_catalog()
    patterns = {p for m in catalog.mappings
                for p in (m.check, m.metric or "", *(m.errors or ()))}
    names = patterns | {"health.gpu_xid", "gpu.matmul", "storage.fio_randread", "timeout",
                        "ToolMissing", "inventory.gpu_count", "config.nonuniform", ""}
    for pattern in patterns:
        for name in names:
            assert _glob(name, pattern) == fnmatch.fnmatchcase(name, pattern), (name, pattern)
