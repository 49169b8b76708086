"""ansible/: the roles and playbooks, run for real on this machine.

`ansible-playbook -i localhost, -c local` deploys the collector and the agent into a
temporary tree (venvs, key, unit files: never /etc or /opt), twice (the second run
must change nothing), then runs acceptance.yml with the quick suite against the
guide's minimum (this small machine must fail, and the play must say why), with the
cpu domain against tests/data/profiles/tiny-node.yaml (it must pass), network-pairs.yml
between two inventory aliases of this machine. A real collector on loopback takes
the enrollments and the uploads. ansible-lint must be clean.

The filters of the role (pairing, durations, report summaries) are tested without
Ansible in test_filters.py. These tests skip cleanly when ansible-playbook is not
installed, and are the `deploy` tier (pyproject.toml): `make test-fast` leaves them out.
"""

from __future__ import annotations

import base64
import configparser
import csv
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.paths import REPO

REPO = REPO
ANSIBLE = REPO / "ansible"
TOKEN = "ansible-test-admin-token-0123456789"
RUN_TIMEOUT = 420


def _tool(name: str) -> str | None:
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


PLAYBOOK = _tool("ansible-playbook")
LINT = _tool("ansible-lint")
pytestmark = pytest.mark.deploy
needs_ansible = pytest.mark.skipif(PLAYBOOK is None, reason="ansible-playbook is not installed "
                                   "(pip install ansible-core)")


# --- the playbooks, on this machine -----------------------------------------------------

_RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)",
                    re.MULTILINE)


@dataclass
class Played:
    rc: int
    output: str
    recap: dict[str, dict[str, int]]

    def describe(self) -> str:
        return f"exit {self.rc}; last output:\n{self.output[-6000:]}"


@dataclass
class Lab:
    root: Path
    vars_file: Path
    env: dict[str, str]
    collector_url: str | None

    def play(self, playbook: str, *extra: str, inventory: str = "localhost,") -> Played:
        cmd = [str(PLAYBOOK), "-i", inventory, "-c", "local", "-e", f"@{self.vars_file}",
               *extra, f"playbooks/{playbook}"]
        proc = subprocess.run(cmd, cwd=ANSIBLE, env=self.env, capture_output=True, text=True,
                              timeout=RUN_TIMEOUT, check=False)
        output = proc.stdout + proc.stderr
        recap = {m[1]: {"ok": int(m[2]), "changed": int(m[3]), "unreachable": int(m[4]),
                        "failed": int(m[5])} for m in _RECAP.finditer(proc.stdout)}
        with (self.root / f"{playbook}.log").open("a") as log:
            log.write(output)
        return Played(proc.returncode, output, recap)


def _snapshot_source(dest: Path) -> Path:
    """The files the wheel is built from, copied: others may edit the tree meanwhile,
    and a changed source would (rightly) make the second deploy change something."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    dest.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, dest / name)
    shutil.copytree(REPO / "bench_agent", dest / "bench_agent", ignore=ignore)
    shutil.copytree(REPO / "suites", dest / "suites", ignore=ignore)
    shutil.copytree(REPO / "results" / "schema", dest / "results" / "schema", ignore=ignore)
    return dest


def _collector_importable() -> bool:
    return all(importlib.util.find_spec(m) is not None
               for m in ("fastapi", "uvicorn", "sqlalchemy"))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if PLAYBOOK is None:
        pytest.skip("ansible-playbook is not installed")
    root = tmp_path_factory.mktemp("ansible")
    collector = None
    if _collector_importable():
        from tests.collector_support import Collector

        (root / "token").write_text(TOKEN + "\n")
        collector = Collector(f"sqlite:///{root / 'collector.db'}", root / "collector.log",
                              "--admin-token-file", str(root / "token"), "--no-access-log")
        collector.start()
    t = root / "tree"
    extra: dict[str, Any] = {
        "ansible_python_interpreter": sys.executable,
        "bench_nodes_hosts": "all", "collector_hosts": "all",
        "bench_agent_source_dir": str(_snapshot_source(root / "src")),
        "bench_agent_local_wheelhouse": str(root / "wheelhouse"),
        "bench_agent_prefix": str(t / "opt/bench-agent"),
        "bench_agent_config_dir": str(t / "etc/bench-agent"),
        "bench_agent_state_dir": str(t / "var/lib/bench-agent"),
        "bench_agent_unit_dir": str(t / "etc/systemd/system"),
        "bench_agent_bash_completion_dir": str(t / "usr/local/share/bash-completion/completions"),
        "bench_agent_zsh_completion_dir": str(t / "usr/local/share/zsh/site-functions"),
        "bench_agent_man_dir": str(t / "usr/local/share/man/man1"),
        "bench_agent_python": sys.executable,
        "bench_agent_install_system_packages": False,
        "bench_agent_fetch_dir": str(root / "fetched"),
        "bench_agent_poll_interval": 2,
        "bench_agent_timer_on_calendar": "*-*-* 04:30:00",
        "bench_agent_timer_randomized_delay": "45min",
        "collector_prefix": str(t / "opt/bench-collector"),
        "collector_state_dir": str(t / "var/lib/bench-collector"),
        "collector_config_dir": str(t / "etc/bench-collector"),
        "collector_unit_dir": str(t / "etc/systemd/system"),
        "collector_python": sys.executable,
        "collector_install_system_packages": False,
        "collector_manage_user": False, "collector_user": "root", "collector_group": "root",
        "collector_admin_token": TOKEN,
    }
    if collector is not None:
        extra |= {"bench_agent_collector_url": collector.url,
                  "bench_agent_collector_admin_token": TOKEN}
    vars_file = root / "vars.json"
    vars_file.write_text(json.dumps(extra, indent=1))
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
           "ANSIBLE_LOCAL_TEMP": str(root / "ansible-tmp"),
           "ANSIBLE_REMOTE_TEMP": str(root / "ansible-tmp"),
           "ANSIBLE_ASYNC_DIR": str(root / "ansible-async"),
           "ANSIBLE_HOME": str(root / "ansible-home"),
           "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    try:
        yield Lab(root, vars_file, env, collector.url if collector else None)
    finally:
        if collector is not None:
            collector.stop()


@pytest.fixture(scope="module")
def deployed(lab: Lab) -> tuple[Played, Played]:
    first = lab.play("deploy.yml")
    assert first.rc == 0, first.describe()
    second = lab.play("deploy.yml")
    return first, second


def _tree(lab: Lab) -> Path:
    return lab.root / "tree"


@needs_ansible
def test_deploy_check_mode_on_a_clean_state(lab: Lab) -> None:
    """Before anything is installed: --check says what would change, and fails on
    nothing (it failed on the wheel it had not built)."""
    played = lab.play("deploy.yml", "--check")
    assert played.rc == 0, played.describe()
    assert played.recap["localhost"]["failed"] == 0, played.describe()
    assert played.recap["localhost"]["changed"] > 0, played.describe()
    assert "expected one bench_agent-" not in played.output
    assert "check mode: the agent or the key is not there yet" in played.output
    tree = _tree(lab)
    # Nothing on the node: no venv, no key, no unit.
    assert not (tree / "opt/bench-agent/venv").exists()
    assert not (tree / "etc/bench-agent/node.key").exists()
    assert not (tree / "etc/systemd/system/bench-agent.service").exists()
    assert "check mode: the agent is not installed yet; the completion" in played.output
    assert not (tree / "etc/systemd/system/bench-agent-health.timer").exists()
    assert not (tree / "usr/local/share").exists()


@needs_ansible
def test_deploy_from_a_clean_state(lab: Lab, deployed: tuple[Played, Played]) -> None:
    first, _ = deployed
    assert first.recap["localhost"]["failed"] == 0, first.describe()
    assert first.recap["localhost"]["changed"] > 0
    tree = _tree(lab)
    agent = tree / "opt/bench-agent/venv/bin/bench-agent"
    assert agent.exists() and (tree / "opt/bench-collector/venv/bin/bench-agent").exists()
    version = subprocess.run([str(agent), "--version"], capture_output=True, text=True,
                             check=True, timeout=60).stdout
    assert version.startswith("bench-agent ")
    key = tree / "etc/bench-agent/node.key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert (tree / "etc/bench-agent").stat().st_mode & 0o777 == 0o700
    token = tree / "etc/bench-collector/admin-token"
    assert token.read_text().strip() == TOKEN and token.stat().st_mode & 0o777 == 0o640
    # the nodes installed from the copied wheelhouse, with no index
    assert list((tree / "opt/bench-agent/wheelhouse").glob("bench_agent-*.whl"))
    assert (tree / "opt/bench-agent/wheelhouse.tar").exists()
    if lab.collector_url:
        assert re.search(r"TASK \[bench_agent : Enroll the key with the collector\][^\n]*\n"
                         r"changed: \[localhost\]", first.output), first.describe()


@needs_ansible
def test_second_deploy_changes_nothing(deployed: tuple[Played, Played]) -> None:
    _, second = deployed
    assert second.rc == 0, second.describe()
    recap = second.recap["localhost"]
    assert (recap["changed"], recap["failed"]) == (0, 0), second.describe()


def _unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None,
                                       comment_prefixes=("#", ";"))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text())
    return parser


@needs_ansible
def test_unit_files(lab: Lab, deployed: tuple[Played, Played]) -> None:
    units = _tree(lab) / "etc/systemd/system"
    tree = _tree(lab)
    timer = _unit(units / "bench-agent.timer")
    assert timer["Timer"]["OnCalendar"] == "*-*-* 04:30:00"
    assert timer["Timer"]["RandomizedDelaySec"] == "45min"
    assert timer["Timer"]["Persistent"] == "true"
    assert timer["Timer"]["Unit"] == "bench-agent.service"
    assert timer["Install"]["WantedBy"] == "timers.target"
    service = _unit(units / "bench-agent.service")
    assert service["Service"]["Type"] == "oneshot"
    argv = service["Service"]["ExecStart"].split()
    assert argv[:3] == [f"{tree}/opt/bench-agent/venv/bin/bench-agent", "run", "quick"]
    assert argv[argv.index("--key") + 1] == f"{tree}/etc/bench-agent/node.key"
    assert argv[argv.index("--output") + 1] == f"{tree}/var/lib/bench-agent/results"
    if lab.collector_url:
        assert argv[argv.index("--upload") + 1] == lab.collector_url
    assert service["Service"]["SuccessExitStatus"] == "1"
    collector = _unit(units / "bench-collector.service")
    cargv = collector["Service"]["ExecStart"].split()
    assert cargv[:3] == [f"{tree}/opt/bench-collector/venv/bin/bench-agent", "collector", "serve"]
    assert cargv[cargv.index("--db") + 1] == f"sqlite:///{tree}/var/lib/bench-collector/collector.db"
    assert cargv[cargv.index("--admin-token-file") + 1] == f"{tree}/etc/bench-collector/admin-token"
    analyze = shutil.which("systemd-analyze")
    if analyze:
        proc = subprocess.run([analyze, "verify", *(str(units / u) for u in (
            "bench-agent.service", "bench-agent.timer", "bench-collector.service"))],
            capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "Unknown" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr


@needs_ansible
def test_the_packaged_completion_man_page_and_units_are_installed(
        lab: Lab, deployed: tuple[Played, Played]) -> None:
    from bench_agent import data

    tree = _tree(lab)
    share = tree / "usr/local/share"
    for installed, shipped in (
            (share / "bash-completion/completions/bench-agent", data.BASH_COMPLETION),
            (share / "zsh/site-functions/_bench-agent", data.ZSH_COMPLETION),
            (share / "man/man1/bench-agent.1", data.MAN_PAGE),
            *((tree / "etc/systemd/system" / unit, data.SYSTEMD / unit) for unit in data.UNITS)):
        assert installed.read_bytes() == shipped.read_bytes(), installed
        assert installed.stat().st_mode & 0o777 == 0o644, installed
    units = tree / "etc/systemd/system"
    agent = f"{tree}/opt/bench-agent/venv/bin/bench-agent"
    health = _unit(units / "bench-agent-health.service.d/ansible.conf")["Service"]
    assert health["WorkingDirectory"] == f"{tree}/var/lib/bench-agent"
    # configparser keeps the last of the two ExecStart= lines: the role's command.
    assert "ExecStart=\n" in (units / "bench-agent-health.service.d/ansible.conf").read_text()
    argv = health["ExecStart"].split()
    assert argv[:2] == [agent, "health"]
    assert argv[argv.index("--key") + 1] == f"{tree}/etc/bench-agent/node.key"
    assert argv[argv.index("--output") + 1] == f"{tree}/var/lib/bench-agent/results"
    assert argv[argv.index("--state") + 1] == f"{tree}/var/lib/bench-agent/health-state.json"
    acceptance = _unit(units / "bench-agent-acceptance.service.d/ansible.conf")["Service"]
    argv = acceptance["ExecStart"].split()
    assert argv[:3] == [agent, "run", "acceptance"]
    if lab.collector_url:
        assert argv[argv.index("--upload") + 1] == lab.collector_url
    # The role's own scheduled run stays beside the packaged units.
    assert (units / "bench-agent.timer").is_file()


def _report_of(envelope: dict[str, Any]) -> dict[str, Any]:
    statement = json.loads(base64.b64decode(envelope["payload"]))
    report: dict[str, Any] = statement["predicate"]
    return report


def _fleet_rows(lab: Lab) -> list[dict[str, str]]:
    with (lab.root / "fetched" / "fleet-verdicts.csv").open() as f:
        return list(csv.DictReader(f))


@needs_ansible
def test_deploy_check_mode_after_a_deploy_changes_nothing(
        lab: Lab, deployed: tuple[Played, Played]) -> None:
    played = lab.play("deploy.yml", "--check")
    assert played.rc == 0, played.describe()
    assert (played.recap["localhost"]["changed"], played.recap["localhost"]["failed"]) == (
        0, 0), played.describe()


@needs_ansible
def test_acceptance_check_mode_claims_no_pass(lab: Lab, deployed: tuple[Played, Played]
                                              ) -> None:
    played = lab.play("acceptance.yml", "--check", "-e", "acceptance_suite=cpu")
    assert played.rc == 0, played.describe()
    assert "check mode: would run `bench-agent run cpu" in played.output, played.describe()
    assert "check mode: no run, so no verdict for 1 node(s)" in played.output
    assert "run(s) passed" not in played.output and "NO REPORT" not in played.output


@needs_ansible
def test_tags_are_listed(lab: Lab) -> None:
    tags: set[str] = set()
    for playbook in ("deploy.yml", "acceptance.yml", "burnin.yml"):
        proc = subprocess.run([str(PLAYBOOK), "-i", "localhost,", "--list-tags",
                               f"playbooks/{playbook}"], cwd=ANSIBLE, env=lab.env,
                              capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        found = re.findall(r"TASK TAGS: \[([^\]]*)\]", proc.stdout)
        assert found, proc.stdout
        tags |= {t.strip() for line in found for t in line.split(",") if t.strip()}
    assert {"install", "keys", "enroll", "run", "upload", "collect"} <= tags, tags


@needs_ansible
def test_only_the_enroll_tag_runs_only_the_enrollment(
        lab: Lab, deployed: tuple[Played, Played]) -> None:
    played = lab.play("deploy.yml", "--tags", "enroll")
    assert played.rc == 0, played.describe()
    tasks = re.findall(r"^TASK \[([^\]]+)\]", played.output, re.MULTILINE)
    assert tasks and all(not t.startswith("collector :") for t in tasks), tasks
    assert "bench_agent : Read the node's public key" in tasks
    assert not any("Install" in t or "wheelhouse" in t.lower() for t in tasks), tasks


@needs_ansible
def test_a_report_the_collector_refuses_fails_the_node_with_the_enroll_command(
        lab: Lab, deployed: tuple[Played, Played]) -> None:
    if not lab.collector_url:
        pytest.skip("needs the collector extra (fastapi, uvicorn, sqlalchemy)")
    # Signed with a key the collector never enrolled: the collector says no.
    stranger = lab.root / "stranger.key"
    profile = REPO / "tests" / "data" / "profiles" / "tiny-node.yaml"
    played = lab.play("acceptance.yml", "-e", "acceptance_suite=inventory",
                      "-e", f"acceptance_profile_file={profile}",
                      "-e", f"bench_agent_key={stranger}",
                      # Its own spool: the refused report waits there for an enrollment,
                      # and would hold back the reports of the tests after this one.
                      "-e", f"bench_agent_output_dir={lab.root / 'stranger-spool'}")
    assert played.rc != 0, played.describe()
    assert played.recap["localhost"]["failed"] == 1, played.describe()
    assert "localhost did not pass: inventory: PASS (exit 0: pass): upload: the collector " \
           "did not accept the report (" in played.output, played.describe()
    assert "bench-agent collector enroll --node " in played.output
    assert "--tags enroll --limit localhost" in played.output
    assert "NOT UPLOADED" in played.output  # the fleet table's line
    assert "0 of 1 run(s) passed, 1 did not" in played.output


@needs_ansible
def test_acceptance_fails_a_small_node_and_says_why(lab: Lab,
                                                     deployed: tuple[Played, Played]) -> None:
    played = lab.play("acceptance.yml", "-e", "acceptance_suite=quick",
                      "-e", "acceptance_profile=guide-minimum")
    assert played.rc != 0, played.describe()
    assert played.recap["localhost"]["failed"] == 1, played.describe()
    assert "localhost did not pass: quick: FAIL" in played.output, played.describe()
    if (os.cpu_count() or 0) < 32:
        assert re.search(r"FAIL inventory\.logical_cpus: \d+ does not meet >= 32",
                         played.output), played.describe()
    assert "0 of 1 run(s) passed, 1 did not" in played.output  # the fleet table
    # The run took many poll intervals (2 s): one quiet wait, no line per poll.
    assert "FAILED - RETRYING" not in played.output
    assert "TASK [bench_agent : Wait quietly for bench-agent quick]" in played.output
    row = _fleet_rows(lab)[0]
    assert (row["node"], row["run"], row["status"], row["exit"]) == (
        "localhost", "quick", "FAIL", "1")
    fetched = Path(row["report"])
    assert fetched.is_relative_to(lab.root / "fetched" / "localhost") and fetched.exists()
    assert "payloadType" in json.loads(fetched.read_text())  # signed
    if lab.collector_url:
        from tests.collector_support import http

        nodes = http("GET", lab.collector_url + "/v1/nodes").json()["nodes"]
        assert [n["last_status"] for n in nodes if n["name"] == socket.gethostname()] == [
            "FAIL"], nodes


@needs_ansible
def test_acceptance_passes_with_a_profile_the_node_meets(
        lab: Lab, deployed: tuple[Played, Played]) -> None:
    profile = REPO / "tests" / "data" / "profiles" / "tiny-node.yaml"
    # The cpu domain (inventory, cpu.gemm, memory.stream) measures every metric
    # tiny-node judges; quick would add its storage checks, 20 s more for a play
    # the test above already ran with quick.
    played = lab.play("acceptance.yml", "-e", "acceptance_suite=cpu",
                      "-e", f"acceptance_profile_file={profile}")
    assert played.rc == 0, played.describe()
    assert played.recap["localhost"]["failed"] == 0
    assert "1 of 1 run(s) passed, 0 did not" in played.output, played.describe()
    row = _fleet_rows(lab)[0]
    assert (row["run"], row["exit"], row["status"]) == ("cpu", "0", "PASS"), row
    report = json.loads(Path(row["report"]).read_text())
    assert "payloadType" in report  # signed, as the quick run's
    judged = {v["metric"]: v["status"] for v in _report_of(report)["verdicts"]}
    assert {judged[m] for m in ("inventory.logical_cpus", "inventory.memory_total",
                                "cpu.gemm_fp64_all_cores", "memory.stream_triad")} == {"PASS"}
    copied = _tree(lab) / "var/lib/bench-agent/profiles/tiny-node.yaml"
    assert copied.read_text() == profile.read_text()


@needs_ansible
def test_network_pairs_between_two_aliases(lab: Lab, deployed: tuple[Played, Played]) -> None:
    inventory = lab.root / "pairs.ini"
    inventory.write_text("".join(
        f"{name} ansible_connection=local bench_agent_peer_address=127.0.0.1\n"
        for name in ("node-a", "node-b")))
    # One short check per direction: network.tcp_latency (sockperf; SKIP where absent).
    played = lab.play("network-pairs.yml", "-e", "network_target=network.tcp_latency",
                      "-e", "network_time_limit=120", inventory=str(inventory))
    assert set(played.recap) == {"node-a", "node-b"}, played.describe()
    assert "step 1: node-a <- node-b; step 2: node-b <- node-a" in played.output
    rows = {r["node"]: r for r in _fleet_rows(lab)}
    assert rows["node-a"]["run"] == "network<-node-b", rows
    assert rows["node-b"]["run"] == "network<-node-a", rows
    for row in rows.values():  # measured (or skipped), never an error or a timeout
        assert row["exit"] in ("0", "1"), played.describe()
        assert played.recap[row["node"]]["failed"] == (row["exit"] != "0")
    assert not (_tree(lab) / "var/lib/bench-agent/peer.pid").exists()


@needs_ansible
def test_burnin_runs_for_its_duration(lab: Lab, deployed: tuple[Played, Played]) -> None:
    played = lab.play("burnin.yml", "-e", "burnin_duration=25s", "-e", "burnin_grace=120",
                      "-e", '{"burnin_extra_args": ["--no-plots"]}')
    row = _fleet_rows(lab)[0]
    assert row["run"] == "burnin 25s", played.describe()
    # Finished within its limit with a judged report: the CPU and storage loads ran
    # (the GPU load SKIPs here); 1 only if this busy machine's load sagged.
    assert row["exit"] in ("0", "1"), played.describe()
    assert played.recap["localhost"]["failed"] == (row["exit"] != "0"), played.describe()
    assert Path(row["report"]).exists()


@needs_ansible
def test_nccl_multinode_passes_the_rendezvous(lab: Lab, deployed: tuple[Played, Played]
                                              ) -> None:
    # One node, no GPU here: the NCCL check SKIPs; the inventory is judged as usual.
    played = lab.play("nccl-multinode.yml", "-e", "gpu_nodes_hosts=all", "-e",
                      "bench_agent_peer_address=127.0.0.1", "-e", "nccl_time_limit=240",
                      "-e", "nccl_rdzv_id=ansible-test")
    row = _fleet_rows(lab)[0]
    assert row["run"] == "nccl x1", played.describe()
    assert row["exit"] in ("0", "1"), played.describe()
    assert played.recap["localhost"]["failed"] == (row["exit"] != "0"), played.describe()


@needs_ansible
def test_every_playbook_parses(lab: Lab) -> None:
    playbooks = sorted(p.name for p in (ANSIBLE / "playbooks").glob("*.yml"))
    assert playbooks == ["acceptance.yml", "burnin.yml", "deploy.yml", "nccl-multinode.yml",
                         "network-pairs.yml"]
    proc = subprocess.run([str(PLAYBOOK), "-i", "localhost,", "--syntax-check",
                           *(f"playbooks/{p}" for p in playbooks)], cwd=ANSIBLE, env=lab.env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.skipif(LINT is None, reason="ansible-lint is not installed (pip install ansible-lint)")
def test_ansible_lint_is_clean(tmp_path: Path) -> None:
    # A copy: ansible-lint keeps a cache (.ansible/) in the project it checks.
    copy = tmp_path / "ansible"
    shutil.copytree(ANSIBLE, copy, ignore=shutil.ignore_patterns(".ansible", "__pycache__"))
    env = {**os.environ, "ANSIBLE_HOME": str(tmp_path / "ansible-home"), "NO_COLOR": "1"}
    proc = subprocess.run([str(LINT), "--offline"], cwd=copy, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_ansible
def test_the_example_inventory_describes_a_cluster(tmp_path: Path) -> None:
    inventory = _tool("ansible-inventory")
    assert inventory is not None
    env = {**os.environ, "ANSIBLE_HOME": str(tmp_path / "ansible-home")}
    proc = subprocess.run([inventory, "-i", "inventory.example.ini", "--list"], cwd=ANSIBLE,
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0 and "WARNING" not in proc.stderr, proc.stderr
    found = json.loads(proc.stdout)

    def hosts(group: str) -> set[str]:
        members = set(found.get(group, {}).get("hosts", []))
        for child in found.get(group, {}).get("children", []):
            members |= hosts(child)
        return members

    racks = [g for g in found if g.startswith("rack_")]
    assert len(racks) >= 2 and all(len(hosts(r)) >= 2 for r in racks)  # pairs in a rack
    assert hosts("gpu_nodes") and hosts("storage_nodes") and len(hosts("collectors")) == 1
    assert hosts("bench_nodes") == hosts("gpu_nodes") | hosts("storage_nodes")
    meta = found["_meta"]["hostvars"]
    assert all("bench_agent_peer_address" in meta[h] for h in hosts("bench_nodes"))
    assert all(meta[h]["acceptance_node_args"] == ["--all-nvme"]
               for h in hosts("storage_nodes"))
