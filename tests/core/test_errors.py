"""core/errors.py holds the whole exception tree, draws it in its docstring, and each
class says the verdict status and the exit code it becomes; nothing maps by name."""

from __future__ import annotations

import ast
import builtins
import re
from pathlib import Path

import pytest

from bench_agent.core import errors
from bench_agent.core.status import Status
from tests.paths import REPO

PACKAGE = REPO / "bench_agent"
ERRORS_PY = PACKAGE / "core" / "errors.py"
TREE: list[type[errors.BenchAgentError]] = [
    c for c in vars(errors).values()
    if isinstance(c, type) and issubclass(c, BaseException) and c.__module__ == errors.__name__]
# One row of the docstring's drawing: the branches, the name, status, exit code, words.
ROW = re.compile(r"^    (?P<branch>[│├└─ ]*)(?P<name>[A-Z]\w+) +(?P<status>SKIP|ERROR|-) +"
                 r"(?P<exit>\d|-) +\S")


def _exception_classes(package: Path = PACKAGE) -> dict[str, list[str]]:
    """Every class of the package that derives, as far as its source shows, from an
    exception: module -> class names. A base counts as an exception when it is a
    builtin one, one of the tree, one found so far, or is named like one (a foreign
    library's, such as sqlalchemy's IntegrityError)."""
    known = {n for n, v in vars(builtins).items()
             if isinstance(v, type) and issubclass(v, BaseException)}
    known |= {c.__name__ for c in TREE}
    classes: list[tuple[str, str, list[str]]] = []
    for path in package.rglob("*.py"):
        module = ".".join(path.relative_to(package.parent).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(b).rsplit(".", 1)[-1] for b in node.bases]
                classes.append((module, node.name, bases))
    found: dict[str, list[str]] = {}
    grew = True
    while grew:  # a class deriving from a local exception is one too
        grew = False
        for module, name, bases in classes:
            if name in found.get(module, []):
                continue
            if any(b in known or b.endswith(("Error", "Exception")) for b in bases):
                found.setdefault(module, []).append(name)
                known.add(name)
                grew = True
    return found


def _private_documented() -> set[str]:
    """The dotted names listed under "Private exceptions" in the docstring."""
    section = (errors.__doc__ or "").split("Private exceptions", 1)[1].split("\n\n", 1)[0]
    return {m[1] for m in re.finditer(r"^    ([\w.]+\.\w+) ", section, re.MULTILINE)}


def test_every_exception_class_of_the_package_is_in_errors_py() -> None:
    found = _exception_classes()
    assert sorted(found.pop("bench_agent.core.errors")) == sorted(c.__name__ for c in TREE)
    outside = {f"{m.removeprefix('bench_agent.')}.{n}" for m, names in found.items()
               for n in names}
    # Only the private ones the docstring names (control flow inside one module).
    assert outside == _private_documented() == {"core.strict_json._Invalid",
                                                     "core.inventory._Mismatch"}
    assert all(name.rsplit(".", 1)[1].startswith("_") for name in outside)


def test_the_walk_finds_exception_classes_however_they_derive(tmp_path: Path) -> None:
    # The walk above is what catches the next StorageRefused: it must see through
    # a base of the tree, a builtin, a foreign base and a local one.
    (tmp_path / "pkg" / "checks").mkdir(parents=True)
    (tmp_path / "pkg" / "checks" / "probe.py").write_text(
        "from x import IntegrityError\nclass A(errors.CheckError): ...\n"
        "class B(IntegrityError): ...\nclass C(A): ...\nclass D: ...\n"
        "class E(KeyError): ...\nclass F(D): ...\nclass G(H): ...\nclass H(OSError): ...\n",
        encoding="utf-8")
    assert _exception_classes(tmp_path / "pkg") == {
        "pkg.checks.probe": ["A", "B", "C", "E", "H", "G"]}


@pytest.mark.parametrize("cls", TREE, ids=lambda c: c.__name__)
def test_each_class_says_its_own_status_and_exit_code(cls: type[errors.BenchAgentError]) -> None:
    # Said in its own body, not inherited by accident: a new class must decide.
    assert "status" in vars(cls) and "exit_code" in vars(cls), cls
    if issubclass(cls, errors.CheckError):
        assert cls.status in (Status.SKIP, Status.ERROR)
        assert cls.exit_code == errors.EXIT_ERROR
    else:  # not raised by a check: no verdict of its own (ERROR if one escapes a check)
        assert cls.status is None


def test_the_docstring_draws_the_whole_tree_with_each_status_and_exit_code() -> None:
    rows = [ROW.match(line) for line in (errors.__doc__ or "").splitlines()]
    drawn = [m for m in rows if m]
    by_name = {c.__name__: c for c in TREE}
    assert [m["name"] for m in drawn] == list(by_name), "every class once, in source order"
    parents: list[str] = []
    for m in drawn:
        cls = by_name[m["name"]]
        depth = len(m["branch"]) // 4
        parents = parents[:depth]
        own_bases = [b.__name__ for b in cls.__bases__ if b.__module__ == errors.__name__]
        assert own_bases == parents[-1:], f"{cls.__name__} drawn under {parents[-1:]}"
        assert m["status"] == (cls.status.value if cls.status else "-"), cls
        assert m["exit"] == (str(cls.exit_code) if cls.exit_code is not None else "-"), cls
        parents.append(cls.__name__)


def test_the_exit_codes_are_the_readmes() -> None:
    codes = {c.__name__: c.exit_code for c in TREE if c.exit_code is not None
             and not issubclass(c, errors.CheckError)}
    assert codes == {"UsageError": 3, "ConfigError": 4, "ReportError": 5, "SignatureError": 5}
    assert errors.CheckError.exit_code == 2
    table = (REPO / "README.md").read_text(encoding="utf-8").split("## Exit codes", 1)[1]
    assert "| 3 | usage error" in table and "| 4 | configuration error" in table
    assert "| 5 | a report could not be read" in table and "| 2 | a check could not" in table


@pytest.mark.parametrize(("exc", "status"), [
    (errors.ToolMissing("fio"), Status.SKIP),
    (type("Renamed", (errors.NotApplicable,), {})("no GPU"), Status.SKIP),
    (errors.ToolFailed("fio", "exit 1"), Status.ERROR),
    (errors.UsageError("unknown check"), Status.ERROR),  # no status of its own
    (ValueError("foreign"), Status.ERROR),
])
def test_verdict_status_is_the_classs_else_error(exc: BaseException, status: Status) -> None:
    assert errors.verdict_status(exc) is status


def test_no_error_is_named_by_a_string_in_the_package() -> None:
    """A string equal to an error class's name, or a test of type(...).__name__, is
    how a rename once turned a SKIP into an ERROR (runner.py's _SKIP_ERRORS)."""
    names = {c.__name__ for c in TREE} | {"NotAvailable"}
    offences: list[str] = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(REPO)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in names:
                offences.append(f"{rel}:{node.lineno}: {node.value!r}")
            if isinstance(node, ast.Compare) and "__name__" in ast.unparse(node) \
                    and "__main__" not in ast.unparse(node):
                offences.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
    assert offences == []


def test_status_is_the_one_model_exports() -> None:
    from bench_agent.core import model

    assert model.Status is Status is errors.Status
