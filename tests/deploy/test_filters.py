"""ansible/: the role's filters (pairing, durations, report summaries, systemd
arguments), tested without Ansible. The playbooks run for real in test_ansible.py."""

from __future__ import annotations

import base64
import csv
import importlib.util
import json
from typing import Any

import pytest

from tests.paths import REPO

FILTERS = REPO / "ansible" / "roles" / "bench_agent" / "filter_plugins" / "bench_agent_filters.py"


def _filters() -> Any:
    spec = importlib.util.spec_from_file_location("bench_agent_filters", FILTERS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("count", range(2, 10))
def test_pair_rounds_are_disjoint_and_everyone_tests(count: int) -> None:
    pair_rounds = _filters().pair_rounds
    hosts = [f"n{i}" for i in range(count)]
    per_round = 2 if count % 2 == 0 else 3  # both ways, plus the left-out node when odd
    for rounds in range(1, count + 2):
        steps = pair_rounds(hosts, rounds)
        assert len(steps) == per_round * min(rounds, count - 1 + count % 2)
        for step in steps:
            busy = [p["server"] for p in step] + [p["client"] for p in step]
            assert len(busy) == len(set(busy)), f"a node twice in one step: {step}"
            assert all(p["server"] != p["client"] for p in step)
        for r in range(0, len(steps), per_round):
            clients = {p["client"] for step in steps[r:r + per_round] for p in step}
            assert clients == set(hosts), f"round {r // per_round}: {clients} tested"
    assert pair_rounds(["solo"], 3) == []
    if count % 2 == 0:  # N-1 rounds: every node has tested every other
        met = {(p["client"], p["server"]) for step in pair_rounds(hosts, count) for p in step}
        assert met == {(a, b) for a in hosts for b in hosts if a != b}


def test_durations() -> None:
    seconds = _filters().duration_seconds
    assert seconds("4h") == 14400
    assert seconds("30m") == 1800
    assert seconds("1h30m") == 5400
    assert seconds("90s") == 90
    assert seconds(45) == 45
    assert seconds("2d") == 172800
    for bad in ("", "soon", "4x", "h"):
        with pytest.raises(ValueError):
            seconds(bad)


def _envelope(report: dict[str, Any]) -> str:
    statement = {"_type": "https://in-toto.io/Statement/v1", "subject": [],
                 "predicateType": "x", "predicate": report}
    return json.dumps({"payloadType": "application/vnd.in-toto+json", "signatures": [],
                       "payload": base64.b64encode(json.dumps(statement).encode()).decode()})


def test_report_summary_and_fleet_table() -> None:
    f = _filters()
    report = {"status": "FAIL", "host": "vm", "suite": {"name": "quick"},
              "profile": {"name": "guide-minimum"}, "verdicts": [
                  {"check": "inventory", "metric": "inventory.logical_cpus", "status": "FAIL",
                   "value": 2, "unit": "count", "threshold": ">= 32",
                   "message": "2 does not meet >= 32"},
                  {"check": "cpu.gemm", "metric": "cpu.gemm_fp64_all_cores", "status": "PASS",
                   "value": 1e11, "unit": "FLOP/s"},
                  {"check": "storage.seqread", "metric": "storage.seqread_1m_bandwidth",
                   "status": "ERROR", "device": "nvme0n1", "message": "fio: no such device"}]}
    signed = f.report_summary(_envelope(report), "quick", 2, "/r.json")
    assert signed == f.report_summary(json.dumps(report), "quick", 2, "/r.json")
    assert signed["counts"] == {"PASS": 1, "WARN": 0, "FAIL": 1, "ERROR": 1, "SKIP": 0}
    assert signed["problems"] == [
        "FAIL inventory.logical_cpus: 2 does not meet >= 32",
        "ERROR storage.seqread_1m_bandwidth [nvme0n1]: fio: no such device"]
    assert f.report_summary("", "quick", 124)["status"] == "NO REPORT"
    passed = f.report_summary(json.dumps({"status": "PASS", "verdicts": []}), "quick", 0)
    hostvars = {"b": {"bench_agent_results": [signed]}, "a": {"bench_agent_results": [passed]},
                "c": {}}
    lines = f.fleet_table(["a", "b", "c"], hostvars)
    assert [line.split()[0] for line in lines if line[:1] in "abc"] == ["c", "b", "a"]
    assert "could not measure" in next(line for line in lines if line.startswith("b"))
    assert lines[-1] == "1 of 3 run(s) passed, 2 did not"
    rows = list(csv.reader(f.fleet_csv(["a", "b"], hostvars).splitlines()))
    assert rows[0][:4] == ["node", "run", "status", "exit"] and rows[2][:4] == [
        "b", "quick", "FAIL", "2"]
    assert "logical_cpus" in f.describe_result(signed)


def test_systemd_args_quote_and_escape() -> None:
    args = _filters().systemd_args
    assert args(["/v/bin/bench-agent", "run", "quick"]) == "/v/bin/bench-agent run quick"
    assert args(["--db", "postgresql://u:p%40ss@h/db"]) == "--db postgresql://u:p%%40ss@h/db"
    assert args(["a b", 'say "x"']) == '"a b" "say \\"x\\""'


def test_upload_outcome_reads_upload_json() -> None:
    outcome = _filters().upload_outcome
    doc = {"exit_code": 1, "summary": "0 delivered, 1 rejected, 0 waiting", "delivered": [],
           "rejected": [{"path": "/r/n/a.json", "reason": "HTTP 401 unknown_key: the key "
                         "is not enrolled"}], "waiting": [], "skipped": [],
           "stopped_because": ""}
    assert outcome(json.dumps(doc)) == {
        "known": True, "exit_code": 1, "stopped_because": "",
        "refused": ["HTTP 401 unknown_key: the key is not enrolled"]}
    stopped = {**doc, "rejected": [], "exit_code": 2, "waiting": ["/r/n/a.json"],
               "stopped_because": "HTTP 401: unknown_key: key be89 is not enrolled"}
    assert outcome(json.dumps(stopped))["refused"] == [
        "HTTP 401: unknown_key: key be89 is not enrolled"]
    down = {**stopped, "stopped_because": "connection refused"}
    assert outcome(json.dumps(down))["refused"] == []
    for garbage in ("", "Traceback (most recent call last):", "[1, 2]"):
        assert outcome(garbage) == {"known": False, "refused": [], "exit_code": None,
                                    "stopped_because": ""}


def _result(rc: int, upload_rc: Any, refused: list[str] | None = None) -> dict[str, Any]:
    return {"label": "quick", "rc": rc, "status": "PASS" if rc == 0 else "FAIL",
            "counts": {"PASS": 3}, "problems": [], "upload_rc": upload_rc,
            "upload": "upload: 0 delivered, 1 rejected, 0 waiting",
            "upload_refused": refused or [], "host": "n1.cluster",
            "enroll_key": "/etc/bench-agent/node.key", "inventory_host": "n1"}


def test_a_refused_upload_fails_a_passing_run_and_names_the_fix() -> None:
    f = _filters()
    refused = _result(0, 1, ["HTTP 401 unknown_key"])
    assert f.did_not_pass(refused)
    assert not f.did_not_pass(_result(0, 0))
    assert not f.did_not_pass(_result(0, None))  # no collector: no upload, no failure
    assert not f.did_not_pass(_result(0, ""))
    assert f.failed_results([_result(0, 0), refused]) == [refused]
    assert f.describe_result(refused) == (
        "quick: PASS (exit 0: pass): upload: the collector did not accept the report "
        "(HTTP 401 unknown_key); enroll the node: on the collector: bench-agent collector "
        "enroll --node n1.cluster --pubkey FILE (FILE: the PEM of `bench-agent keys show "
        "--key /etc/bench-agent/node.key` on n1); or: ansible-playbook playbooks/deploy.yml "
        "--tags enroll --limit n1")
    table = f.fleet_table(["n1", "n2"], {"n1": {"bench_agent_results": [refused]},
                                         "n2": {"bench_agent_results": [_result(0, 0)]}})
    assert table[1].startswith("n1") and table[1].endswith("pass; NOT UPLOADED")
    assert table[2].strip().startswith("upload: the collector did not accept the report")
    assert table[3].startswith("n2") and "NOT UPLOADED" not in table[3]
    assert table[-1] == "1 of 2 run(s) passed, 1 did not"
