"""`bench-agent` as SREs run it: a subprocess, a report on disk, an exit code."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import jsonschema
import pytest

from bench_agent.config.loader import schema_dir
from bench_agent.report.attest import read_report_file
from tests.paths import DATA, REPO

REPO = REPO
DATA = DATA
TINY_SUITE = DATA / "suites" / "tiny-cpu.yaml"
TINY_PROFILE = DATA / "profiles" / "tiny-node.yaml"

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def node_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every run signs with a throwaway key: tests never touch /etc/bench-agent."""
    path = tmp_path / "keys" / "node.key"
    monkeypatch.setenv("BENCH_AGENT_KEY", str(path))
    return path


def bench_agent(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench_agent.cli", *args],
        capture_output=True, text=True, timeout=timeout, cwd=REPO,
    )


def only_report_file(output: Path) -> Path:
    files = list(output.glob("*/*.json"))
    assert len(files) == 1, files
    return files[0]


def only_report(output: Path) -> dict[str, object]:
    data, envelope = read_report_file(only_report_file(output))
    assert envelope is not None, "bench-agent run signs every report by default"
    schema = json.loads((schema_dir() / "report-v1.schema.json").read_text())
    jsonschema.validate(data, schema)
    assert isinstance(data, dict)
    return data


def test_run_cpu_as_written_writes_a_valid_report(tmp_path: Path) -> None:
    """`bench-agent run cpu --output DIR` with the shipped cpu suite and guide profile."""
    result = bench_agent("run", "cpu", "--output", str(tmp_path))
    report = only_report(tmp_path)
    assert report["suite"]["name"] == "cpu"  # type: ignore[index]
    assert report["profile"]["name"] == "guide-minimum"  # type: ignore[index]
    units = {m["metric"]: m["unit"] for m in report["measurements"]}  # type: ignore[attr-defined]
    assert units["cpu.gemm_fp64_all_cores"] == "FLOP/s"
    assert units["cpu.gemm_fp32_one_core"] == "FLOP/s"
    assert units["memory.stream_triad"] == "bytes/s"
    assert units["inventory.memory_total"] == "bytes"
    for m in report["measurements"]:  # type: ignore[attr-defined]
        assert m["value"] >= 0
    # The exit code follows the report's status, whatever the machine.
    expected = {"PASS": 0, "WARN": 0, "SKIP": 0, "FAIL": 1, "ERROR": 2}[str(report["status"])]
    assert result.returncode == expected, result.stderr
    # A node under the guide minimum (32 vCPUs, 128 GB) must fail.
    cpus = os.cpu_count() or 0
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if cpus < 32 or ram < 128e9:
        assert report["status"] == "FAIL"
    line = next(x for x in result.stdout.splitlines() if x.startswith("report: "))
    path = Path(line.removeprefix("report: ").removesuffix(" (signed)"))
    assert path.parent.parent == tmp_path


def test_run_with_a_profile_the_node_meets_passes(tmp_path: Path) -> None:
    result = bench_agent("run", "--suite-file", str(TINY_SUITE), "--profile", str(TINY_PROFILE),
                         "--output", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    report = only_report(tmp_path)
    statuses = {v["metric"]: v["status"] for v in report["verdicts"]}  # type: ignore[attr-defined]
    assert statuses == {
        "inventory.logical_cpus": "PASS",
        "inventory.memory_total": "PASS",
        "cpu.gemm_fp64_all_cores": "PASS",
        "memory.stream_triad": "PASS",
        # The loader adds the uniformity rule to every profile (config/expected.py);
        # this suite does not run config.consistency, so it is shown, unjudged.
        "config.nonuniform": "SKIP",
    }
    # The plain (non-terminal) table names the check, metric, value, threshold and status.
    table = result.stdout
    assert "tiny-cpu" in table
    assert "memory.stream_triad" in table and ">= 50 MB/s" in table


def test_run_with_a_profile_the_node_cannot_meet_fails_with_the_threshold(
    tmp_path: Path,
) -> None:
    result = bench_agent("run", "--suite-file", str(TINY_SUITE), "--profile",
                         "guide-high-performance", "--output", str(tmp_path))
    assert result.returncode == 1, result.stderr
    failing = [line for line in result.stdout.splitlines()
               if "inventory.logical_cpus" in line]
    assert len(failing) == 1
    assert ">= 96" in failing[0] and "FAIL" in failing[0]
    assert "High-Performance: 96+ vCPUs" in failing[0]


def test_json_output_is_the_report(tmp_path: Path) -> None:
    result = bench_agent("run", "inventory", "--profile", str(TINY_PROFILE), "--json",
                         "--output", str(tmp_path))
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed == only_report(tmp_path)


OLD_REPORTS = DATA / "reports"  # written before the typed inventory (their README.md)


@pytest.mark.parametrize(("name", "code", "status"),
                         [("v1-untyped-inventory.signed.json", 0, "PASS"),
                          ("v1-untyped-inventory-vm.json", 1, "FAIL")])
def test_report_show_and_verify_read_a_report_written_before_the_typed_inventory(
        name: str, code: int, status: str) -> None:
    path = OLD_REPORTS / name
    shown = bench_agent("report", "show", str(path))
    assert shown.returncode == code, shown.stderr
    assert f"vm: {status} - suite inventory, profile guide-minimum" in shown.stdout
    assert "inventory.logical_cpus" in shown.stdout
    as_json = bench_agent("report", "show", str(path), "--format", "json")
    assert as_json.returncode == code, as_json.stderr
    data = json.loads(as_json.stdout)
    # Written again by this agent: the inventory in its typed form, its facts unchanged.
    assert data["inventory"]["schema_version"] == 2
    old, _ = read_report_file(path)
    assert data["inventory"]["disks"] == old["inventory"]["disks"]
    jsonschema.validate(data, json.loads((schema_dir() / "report-v1.schema.json").read_text()))
    if name.endswith(".signed.json"):
        verified = bench_agent("verify", str(path), "--pubkey",
                               str(OLD_REPORTS / "v1-untyped-inventory.pub.pem"))
        assert verified.returncode == 0, verified.stderr
        assert verified.stdout.startswith("verified: subject vm sha256:")


def test_inventory_json_is_the_typed_inventory() -> None:
    sysroot = DATA / "sysroots" / "dual-socket-nvme-ib"
    result = bench_agent("inventory", "--json", "--sysroot", str(sysroot))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["schema_version"] == 2
    assert [d["name"] for d in data["disks"]] == [
        "nvme0n1", "nvme1n1", "nvme2n1", "nvme3n1", "sda"]
    shown = bench_agent("inventory", "--sysroot", str(sysroot))
    assert "host     dual-socket-nvme-ib\n" in shown.stdout
    assert "ib       mlx5_0/1: 4: ACTIVE, 400 Gb/sec (4X NDR), InfiniBand\n" in shown.stdout


def test_nnodes_below_one_is_a_usage_error(tmp_path: Path) -> None:
    """Before: --nnodes 0 was read as 1 without a word (``or 1``)."""
    result = bench_agent("run", "inventory", "--nnodes", "0", "--output", str(tmp_path))
    assert result.returncode == 3
    assert "--nnodes 0: needs at least one node" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_report_show_reads_a_report_back(tmp_path: Path) -> None:
    bench_agent("run", "inventory", "--profile", str(TINY_PROFILE), "--output", str(tmp_path))
    file = next(tmp_path.glob("*/*.json"))
    shown = bench_agent("report", "show", str(file))
    assert shown.returncode == 0
    assert "inventory.logical_cpus" in shown.stdout and "PASS" in shown.stdout
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    bad = bench_agent("report", "show", str(garbage))
    assert bad.returncode == 5
    assert "not a readable JSON report" in bad.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["run", "no-such-domain"], 3, "'no-such-domain' is not a domain, suite or check"),
        (["run", "cpu", "--profile", "nope"], 3, "unknown profile 'nope'"),
        (["frobnicate"], 3, "invalid choice"),
        (["parse", "notatool", "/dev/null"], 3, "no parser for 'notatool'"),
    ],
)
def test_usage_and_config_errors_have_their_exit_codes(
    args: list[str], code: int, message: str
) -> None:
    result = bench_agent(*args)
    assert result.returncode == code
    assert message in result.stderr


def test_bad_suite_file_is_a_config_error_naming_file_and_key(tmp_path: Path) -> None:
    suite = tmp_path / "mine.yaml"
    suite.write_text("name: mine\nchecks:\n  - check: cpu.gemm\n    params: {size: big}\n")
    result = bench_agent("run", "--suite-file", str(suite))
    assert result.returncode == 4
    assert f"{suite}: checks[0].params.size" in result.stderr


def _default_sigint() -> None:
    # A shell that starts the test run in the background ("pytest &" in a script)
    # makes it, and so the agent, ignore SIGINT (POSIX sh, "Asynchronous Lists"),
    # and an ignored SIGINT stays ignored in Python: the agent would run on. The
    # agent under test gets Ctrl-C's usual meaning back.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _workers_of(parent: int) -> list[int]:
    """The agent's live `bench_agent.run.worker` children."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if (fields[0] not in "ZX" and int(fields[1]) == parent
                and b"bench_agent.run.worker" in cmdline):
            found.append(int(entry.name))
    return found


def test_sigint_stops_the_run_and_writes_a_partial_report(tmp_path: Path) -> None:
    suite = tmp_path / "long.yaml"
    suite.write_text(
        "name: long\nchecks:\n  - check: inventory\n  - check: cpu.gemm\n"
        "    timeout: 300s\n    params: {size: 4096, repetitions: 200}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench_agent.cli", "run", "--suite-file", str(suite),
         "--output", str(tmp_path / "out")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        preexec_fn=_default_sigint,
    )
    workers: list[int] = []
    try:
        assert proc.stderr is not None
        # Wait for a real state: the GEMM check started and its worker runs.
        for line in proc.stderr:
            if "cpu.gemm ..." in line:
                break
        deadline = time.monotonic() + 120
        while not (workers := _workers_of(proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert workers, "the cpu.gemm worker never started"
        proc.send_signal(signal.SIGINT)  # the agent alone: the worker has its own session
        stdout, _ = proc.communicate(timeout=120)
        # The agent stopped its worker before it wrote the report and exited.
        assert [pid for pid in workers if Path(f"/proc/{pid}").exists()
                and Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] not in "ZX"] == []
    finally:
        if proc.poll() is None:
            proc.kill()  # its worker dies with it (parent-death signal)
            proc.wait(timeout=30)
        for pid in workers:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 2
    report = only_report(tmp_path / "out")
    assert report["interrupted"] is True
    assert report["status"] == "ERROR"
    verdicts = {v["check"]: v for v in report["verdicts"]}  # type: ignore[attr-defined]
    assert verdicts["cpu.gemm"]["status"] == "ERROR"
    assert "interrupted" in verdicts["cpu.gemm"]["message"]
    assert any(m["metric"] == "inventory.logical_cpus"
               for m in report["measurements"])  # type: ignore[attr-defined]
    assert "INTERRUPTED" in stdout


def test_help_imports_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "from bench_agent.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = {'torch', 'pandas', 'numpy', 'fastapi', 'uvicorn', 'sqlalchemy', 'rich',"
        " 'pydantic', 'yaml', 'pynvml'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=REPO, timeout=60)
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_wheel_ships_suites_profiles_and_schema(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(REPO)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    wheel = next(tmp_path.glob("bench_agent-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "bench_agent/_data/suites/quick.yaml",
        "bench_agent/_data/suites/acceptance.yaml",
        "bench_agent/_data/suites/profiles/guide-minimum.yaml",
        "bench_agent/_data/suites/profiles/guide-high-performance.yaml",
        "bench_agent/_data/schema/report-v1.schema.json",
    ):
        assert expected in names


PAGE = 4096


def mount_small_tmpfs(mount_point: Path, free_pages: int) -> None:
    """A 64 KiB tmpfs with exactly ``free_pages`` pages left: a real ENOSPC (root)."""
    mount_point.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs",
                              str(mount_point)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    fd = os.open(mount_point / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while os.statvfs(mount_point).f_bavail > free_pages:
            os.write(fd, b"\0" * PAGE)
    except OSError:
        pass
    finally:
        os.close(fd)
    assert os.statvfs(mount_point).f_bavail == free_pages


@pytest.fixture
def small_disks(tmp_path: Path) -> Iterator[Callable[[str, int], Path]]:
    """small_disks(name, free_pages) mounts one; all are unmounted afterwards."""
    mounted: list[Path] = []

    def make(name: str, free_pages: int) -> Path:
        point = tmp_path / name
        mounted.append(point)
        mount_small_tmpfs(point, free_pages)
        return point

    try:
        yield make
    finally:
        for point in reversed(mounted):
            subprocess.run(["umount", str(point)], check=False)


def bench_agent_seeing(var_tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """bench-agent in a private mount namespace where /var/tmp is ``var_tmp``
    (and no $XDG_RUNTIME_DIR): the fallback places under test's control, the
    host's /var/tmp untouched. The namespace ends with the process."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    command = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
               'mount --bind "$1" /var/tmp && shift && exec "$@"', "sh", str(var_tmp),
               sys.executable, "-m", "bench_agent.cli", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO,
                            env=env)
    if "unshare failed" in result.stderr or "mount: " in result.stderr:
        pytest.skip(f"no private mount namespace here: {result.stderr.strip()}")
    return result


def leftovers(disk: Path) -> list[Path]:
    return [p for p in disk.rglob("*") if p.is_file() and p.name != "filler"]


def test_full_disk_keeps_report_junit_and_prom_in_the_fallback_dir(
    tmp_path: Path, small_disks: Callable[[str, int], Path],
) -> None:
    full = small_disks("full", 0)
    fallback = tmp_path / "fallback"
    result = bench_agent("run", "inventory", "--profile", str(TINY_PROFILE), "--output",
                         str(full), "--junit", str(full / "acceptance.xml"), "--prom",
                         str(full / "bench_agent.prom"), "--fallback-dir", str(fallback))
    assert result.returncode == 5, result.stderr
    report_file = only_report_file(fallback)
    data, envelope = read_report_file(report_file)
    assert envelope is not None and data["status"] == "PASS"
    assert ET.parse(fallback / "acceptance.xml").getroot().get("tests") == str(
        len(data["verdicts"]))
    assert 'bench_agent_run_status{status="PASS"} 1' in (
        fallback / "bench_agent.prom").read_text()
    assert f"cannot write {full}/" in result.stderr and "No space left on device" in result.stderr
    assert f"the report was kept as {report_file} (signed), not in {full}" in result.stderr
    assert (f"the --junit file was kept as {fallback / 'acceptance.xml'}, not "
            f"{full / 'acceptance.xml'}") in result.stderr
    assert (f"the --prom file was kept as {fallback / 'bench_agent.prom'}, not "
            f"{full / 'bench_agent.prom'}") in result.stderr
    assert "inventory.logical_cpus" in result.stdout  # the verdicts are shown too
    assert f"report: {report_file} (signed)" in result.stdout.splitlines()
    assert leftovers(full) == []  # no half-written file, no temp file
    assert "Traceback" not in result.stderr


def test_full_disk_without_fallback_dir_keeps_the_report_in_var_tmp(
    tmp_path: Path, small_disks: Callable[[str, int], Path],
) -> None:
    full = small_disks("full", 0)
    var_tmp = tmp_path / "var-tmp"
    var_tmp.mkdir()
    result = bench_agent_seeing(var_tmp, "run", "inventory", "--profile", str(TINY_PROFILE),
                                "--output", str(full))
    assert result.returncode == 5, result.stderr
    kept = only_report_file(var_tmp / "bench-agent")
    shown = Path("/var/tmp/bench-agent") / kept.relative_to(var_tmp / "bench-agent")
    assert f"the report was kept as {shown} (signed)" in result.stderr
    assert read_report_file(kept)[1] is not None
    assert leftovers(full) == []


def test_no_room_for_the_full_report_anywhere_keeps_a_compact_unsigned_copy(
    tmp_path: Path, small_disks: Callable[[str, int], Path],
) -> None:
    # A fixed sysroot makes the report's size the same on every machine; a first
    # run measures it: the output disk gets room for the compact copy only.
    # The dual-socket tree: a report large enough that the compact copy's page
    # rounding leaves the signed one out (the VM's is within a page of it).
    sysroot = DATA / "sysroots" / "dual-socket-nvme-ib"
    common = ["run", "inventory", "--sysroot", str(sysroot), "--profile", str(TINY_PROFILE)]
    probe = bench_agent(*common, "--output", str(tmp_path / "probe"))
    assert probe.returncode == 0, probe.stderr
    signed = only_report_file(tmp_path / "probe")
    compact_size = len(json.dumps(read_report_file(signed)[0], separators=(",", ":"))) + 1
    room = -(-compact_size // PAGE)
    assert signed.stat().st_size > room * PAGE, "the full report would fit: no test"
    output = small_disks("output", room)
    var_tmp = small_disks("var-tmp", 0)
    result = bench_agent_seeing(var_tmp, *common, "--output", str(output))
    assert result.returncode == 5, result.stderr
    [copy] = leftovers(output)
    assert copy.name.endswith(".unsigned.json")
    data, envelope = read_report_file(copy)
    assert envelope is None and data["status"] == "PASS"
    jsonschema.validate(data, json.loads((schema_dir() / "report-v1.schema.json").read_text()))
    assert "cannot write /var/tmp/bench-agent/" in result.stderr
    assert (f"the report was kept as {copy} (UNSIGNED compact copy: the full report did not "
            f"fit anywhere)") in result.stderr
    assert leftovers(var_tmp) == []


def test_no_room_at_all_is_a_clear_error_and_the_table_is_shown(
    tmp_path: Path, small_disks: Callable[[str, int], Path],
) -> None:
    full = small_disks("full", 0)
    var_tmp = small_disks("var-tmp", 0)
    result = bench_agent_seeing(var_tmp, "run", "inventory", "--no-sign", "--profile",
                                str(TINY_PROFILE), "--output", str(full))
    assert result.returncode == 5
    assert "No space left on device" in result.stderr
    assert "the report could not be written anywhere (tried " in result.stderr
    assert "inventory.logical_cpus" in result.stdout
    assert leftovers(full) == [] and leftovers(var_tmp) == []
    assert "Traceback" not in result.stderr


def test_unusable_key_writes_the_report_unsigned_and_says_so(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the key's folder should be")
    result = bench_agent("run", "inventory", "--profile", str(TINY_PROFILE), "--key",
                         str(blocker / "node.key"), "--output", str(tmp_path / "out"))
    assert result.returncode == 5
    assert "cannot sign the report" in result.stderr
    files = list((tmp_path / "out").glob("*/*.unsigned.json"))
    assert len(files) == 1
    assert json.loads(files[0].read_text())["schema_version"] == 1
    assert "UNSIGNED: signing failed" in result.stdout


# --- as people see it: a terminal, a pipe -----------------------------------------

HOSTILE = "[results]/<b>ü"  # brackets (rich markup), a slash, HTML, unicode
TINY_STORAGE = """\
name: tiny-storage
checks:
  - check: inventory
    timeout: 60s
  - check: storage.seqread
    timeout: 60s
    params: {size: 4MiB, runtime: 1s, ramp_time: 0s}
"""


def on_a_terminal(*args: str) -> subprocess.CompletedProcess[str]:
    """bench-agent on a real pseudo-terminal (util-linux script): stdout and stderr
    are the terminal, as for a person at a console; -e passes the exit code on."""
    if shutil.which("script") is None:
        pytest.skip("script (util-linux) is not installed")
    command = shlex.join([sys.executable, "-m", "bench_agent.cli", *args])
    # rich takes the width from $COLUMNS: wide enough that no name is folded.
    return subprocess.run(["script", "-qec", command, "/dev/null"], capture_output=True,
                          text=True, timeout=300, cwd=REPO, env={**os.environ, "COLUMNS": "400"},
                          stdin=subprocess.DEVNULL)


def into_head(*args: str, both: bool = False) -> tuple[int, str, str]:
    """bench-agent's stdout (and stderr with ``both``) into a real pipe to `head -1`:
    (bench-agent's exit code, what head printed, bench-agent's stderr)."""
    agent = subprocess.Popen([sys.executable, "-m", "bench_agent.cli", *args], cwd=REPO,
                             stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT if both else subprocess.PIPE, text=True)
    assert agent.stdout is not None
    head = subprocess.Popen(["head", "-1"], stdin=agent.stdout, stdout=subprocess.PIPE,
                            text=True)
    agent.stdout.close()  # head holds the only reading end: when it exits, EPIPE
    try:
        shown, _ = head.communicate(timeout=300)
        stderr = agent.stderr.read() if agent.stderr else ""
        return agent.wait(timeout=300), shown, stderr
    finally:
        for proc in (agent, head):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def hostile_output(tmp_path: Path) -> Path:
    output = tmp_path / "x" / HOSTILE
    output.mkdir(parents=True)
    return output


def test_run_on_a_terminal_shows_paths_with_brackets_and_html(
    tmp_path: Path, hostile_output: Path,
) -> None:
    if shutil.which("fio") is None:
        pytest.skip("fio is not installed: the storage check would not name its target")
    suite = tmp_path / "tiny-storage.yaml"
    suite.write_text(TINY_STORAGE)
    result = on_a_terminal("run", "--suite-file", str(suite), "--profile", str(TINY_PROFILE),
                           "--output", str(hostile_output), "--target", str(hostile_output))
    assert result.returncode == 0, result.stdout
    assert "Traceback" not in result.stdout and "MarkupError" not in result.stdout
    report = only_report_file(hostile_output)
    # The storage rows name their target as it is written: "[/tmp/...]" was
    # read as a closing tag before.
    assert f"storage.seqread_1m_bandwidth [{hostile_output}]" in result.stdout
    assert f"report: {report} (signed)" in result.stdout
    shown = on_a_terminal("report", "show", str(report))
    assert shown.returncode == 0, shown.stdout
    assert f"storage.seqread_1m_bandwidth [{hostile_output}]" in shown.stdout


def test_run_piped_into_head_writes_the_report_and_keeps_the_exit_code(
    hostile_output: Path,
) -> None:
    code, shown, stderr = into_head("run", "inventory", "--profile", str(TINY_PROFILE),
                                    "--output", str(hostile_output))
    assert code == 0, stderr
    assert shown.startswith(": PASS - suite inventory, profile tiny-node", shown.index(":"))
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr
    only_report(hostile_output)


def test_run_with_progress_piped_into_head_writes_the_report(tmp_path: Path) -> None:
    """`run 2>&1 | head -1`: the first progress line is all head takes; the other
    progress lines, the table and every message meet a closed pipe."""
    output = tmp_path / "out"
    code, shown, _ = into_head("run", "--suite-file", str(TINY_SUITE), "--profile",
                               "guide-high-performance", "--output", str(output), both=True)
    report = only_report(output)
    assert code == {"FAIL": 1, "ERROR": 2}[str(report["status"])]
    assert shown == "[1/3] inventory ... (time limit 1:00)\n"


def test_report_show_piped_into_head_keeps_the_exit_code(tmp_path: Path) -> None:
    """A table much longer than a pipe holds (64 KiB): the write meets the closed
    pipe for certain, whatever the timing."""
    from bench_agent.core.inventory import Inventory
    from bench_agent.core.model import Measurement, NamedDigest, Report, Status, Verdict
    from bench_agent.core.units import Unit

    report = Report(
        report_id="r", agent_version="0", host="node", inventory=Inventory(),
        suite=NamedDigest("s", "0" * 64, ""), profile=NamedDigest("p", "0" * 64, ""),
        started_at="2026-01-01T00:00:00Z", finished_at="2026-01-01T00:00:01Z",
        measurements=[Measurement("storage.seqread", "storage.seqread_1m_bytes_per_second",
                                  float(i + 1), Unit.BYTES_PER_SECOND, device=f"[dev{i}]")
                      for i in range(3000)],
        verdicts=[Verdict("inventory", Status.FAIL, message="too small")],
    )
    file = tmp_path / "long.json"
    file.write_text(report.to_json())
    code, shown, stderr = into_head("report", "show", str(file))
    assert code == 1, stderr
    assert shown == "node: FAIL - suite s, profile p\n"
    assert stderr == ""


def test_burnin_piped_into_head_writes_the_report(tmp_path: Path, hostile_output: Path) -> None:
    suite = tmp_path / "burnin-test.yaml"
    suite.write_text("name: burnin-test\ninterval: 1s\nloads:\n  cpu_matmul: {size: 64}\n")
    code, shown, _ = into_head("burnin", "--duration", "3s", "--suite-file", str(suite),
                               "--output", str(hostile_output), "--no-plots", both=True)
    report = only_report(hostile_output)
    assert code == {"PASS": 0, "WARN": 0, "FAIL": 1, "ERROR": 2}[str(report["status"])]
    assert shown == "burn-in burnin-test for 3s: loads cpu_matmul, sampling every 1 s\n"
    assert len(list(hostile_output.glob("*/*.jsonl"))) == 1


def test_fallback_places_in_order() -> None:
    from bench_agent.cli.main import fallback_dirs

    assert fallback_dirs(Path("/mnt/spare"), {"XDG_RUNTIME_DIR": "/run/user/0"}) == [
        Path("/mnt/spare"), Path("/var/tmp/bench-agent"), Path("/run/user/0/bench-agent")]
    assert fallback_dirs(None, {}) == [Path("/var/tmp/bench-agent")]
    assert fallback_dirs(Path("/var/tmp/bench-agent"), {}) == [Path("/var/tmp/bench-agent")]


def test_run_into_a_pipe_nobody_reads_writes_the_report(tmp_path: Path) -> None:
    """The reader is gone before the first byte (`| true` that already exited):
    every write to stdout fails with EPIPE, deterministically."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "bench_agent.cli", "run", "inventory", "--profile",
             str(TINY_PROFILE), "--output", str(tmp_path / "out")],
            stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=300, cwd=REPO)
    finally:
        os.close(write_end)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr
    assert only_report(tmp_path / "out")["status"] == "PASS"
