"""The registry and the metric catalog built from the checks' declarations.

What is pinned or generated from them (tests/data/catalog.json, README.md's check
table) fails here when stale; after an intended change, `scripts/gen-catalog`
rewrites both.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import ClassVar

import pytest
from pydantic import BaseModel

import bench_agent.checks as registry
from bench_agent.checks import catalog, check_class, check_names, metric_catalog
from bench_agent.checks.base import Check, CheckContext, MetricSpec
from bench_agent.core.errors import UsageError
from bench_agent.core.model import Measurement
from bench_agent.core.units import Unit
from tests.cli_support import run_cli
from tests.paths import DATA, REPO

FIX = "scripts/gen-catalog"
PINNED = DATA / "catalog.json"


def test_registry_and_catalog_match_the_pinned_file() -> None:
    pinned = json.loads(PINNED.read_text(encoding="utf-8"))
    live = catalog.snapshot()
    assert [c["check"] for c in live["checks"]] == check_names()
    assert live == pinned, (
        f"the checks' declarations differ from {PINNED.relative_to(REPO)}; if the change"
        f" is intended, run `{FIX}` and commit the file")


def test_readme_check_table_is_generated_from_the_registry() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert catalog.README_BEGIN in readme and catalog.README_END in readme
    assert catalog.replace_readme_block(readme) == readme, (
        f"README.md's check table is stale; run `{FIX}` and commit README.md")


def test_a_stale_readme_block_is_seen_and_rewritten() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    stale = readme.replace("| `cpu.gemm` | cpu |", "| `cpu.gemm` | gpu |")
    assert stale != readme
    assert catalog.replace_readme_block(stale) == readme
    with pytest.raises(ValueError, match="README has no"):
        catalog.replace_readme_block("no markers here")


def test_gen_catalog_check_mode_finds_the_tree_fresh() -> None:
    done = subprocess.run([sys.executable, str(REPO / FIX), "--check"], capture_output=True,
                          text=True, timeout=120, cwd=REPO)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_every_entry_is_its_checks_declaration() -> None:
    built = metric_catalog()
    declared = 0
    for name in check_names():
        for spec in check_class(name).metrics:
            declared += 1
            info = built[spec.name]
            assert name in info.checks
            assert (info.unit, info.meaning, info.higher_is_better, info.per_device) == (
                spec.unit, spec.meaning, spec.higher_is_better, spec.per_device)
            assert info.meaning.strip(), spec.name  # one line of meaning, never empty
    # Only the RDMA device count is declared by two checks.
    shared = {m: i.checks for m, i in built.items() if len(i.checks) > 1}
    assert shared == {"network.rdma_active_devices": ("network.rdma_latency",
                                                      "network.rdma_bandwidth")}
    assert declared == len(built) + 1
    assert built["storage.randread_4k_latency_p99"].higher_is_better is False
    assert built["gpu.matmul_bf16_per_gpu"].per_device is True
    assert built["gpu.matmul_bf16"].per_device is False


# --- a declaration that contradicts another is refused -----------------------------


class _First(Check):
    name: ClassVar[str] = "test.first"
    domain: ClassVar[str] = "cpu"
    description: ClassVar[str] = "first"
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("test.widgets", Unit.COUNT, "widgets seen"),)

    def run(self, ctx: CheckContext, params: BaseModel) -> list[Measurement]:
        return []


class _Second(_First):
    name: ClassVar[str] = "test.second"
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("test.widgets", Unit.BYTES, "widgets seen"),)


class _Twice(_First):
    name: ClassVar[str] = "test.twice"
    metrics: ClassVar[tuple[MetricSpec, ...]] = _First.metrics * 2


class _Stray(_First):
    name: ClassVar[str] = "stray.check"


@pytest.fixture
def own_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[type[Check]]]:
    """A registry of one module, "test", whose CHECKS the test fills."""
    checks: list[type[Check]] = []
    monkeypatch.setattr(registry, "MODULES", {"test": "tests.checks.fake_module"})
    monkeypatch.setattr(registry, "_module_checks", lambda module: tuple(checks))
    registry._registry.cache_clear()
    registry._catalog.cache_clear()
    try:
        yield checks
    finally:
        registry._registry.cache_clear()
        registry._catalog.cache_clear()


def test_one_metric_two_meanings_is_refused(own_registry: list[type[Check]]) -> None:
    own_registry += [_First, _Second]
    with pytest.raises(ValueError) as exc:
        metric_catalog()
    assert str(exc.value) == ("metric test.widgets is declared differently by checks "
                              "test.first and test.second")


def test_one_metric_declared_twice_by_a_check_is_refused(own_registry: list[type[Check]]) -> None:
    own_registry.append(_Twice)
    with pytest.raises(ValueError) as exc:
        metric_catalog()
    assert str(exc.value) == "check test.twice declares metric test.widgets twice"


def test_a_check_must_live_where_its_name_is_looked_up(own_registry: list[type[Check]]) -> None:
    own_registry += [_First, _Stray]
    with pytest.raises(ValueError) as exc:
        check_names()
    assert str(exc.value) == ("check stray.check is in tests.checks.fake_module, but its name"
                              " is looked up in no module (checks.MODULES)")


def test_two_checks_of_one_name_are_refused(own_registry: list[type[Check]]) -> None:
    own_registry += [_First, _First]
    with pytest.raises(ValueError) as exc:
        check_names()
    assert str(exc.value) == "two checks are named test.first"


def test_a_module_lists_its_checks(own_registry: list[type[Check]]) -> None:
    own_registry += [_First, _Second]
    assert check_names() == ["test.first", "test.second"]
    assert check_class("test.second") is _Second
    with pytest.raises(UsageError) as exc:
        check_class("test.third")
    assert str(exc.value) == ("unknown check 'test.third' (known checks: test.first, "
                              "test.second)")


def test_looking_up_a_check_imports_only_its_module() -> None:
    code = ("import sys\nfrom bench_agent.checks import get_check, is_check\n"
            "get_check('cpu.gemm')\nassert is_check('memory.stream')\n"
            "assert not is_check('network.nonesuch')\n"
            "print(sorted(m for m in sys.modules if m.startswith('bench_agent.checks.')))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=60)
    # A checks module brings its burn-in variant's params models (its package's
    # burnin.py, part of the check's declaration), and nothing of another domain.
    assert done.stdout.strip().splitlines()[-1] == str(sorted([
        # plain_params: the base's; byte_size: cpu's burn-in params take "64 MiB".
        "bench_agent.checks.base", "bench_agent.checks.plain_params",
        "bench_agent.checks.byte_size",
        "bench_agent.checks.cpu", "bench_agent.checks.cpu.burnin",
        "bench_agent.checks.cpu.checks", "bench_agent.checks.network",
        "bench_agent.checks.network.burnin", "bench_agent.checks.network.checks",
        # network.ib_port_health's own module, which network/checks.py lists.
        "bench_agent.checks.network.ib_ports"])), done.stderr


def test_help_imports_no_check_module() -> None:
    code = ("import sys\nfrom bench_agent.cli.main import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('bench_agent.checks')))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=60)
    assert done.stdout.strip().splitlines()[-1] == "[]"


# --- bench-agent list --metrics ------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, timeout=120, cwd=REPO)


def test_list_metrics_piped_is_one_aligned_line_per_metric() -> None:
    done = _cli("list", "--metrics")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["metric", "unit", "better", "per", "device", "check", "meaning"]
    assert len(lines) == 1 + len(metric_catalog())
    row = next(line for line in lines if line.startswith("storage.randread_4k_latency_p99 "))
    assert row.split(None, 5) == ["storage.randread_4k_latency_p99", "s", "lower", "no",
                                  "storage.randread",
                                  "4 KiB random read completion latency, p99"]
    # Columns are aligned: every row's unit starts where the header's does.
    column = lines[0].index("unit")
    assert all(line[column - 2:column] == "  " and line[column] != " " for line in lines)
    assert "\x1b" not in done.stdout  # no colours, no box drawing when piped


def test_list_metrics_json_is_a_list_of_objects() -> None:
    done = _cli("list", "--metrics", "--json")
    assert done.returncode == 0, done.stderr
    records = json.loads(done.stdout)
    assert [r["metric"] for r in records] == list(metric_catalog())
    assert records[0] == {"metric": "inventory.logical_cpus", "unit": "count",
                          "better": "higher", "per_device": False, "checks": ["inventory"],
                          "meaning": "logical CPUs (vCPUs) online"}
    gpu = next(r for r in records if r["metric"] == "gpu.temperature_max")
    assert (gpu["unit"], gpu["better"], gpu["per_device"]) == ("degC", "lower", True)


def test_list_metrics_on_a_terminal_is_a_table() -> None:
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "bench_agent.cli", "list", "--metrics"],
                                stdout=slave, stderr=subprocess.PIPE, cwd=REPO,
                                env={**os.environ, "COLUMNS": "250", "TERM": "xterm"})
        os.close(slave)
        slave = -1
        chunks = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert proc.wait(timeout=120) == 0
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    raw = b"".join(chunks).decode("utf-8")
    assert "\x1b[1m" in raw  # a terminal gets rich's styles (a bold header)
    shown = re.sub(r"\x1b\[[0-9;]*m", "", raw)
    header = next(line for line in shown.splitlines() if line.startswith("┃"))
    assert [cell.strip() for cell in header.strip("┃ \r").split("┃")] == list(
        catalog.METRIC_COLUMNS)
    row = next(line for line in shown.splitlines() if "gpu.temperature_max " in line)
    cells = [cell.strip() for cell in row.strip("│ \r").split("│")]
    assert cells == ["gpu.temperature_max", "degC", "lower", "yes", "gpu.health",
                     "hottest sample"]


def test_list_markdown_prints_the_readme_block() -> None:
    done = _cli("list", "--markdown")
    assert (done.returncode, done.stdout) == (0, catalog.readme_block())
    assert done.stdout.splitlines()[0] == catalog.README_BEGIN
    done = _cli("list", "--markdown", "--metrics")
    assert done.returncode == 3
    assert "--markdown writes the README's check table; it takes no --metrics" in done.stderr


def test_list_json_names_checks_suites_and_profiles() -> None:
    done = _cli("list", "--json")
    assert done.returncode == 0, done.stderr
    listing = json.loads(done.stdout)
    assert [c["check"] for c in listing["checks"]] == check_names()
    assert "acceptance" in listing["suites"]
    from bench_agent.config.loader import load_profile_named

    [minimum] = [p for p in listing["profiles"] if p["name"] == "guide-minimum"]
    assert minimum["description"] == load_profile_named("guide-minimum").description
