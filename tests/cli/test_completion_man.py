"""Shell completion loaded by the real shells, the man page rendered by man(1),
`-V`: all generated from the parser, run as a person runs them."""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
import sys

import pytest

from bench_agent.checks import check_names
from bench_agent.config.loader import profile_names
from tests.paths import REPO

COMMAND = f"{shlex.quote(sys.executable)} -m bench_agent"
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def sh(shell: str, script: str) -> subprocess.CompletedProcess[str]:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed (make test-deps installs it)")
    return subprocess.run([shell, "-f" if shell == "zsh" else "--norc", "-c", script],
                          capture_output=True, text=True, timeout=60, env=ENV, cwd=REPO)


@functools.cache
def bash_script() -> str:
    """`bench-agent completion bash`, run once: the script is static (generated from
    the parser), so each completion below evals the same text rather than paying
    for a Python start per word."""
    done = subprocess.run([sys.executable, "-m", "bench_agent", "completion", "bash"],
                          capture_output=True, text=True, timeout=60, env=ENV, cwd=REPO)
    assert done.returncode == 0, done.stderr
    return done.stdout


def bash_complete(*words: str) -> list[str]:
    """COMPREPLY for the command line ``words`` with the cursor on the last word."""
    array = " ".join(shlex.quote(w) for w in ("bench-agent", *words))
    done = sh("bash", f"eval {shlex.quote(bash_script())} && "
              f"COMP_WORDS=({array}); COMP_CWORD={len(words)}; _bench_agent; "
              'printf "%s\\n" "${COMPREPLY[@]}"')
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout.splitlines()


def test_bash_registers_the_completion() -> None:
    done = sh("bash", f"source <({COMMAND} completion bash); complete -p bench-agent")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "complete -F _bench_agent bench-agent"


def test_bash_completes_commands_subcommands_options_and_values() -> None:
    assert bash_complete("co") == ["collector", "completion"]
    assert bash_complete("fleet", "") == ["compare"]
    assert bash_complete("fleet", "compare", "--format", "") == ["table", "csv", "html", "json"]
    assert bash_complete("run", "--rep") == ["--repetitions"]
    assert bash_complete("collector", "serve", "--p") == ["--port"]
    # run's targets: the domains, suites and checks of the installed package.
    assert bash_complete("run", "--output", "/tmp", "storage.s") == [
        "storage.seqread", "storage.seqwrite"]
    assert bash_complete("run", "gpu.") == [n for n in check_names() if n.startswith("gpu.")]
    assert bash_complete("completion", "") == ["bash", "zsh"]


def test_bash_completes_profiles_and_files_for_profile(tmp_path: os.PathLike[str]) -> None:
    words = bash_complete("run", "--profile", "guide-")
    assert [w for w in words if w.startswith("guide-")] == [
        p for p in profile_names() if p.startswith("guide-")]
    mine = f"{tmp_path}/my[profile].yaml"
    open(mine, "w").close()
    assert bash_complete("run", "--profile", f"{tmp_path}/my") == [mine]


def test_bash_completes_a_path_option_with_files(tmp_path: os.PathLike[str]) -> None:
    target = f"{tmp_path}/reports ü"
    os.mkdir(target)
    assert bash_complete("upload", "--output", f"{tmp_path}/rep") == [target]


def test_zsh_loads_the_completion_and_resolves_the_same_words() -> None:
    done = sh("zsh", "autoload -Uz compinit && compinit -u -D && "
              f"source <({COMMAND} completion zsh) && print -r -- $_comps[bench-agent] && "
              "_bench_agent_candidates fleet compare --format '' && print -- --- && "
              "_bench_agent_candidates run --output /tmp 'storage.s' && print -- --- && "
              "_bench_agent_candidates collector serve --p")
    assert done.returncode == 0, done.stderr
    first, rest = done.stdout.split("\n", 1)
    formats, targets, options = rest.split("---")
    assert first == "_bench_agent_zsh"
    assert formats.split() == ["table", "csv", "html", "json"]
    assert "storage.seqread" in targets.split() and "cpu.gemm" in targets.split()
    assert "--port" in options.split() and "--host" in options.split()


def test_man_page_renders_with_man(tmp_path: os.PathLike[str]) -> None:
    if shutil.which("man") is None or shutil.which("groff") is None:
        pytest.skip("man-db/groff not installed (make test-deps installs them)")
    page = f"{tmp_path}/bench-agent.1"
    made = subprocess.run([sys.executable, "-m", "bench_agent", "man", "--out", page],
                          capture_output=True, text=True, timeout=60, env=ENV, cwd=REPO)
    assert made.returncode == 0, made.stderr
    shown = subprocess.run(["man", "--warnings", "-l", page], capture_output=True, text=True,
                           timeout=60, env={**ENV, "MANWIDTH": "100", "MAN_KEEP_FORMATTING": ""})
    assert shown.returncode == 0, shown.stderr
    assert shown.stderr == ""  # no groff warning: every escape is well formed
    assert shown.stdout.startswith("BENCH-AGENT(1)")
    text = " ".join(shown.stdout.split())  # man justifies lines with extra spaces
    for expected in ("NAME", "bench-agent - Measure an AI cluster node", "COMMANDS",
                     "bench-agent run", "--repetitions N", "bench-agent fleet compare",
                     "bench-agent collector serve", "TCP port (default: 8080)",
                     "EXIT STATUS", "0 pass, 1 fail, 2 error/incomplete",
                     "BENCH_AGENT_COLLECTOR"):
        assert expected in text, expected
    # Every command of the parser has its section.
    assert text.count("bench-agent keys show") >= 1 and "bench-agent man" in text


def test_version_answers_to_dash_capital_v() -> None:
    from bench_agent import __version__

    for flag in ("-V", "--version"):
        done = subprocess.run([sys.executable, "-m", "bench_agent", flag], capture_output=True,
                              text=True, timeout=60, env=ENV, cwd=REPO)
        assert (done.returncode, done.stdout) == (0, f"bench-agent {__version__}\n")


def test_collector_serve_help_shows_its_defaults() -> None:
    # Wide enough that argparse does not break a path at its hyphen.
    done = subprocess.run([sys.executable, "-m", "bench_agent", "collector", "serve", "--help"],
                          capture_output=True, text=True, timeout=60,
                          env={**ENV, "COLUMNS": "300"}, cwd=REPO)
    assert done.returncode == 0
    flat = " ".join(done.stdout.split())
    assert "(default: 127.0.0.1;" in flat
    assert "TCP port (default: 8080)" in flat
    assert "default: $BENCH_AGENT_COLLECTOR_DB, else /var/lib/bench-agent/collector.db" in flat
