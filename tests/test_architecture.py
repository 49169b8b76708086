"""The layers of docs/ARCHITECTURE.md, enforced: who may import whom inside bench_agent.

Every `import` and `from ... import` of every module is read with ast (function-level
imports too: a lazy import is still a dependency). A rule names the importing layer
and the layers it may use; the layer of a module is its first package under
bench_agent (checks.<domain> for a check domain).
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.paths import REPO

PACKAGE = REPO / "bench_agent"

# layer -> the layers it may import (its own is always allowed). Read top to bottom:
# each layer builds only on those above it in docs/ARCHITECTURE.md's table.
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "tools": {"core"},
    "inventory": {"core", "tools"},
    "checks": {"core", "tools", "inventory", "config.baselines", "peer.protocol"},
    "config": {"core", "checks"},
    "run": {"core", "tools", "inventory", "checks", "config", "faults"},
    "report": {"core", "run", "config"},
    "burnin": {"core", "tools", "inventory", "checks", "config", "run", "report", "faults"},
    "fleet": {"core", "checks", "config", "report"},
    "peer": {"core", "tools", "inventory"},
    "collector": {"core", "report.attest", "report.plots"},
    "faults": {"core"},
    "health": {"core", "tools", "inventory", "checks", "config", "run", "report", "faults"},
    "cli": {"core", "tools", "inventory", "checks", "config", "run", "report", "burnin",
            "fleet", "peer", "collector.cli", "faults", "health", "sched", "data"},
    # Slurm and Kubernetes: act on a health Report (from health, else the runner).
    "sched": {"core", "config", "run", "health"},
    # Files shipped beside the code (the systemd units): imports nothing.
    "data": set(),
}
# The package's face: the version, `python -m bench_agent`.
FACE = {"bench_agent", "bench_agent.__main__"}


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) < 2:
        return "bench_agent"
    return parts[1]


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("bench_agent")]
        elif (isinstance(node, ast.ImportFrom) and node.module and node.level == 0
              and node.module.startswith("bench_agent")):
            # `from bench_agent.report import attest` uses bench_agent.report.attest
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


def _allowed(importer: str, target: str) -> bool:
    src, dst = _layer(importer), _layer(target)
    if dst == "bench_agent" or target.startswith("bench_agent.__version__"):
        return True  # the version lives at the top
    if src == dst:
        return True
    rules = ALLOWED.get(src)
    if rules is None:
        return src == "bench_agent" or importer in FACE
    dotted = target.removeprefix("bench_agent.")
    return any(dotted == r or dotted.startswith(r + ".") for r in rules)


def violations() -> list[str]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = _module_name(path)
        if importer in FACE:
            continue
        for line, target in _imports(path):
            if not _allowed(importer, target):
                out.append(f"{path.relative_to(REPO)}:{line}: {importer} imports {target}")
    return out


def test_every_module_keeps_to_its_layer() -> None:
    assert violations() == []


def test_every_package_is_a_layer_of_the_rules() -> None:
    layers = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert layers == set(ALLOWED)


def test_the_top_holds_only_the_face() -> None:
    top = {p.name for p in PACKAGE.glob("*.py")}
    assert top == {"__init__.py", "__main__.py"}


def test_the_rules_catch_a_breach(tmp_path: Path) -> None:
    # The checker itself: a core module importing a check is refused, a check importing
    # core is not, and the collector may read report.attest but not the runner.
    assert not _allowed("bench_agent.core.thresholds", "bench_agent.checks.cpu.checks")
    assert _allowed("bench_agent.checks.cpu.checks", "bench_agent.core.units.Unit")
    assert _allowed("bench_agent.collector.ingest", "bench_agent.report.attest.verify_envelope")
    assert not _allowed("bench_agent.collector.ingest", "bench_agent.run.runner")
    assert not _allowed("bench_agent.tools.fio", "bench_agent.checks.storage.checks")
    assert not _allowed("bench_agent.run.runner", "bench_agent.collector.db")
    source = tmp_path / "mod.py"
    source.write_text("def f():\n    from bench_agent.checks import get_check\n")
    assert _imports(source) == [(2, "bench_agent.checks.get_check")]


# The one subprocess seam: core/process.py starts every child (own session,
# parent-death signal, deadline, the whole tree stopped). Type names only elsewhere.
SEAM = {"bench_agent/core/process.py"}


def _starts_processes(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    starters = {"subprocess": {"run", "Popen", "call", "check_call", "check_output"},
                "os": {"system", "popen", "fork", "spawnv"}}
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.attr in starters.get(node.func.value.id, set())]


def test_only_the_seam_starts_processes() -> None:
    found = [f"{path.relative_to(REPO)}:{line}"
             for path in sorted(PACKAGE.rglob("*.py"))
             if str(path.relative_to(REPO)) not in SEAM
             for line in _starts_processes(path)]
    assert found == []


def test_the_seam_rule_sees_a_direct_start(tmp_path: Path) -> None:
    source = tmp_path / "mod.py"
    source.write_text("import subprocess\n\ndef f(p: subprocess.Popen[str]) -> None:\n"
                      "    subprocess.run(['true'])\n")
    assert _starts_processes(source) == [4]  # the call, not the type name
