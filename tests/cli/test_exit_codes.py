"""Every row of the README's exit-code table, as a person meets it on the command line.

One scheme: what the command line names and cannot be found is 3, whatever kind of
thing it is (command, domain, suite, check, profile, file, --target folder); what
is found and cannot be used is 4 (a suite or profile) or 5 (a report). The full
disk and the unusable key (5) and Ctrl-C (2) are run in test_cli_e2e.py.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.cli_support import run_cli
from tests.paths import DATA, REPO

REPO = REPO
DATA = DATA
TINY_PROFILE = DATA / "profiles" / "tiny-node.yaml"
IMPOSSIBLE_PROFILE = """\
name: impossible
description: no node has a million vCPUs
thresholds:
  - id: vcpus
    metric: inventory.logical_cpus
    comparator: ">="
    value: 1000000
    source: test fixture
"""
# network.tcp_latency SKIPs without --peer; required, it is an ERROR (fast: no tool runs).
REQUIRED_SKIP = "name: req\nchecks:\n  - check: inventory\n  - check: network.tcp_latency\n" \
                "    required: true\n"


@pytest.fixture(autouse=True)
def node_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_AGENT_KEY", str(tmp_path / "keys" / "node.key"))


def bench_agent(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # {tmp} in an argument is the test's own folder.
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    return run_cli(*argv, timeout=300, cwd=REPO)


def expect(result: subprocess.CompletedProcess[str], code: int, message: str = "") -> None:
    assert result.returncode == code, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def reports(folder: Path) -> list[Path]:
    return list(folder.glob("*/*.json"))


@pytest.mark.e2e
def test_0_every_verdict_passes(tmp_path: Path) -> None:
    result = bench_agent(tmp_path, "run", "inventory", "--profile", str(TINY_PROFILE),
                         "--output", "{tmp}/out")
    expect(result, 0)
    assert "PASS - suite inventory" in result.stdout and len(reports(tmp_path / "out")) == 1


@pytest.mark.e2e
def test_1_a_threshold_failed(tmp_path: Path) -> None:
    (tmp_path / "impossible.yaml").write_text(IMPOSSIBLE_PROFILE)
    result = bench_agent(tmp_path, "run", "inventory", "--profile", "{tmp}/impossible.yaml",
                         "--output", "{tmp}/out")
    expect(result, 1)
    assert "FAIL - suite inventory" in result.stdout and len(reports(tmp_path / "out")) == 1


@pytest.mark.e2e
def test_2_a_required_check_could_not_run_and_wins_over_a_fail(tmp_path: Path) -> None:
    (tmp_path / "req.yaml").write_text(REQUIRED_SKIP)
    result = bench_agent(tmp_path, "run", "--suite-file", "{tmp}/req.yaml", "--profile",
                         str(TINY_PROFILE), "--output", "{tmp}/out")
    expect(result, 2)
    assert "required check could not run" in result.stdout
    (tmp_path / "impossible.yaml").write_text(IMPOSSIBLE_PROFILE)
    both = bench_agent(tmp_path, "run", "--suite-file", "{tmp}/req.yaml", "--profile",
                       "{tmp}/impossible.yaml", "--output", "{tmp}/out2")
    expect(both, 2)
    assert " FAIL " in both.stdout and " ERROR " in both.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["run", "no-such-domain"], "'no-such-domain' is not a domain, suite or check"),
        (["run", "cpu.nope"], "'cpu.nope' is not a domain, suite or check"),
        (["run", "cpu", "--profile", "nope"], "--profile: unknown profile 'nope'"),
        (["run", "cpu", "--profile", "{tmp}/missing.yaml"],
         "--profile: {tmp}/missing.yaml: no such profile file"),
        (["run", "--suite-file", "{tmp}/missing.yaml"], "--suite-file {tmp}/missing.yaml: "
                                                        "no such file"),
        (["run", "--suite-file", "{tmp}"], "--suite-file {tmp}: not a file"),
        (["run", "storage", "--target", "/nonexistent"],
         "--target /nonexistent: no such directory"),
        (["report", "show", "/nonexistent"], "report /nonexistent: no such file"),
        (["report", "show", "/nonexistent.jsonl"], "report /nonexistent.jsonl: no such file"),
        (["verify", "/nonexistent", "--pubkey", "/nonexistent.pub"],
         "cannot read /nonexistent.pub"),
        (["keys", "show", "--key", "{tmp}/missing.key"], "no node key at {tmp}/missing.key"),
        (["parse", "fio", "/nonexistent"], "cannot read /nonexistent"),
        (["parse", "notatool", "/dev/null"], "no parser for 'notatool'"),
        (["burnin", "--duration", "1m", "--suite", "nope"], "--suite nope: no such burn-in "
                                                            "suite"),
        (["burnin", "--duration", "1m", "--suite-file", "{tmp}/missing.yaml"],
         "--suite-file {tmp}/missing.yaml: no such file"),
        (["burnin", "--duration", "1m", "--target", "/nonexistent"],
         "--target /nonexistent: no such directory"),
        (["fleet", "compare", "/nonexistent"], "/nonexistent is not a folder"),
    ],
)
def test_3_usage_error(tmp_path: Path, args: list[str], message: str) -> None:
    result = bench_agent(tmp_path, *args, "--output", "{tmp}/out") if args[0] in (
        "run", "burnin") else bench_agent(tmp_path, *args)
    expect(result, 3, message.replace("{tmp}", str(tmp_path)))
    # Refused before anything ran: no report, no series, no test file.
    assert not (tmp_path / "out").exists()


def test_3_verify_of_a_missing_report(tmp_path: Path) -> None:
    assert bench_agent(tmp_path, "keys", "init", "--key", "{tmp}/k").returncode == 0
    pem = bench_agent(tmp_path, "keys", "show", "--key", "{tmp}/k").stdout.split("keyid:")[0]
    (tmp_path / "k.pub").write_text(pem)
    result = bench_agent(tmp_path, "verify", "{tmp}/missing.json", "--pubkey", "{tmp}/k.pub")
    expect(result, 3, f"report {tmp_path}/missing.json: no such file")


@pytest.mark.parametrize(
    ("files", "args", "message"),
    [
        ({"mine.yaml": "name: mine\nchecks:\n  - check: cpu.gemm\n    params: {size: big}\n"},
         ["run", "--suite-file", "{tmp}/mine.yaml"], "{tmp}/mine.yaml: checks[0].params.size"),
        ({"mine.yaml": "name: mine\nprofile: nope\nchecks:\n  - check: inventory\n"},
         ["run", "--suite-file", "{tmp}/mine.yaml"], "unknown profile 'nope'"),
        ({"p.yaml": "name: p\ndescription: x\nthresholds:\n  - id: a\n    metric: "
                    "inventory.memory_total\n    comparator: '>='\n    value: 3 parsecs\n"
                    "    source: x\n"},
         ["run", "inventory", "--profile", "{tmp}/p.yaml"], "{tmp}/p.yaml: thresholds[0].value"),
        ({"b.yaml": "name: b\nloads:\n  quantum: {}\n"},
         ["burnin", "--duration", "1m", "--suite-file", "{tmp}/b.yaml"],
         "loads.quantum: unknown load 'quantum'"),
        # A typo in a load's params (it used to be ignored).
        ({"b.yaml": "name: b\nloads:\n  storage_fio: {sise: 1G}\n"},
         ["burnin", "--duration", "1m", "--suite-file", "{tmp}/b.yaml"],
         "{tmp}/b.yaml: loads.storage_fio.sise: Extra inputs are not permitted"),
    ],
)
def test_4_configuration_error(tmp_path: Path, files: dict[str, str], args: list[str],
                               message: str) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    result = bench_agent(tmp_path, *args, "--output", "{tmp}/out")
    expect(result, 4, "bench-agent: configuration error: ")
    assert message.replace("{tmp}", str(tmp_path)) in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("content", "why"), [("{not json", "not a readable JSON report"),
                                            ('{"schema_version": 99}', "newer than this agent"),
                                            ("[]", "not a JSON object")])
def test_5_a_report_that_cannot_be_read(tmp_path: Path, content: str, why: str) -> None:
    (tmp_path / "r.json").write_text(content)
    result = bench_agent(tmp_path, "report", "show", "{tmp}/r.json")
    expect(result, 5, f"bench-agent: {tmp_path}/r.json: ")
    assert why in result.stderr


def test_5_a_report_that_cannot_be_written_where_it_belongs(tmp_path: Path) -> None:
    """A file where the output folder should be (the full-disk case, with a real
    small tmpfs, is in test_cli_e2e.py): the report is kept in --fallback-dir."""
    (tmp_path / "out").write_text("a file, not a folder")
    result = bench_agent(tmp_path, "run", "inventory", "--profile", str(TINY_PROFILE),
                         "--output", "{tmp}/out", "--fallback-dir", "{tmp}/kept")
    expect(result, 5, "the report was kept as " + str(tmp_path / "kept"))
    assert len(reports(tmp_path / "kept")) == 1


def test_5_a_burnin_whose_series_cannot_be_written_stops_before_any_load(
        tmp_path: Path) -> None:
    (tmp_path / "out").write_text("a file, not a folder")
    result = bench_agent(tmp_path, "burnin", "--duration", "30s", "--output", "{tmp}/out",
                         "--no-plots")
    expect(result, 5, f"cannot write the burn-in series {tmp_path}/out/")


def test_the_readme_table_is_the_one_tested() -> None:
    """Each row of the README's table has its test_<code>_... here, and each of
    those tests checks that code (expect() records it)."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Exit codes", 1)[1].split("\n\n", 2)[1]
    rows = {int(m.group(1)) for m in re.finditer(r"^\| (\d) \|", table, re.MULTILINE)}
    tested = {int(m.group(1)) for name in globals() if (m := re.match(r"test_(\d)_", name))}
    assert rows == tested == {0, 1, 2, 3, 4, 5}


def test_2_an_upload_whose_spool_cannot_be_used_waits_without_a_traceback(
        tmp_path: Path) -> None:
    # The spool's lock file cannot be created (a folder stands in its place).
    spool = tmp_path / "spool"
    (spool / ".upload.lock").mkdir(parents=True)
    result = bench_agent(tmp_path, "upload", "--output", "{tmp}/spool",
                         "--collector", "http://127.0.0.1:9")
    expect(result, 2, f"upload: the spool {spool} cannot be used: ")
