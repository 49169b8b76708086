"""The completion scripts and the man page the package ships (bench_agent/data):
current with the parser, loadable the way a system installs them, inside the wheel.

After an intended change of the command line (or of the checks, suites and
profiles the completion offers), `scripts/gen-cli-docs` rewrites them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from bench_agent import data
from bench_agent.cli.shipped_docs import expected, stale
from tests.paths import REPO

FIX = "scripts/gen-cli-docs"
SHIPPED = (data.BASH_COMPLETION, data.ZSH_COMPLETION, data.MAN_PAGE)


def test_the_shipped_files_are_generated_from_the_current_parser() -> None:
    assert sorted(expected()) == sorted(SHIPPED)
    assert stale() == [], f"stale: {stale()}; run `{FIX}` and commit the files"


def test_gen_cli_docs_check_mode_finds_the_tree_fresh_and_names_a_stale_file(
        tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(REPO / FIX), "--check"], capture_output=True,
                          text=True, timeout=120, cwd=REPO)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    # A copy of the tree's data folder with one file edited: --check names it, exit 1.
    copy = tmp_path / "repo"
    shutil.copytree(REPO / "bench_agent", copy / "bench_agent",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "suites", copy / "suites")
    (copy / "scripts").mkdir()
    shutil.copy(REPO / FIX, copy / FIX)
    man = copy / "bench_agent/data/man/bench-agent.1"
    man.write_text(man.read_text(encoding="utf-8").replace(".SH OPTIONS", ".SH OPTIONZ"),
                   encoding="utf-8")
    done = subprocess.run([sys.executable, str(copy / FIX), "--check"], capture_output=True,
                          text=True, timeout=120, cwd=copy)
    assert done.returncode == 1, done.stderr
    assert done.stdout == "stale: bench_agent/data/man/bench-agent.1\n"
    assert "run scripts/gen-cli-docs" in done.stderr
    # Without --check it rewrites exactly that file, after which --check is clean.
    done = subprocess.run([sys.executable, str(copy / FIX)], capture_output=True, text=True,
                          timeout=120, cwd=copy)
    assert done.stdout == "wrote: bench_agent/data/man/bench-agent.1\n", done.stderr
    assert man.read_text(encoding="utf-8") == data.MAN_PAGE.read_text(encoding="utf-8")


def _shell(shell: str, script: str) -> subprocess.CompletedProcess[str]:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed (make test-deps installs it)")
    return subprocess.run([shell, "-f" if shell == "zsh" else "--norc", "-c", script],
                          capture_output=True, text=True, timeout=60, cwd=REPO)


def test_bash_loads_the_shipped_file_as_bash_completion_does() -> None:
    # bash-completion sources completions/<command> on the first Tab: the same
    # as sourcing the file. No python on the way: the file alone completes.
    done = _shell("bash", f"source {data.BASH_COMPLETION} && complete -p bench-agent && "
                  "COMP_WORDS=(bench-agent fleet compare --format ''); COMP_CWORD=4; "
                  '_bench_agent; printf "%s\\n" "${COMPREPLY[@]}"')
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["complete -F _bench_agent bench-agent",
                                        "table", "csv", "html", "json"]


def test_zsh_autoloads_the_shipped_file_from_fpath() -> None:
    # compinit maps the command to the function named on the file's #compdef
    # line; the first call runs the file's body. compadd is a builtin of the
    # completion widgets only, so it is replaced by one that prints its words.
    done = _shell("zsh", f"fpath=({data.COMPLETION} $fpath); autoload -Uz compinit && "
                  "compinit -u -D && print -r -- $_comps[bench-agent] && "
                  "compadd() { print -rl -- \"$@\" } && "
                  "words=(bench-agent collector serve --p); CURRENT=4; _bench-agent")
    assert done.returncode == 0, done.stderr
    first, *rest = done.stdout.splitlines()
    assert first == "_bench-agent"
    assert rest[0] == "--"
    assert "--port" in rest and "--host" in rest and "fleet" not in rest


def test_the_wheel_carries_the_units_completion_and_man_page(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps",
                           "--no-build-isolation", "-q", "-w", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob("bench_agent-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        for path in (*SHIPPED, *(data.SYSTEMD / unit for unit in data.UNITS)):
            name = path.relative_to(REPO).as_posix()
            assert archive.read(name) == path.read_bytes(), name
