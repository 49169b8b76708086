"""Filters of the bench_agent role: pairing schedule, durations, report summaries.

Pure functions, so tests/test_ansible.py can import and test them without Ansible.
They hold no measurement logic: the agent measures and judges; these only arrange
who runs with whom and read back the verdicts the agent wrote.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?", re.IGNORECASE)
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
_STATUSES = ("PASS", "WARN", "FAIL", "ERROR", "SKIP")


def pair_rounds(hosts: list[str], rounds: int = 1) -> list[list[dict[str, str]]]:
    """Steps of disjoint (server, client) pairs in which every host is a client.

    A round is one pairing of the circle method (round-robin tournament): the
    hosts are split into disjoint pairs, and the pair runs twice, once each way,
    so every host measures against a partner once per round while the partner
    serves nothing else. With an odd count the host left out of a round's
    pairing gets an extra step as a client of the round's first server.
    `rounds` is clamped to 1..N-1 (N-1 rounds: every host has met every other).
    """
    hosts = list(dict.fromkeys(str(h) for h in hosts))
    if len(hosts) < 2:
        return []
    players: list[str | None] = [*hosts, None] if len(hosts) % 2 else list(hosts)
    size = len(players)
    rounds = max(1, min(int(rounds), size - 1))
    steps: list[list[dict[str, str]]] = []
    rest = players[1:]
    for r in range(rounds):
        turned = rest[r:] + rest[:r]
        order = [players[0], *turned]
        pairs = [(order[i], order[size - 1 - i]) for i in range(size // 2)]
        real = [(a, b) for a, b in pairs if a is not None and b is not None]
        left_out = [a if a is not None else b for a, b in pairs if a is None or b is None]
        steps.append([{"server": a, "client": b} for a, b in real])
        steps.append([{"server": b, "client": a} for a, b in real])
        for host in left_out:
            if host is not None:
                steps.append([{"server": real[0][0], "client": host}])
    return steps


def duration_seconds(value: Any) -> int:
    """'4h', '30m', '1h30m', '90s', '2d' or a number of seconds -> whole seconds."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        return int(value)
    text = str(value).strip()
    if not text:
        raise ValueError("empty duration")
    total = 0.0
    pos = 0
    for match in _DURATION.finditer(text):
        if text[pos:match.start()].strip():
            break
        unit = match.group(2).lower() if match.group(2) else None
        total += float(match.group(1)) * _SECONDS[unit]
        pos = match.end()
    if text[pos:].strip() or pos == 0:
        raise ValueError(f"not a duration: {value!r} (use e.g. 90s, 30m, 4h, 1h30m)")
    return int(total)


def report_payload(document: Any) -> dict[str, Any]:
    """The report inside a signed DSSE envelope (in-toto Statement), or the report itself."""
    data = json.loads(document) if isinstance(document, str | bytes) else document
    if isinstance(data, dict) and "payload" in data and "payloadType" in data:
        statement = json.loads(base64.b64decode(data["payload"]))
        predicate = statement.get("predicate", {})
        return predicate if isinstance(predicate, dict) else {}
    return data if isinstance(data, dict) else {}


def _value(verdict: dict[str, Any]) -> str:
    value = verdict.get("value")
    if value is None:
        return ""
    unit = verdict.get("unit") or ""
    if isinstance(value, float):
        value = f"{value:.4g}"
    return f" = {value}{(' ' + unit) if unit else ''}"


def report_summary(document: Any, label: str = "", rc: Any = None,
                   report_file: str = "") -> dict[str, Any]:
    """What the fleet table needs from one report: status, counts and the problems."""
    report = report_payload(document) if document else {}
    verdicts = [v for v in report.get("verdicts", []) if isinstance(v, dict)]
    counts = {s: sum(1 for v in verdicts if v.get("status") == s) for s in _STATUSES}
    problems = []
    for v in verdicts:
        if v.get("status") in ("FAIL", "ERROR"):
            name = v.get("metric") or v.get("check", "?")
            device = f" [{v['device']}]" if v.get("device") else ""
            message = v.get("message") or f"{_value(v).lstrip(' =')} {v.get('threshold', '')}"
            problems.append(f"{v['status']} {name}{device}: {message.strip()}".rstrip(": "))
    return {
        "label": label,
        "rc": int(rc) if rc is not None and str(rc).lstrip("-").isdigit() else rc,
        "status": report.get("status", "NO REPORT" if not report else "?"),
        "host": report.get("host", ""),
        "suite": (report.get("suite") or {}).get("name", ""),
        "profile": (report.get("profile") or {}).get("name", ""),
        "counts": counts,
        "problems": problems,
        "report": report_file,
    }


_RC_MEANING = {0: "pass", 1: "a threshold failed", 2: "could not measure or incomplete",
               3: "usage error", 4: "configuration error", 5: "report I/O error",
               124: "time limit exceeded (partial report)", 125: "timeout(1) failed",
               126: "agent not executable", 127: "agent not installed"}


def rc_meaning(rc: Any) -> str:
    try:
        return _RC_MEANING.get(int(rc), f"exit {rc}")
    except (TypeError, ValueError):
        return "no result"


def upload_outcome(stdout: Any) -> dict[str, Any]:
    """What `bench-agent upload --json` said: the collector's refusals (reasons) and
    whether everything was delivered. Not JSON (an older agent, a crash): unknown."""
    try:
        doc = json.loads(stdout) if stdout else None
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        return {"known": False, "refused": [], "exit_code": None, "stopped_because": ""}
    refused = [str(r.get("reason", "")) for r in doc.get("rejected", []) if isinstance(r, dict)]
    # A 401/403 stops the upload with the reports left waiting (upload.py): the
    # collector's answer is the reason, as for a refused report.
    stopped = str(doc.get("stopped_because") or "")
    if not refused and re.search(r"\bHTTP 40[13]\b", stopped):
        refused = [stopped]
    return {"known": True, "refused": refused, "exit_code": doc.get("exit_code"),
            "stopped_because": stopped}


def upload_failed(result: dict[str, Any]) -> bool:
    """The run's report was not accepted: the upload ran and did not deliver all."""
    rc = result.get("upload_rc")
    return rc not in (None, "", "None", 0, "0")


def did_not_pass(result: dict[str, Any]) -> bool:
    """A run that failed, or whose report the collector did not take."""
    return result.get("rc") != 0 or upload_failed(result)


def failed_results(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in results or [] if did_not_pass(r)]


def _upload_problem(result: dict[str, Any]) -> str:
    refused = "; ".join(result.get("upload_refused") or [])
    what = (f"the collector did not accept the report ({refused})" if refused
            else f"the report was not delivered ({result.get('upload') or 'upload failed'})")
    return f"upload: {what}; enroll the node: {enroll_hint(result)}"


def enroll_hint(result: dict[str, Any]) -> str:
    """The commands that enroll the node whose report was refused."""
    node = result.get("host") or result.get("inventory_host") or "NODE"
    host = result.get("inventory_host") or node
    key = result.get("enroll_key") or "KEY"
    return (f"on the collector: bench-agent collector enroll --node {node} --pubkey FILE "
            f"(FILE: the PEM of `bench-agent keys show --key {key}` on {host}); or: "
            f"ansible-playbook playbooks/deploy.yml --tags enroll --limit {host}")


def describe_result(result: dict[str, Any]) -> str:
    """One sentence on a run that did not pass, for the failure message of its host."""
    rc = result.get("rc")
    text = (f"{result.get('label', 'run')}: {result.get('status', '?')} "
            f"(exit {rc}: {rc_meaning(rc)})")
    problems = list(result.get("problems") or [])
    if upload_failed(result):
        problems.append(_upload_problem(result))
    if problems:
        text += ": " + "; ".join(problems)
    tail = [line for line in result.get("stderr_tail") or [] if line.strip()]
    if tail and not problems:
        text += ": " + " | ".join(tail)
    return text


def fleet_table(hosts: list[str], hostvars: Any, fact: str = "bench_agent_results"
                ) -> list[str]:
    """One line per host and run, worst first, then a line per problem, then totals."""
    rows: list[tuple[str, dict[str, Any]]] = []
    for host in hosts:
        results = (hostvars[host].get(fact) if host in hostvars else None) or []
        if not results:
            rows.append((host, {"label": "-", "rc": None, "status": "NO RESULT",
                                "counts": {}, "problems": ["the run did not happen "
                                                           "(unreachable or failed before it)"]}))
        rows.extend((host, r) for r in results)

    def order(row: tuple[str, dict[str, Any]]) -> tuple[int, str]:
        rc = row[1].get("rc")  # no result first, then the failed, then the passed
        return (0 if not isinstance(rc, int) else 1 if did_not_pass(row[1]) else 2, row[0])

    rows.sort(key=order)
    width = max([len(h) for h, _ in rows] + [4])
    lines = [f"{'node':<{width}}  {'run':<16} {'verdict':<9} {'exit':>4}  "
             f"pass warn fail error skip  why"]
    failed = 0
    for host, r in rows:
        c = r.get("counts") or {}
        rc = r.get("rc")
        failed += did_not_pass(r)
        counts = (f"{c.get('PASS', 0):>4} {c.get('WARN', 0):>4} {c.get('FAIL', 0):>4} "
                  f"{c.get('ERROR', 0):>5} {c.get('SKIP', 0):>4}") if c else f"{'-':>25}"
        lines.append(f"{host:<{width}}  {r.get('label', '')!s:<16} "
                     f"{r.get('status', '?')!s:<9} {'-' if rc is None else rc!s:>4}  "
                     f"{counts}  {rc_meaning(rc)}"
                     + ("; NOT UPLOADED" if upload_failed(r) else ""))
        lines.extend(f"{'':<{width}}    {p}" for p in r.get("problems", []))
        if upload_failed(r):
            lines.append(f"{'':<{width}}    {_upload_problem(r)}")
    total = len(rows)
    lines.append(f"{total - failed} of {total} run(s) passed, {failed} did not")
    return lines


def fleet_csv(hosts: list[str], hostvars: Any, fact: str = "bench_agent_results") -> str:
    lines = ["node,run,status,exit,pass,warn,fail,error,skip,report"]
    for host in hosts:
        for r in (hostvars[host].get(fact) if host in hostvars else None) or []:
            c = r.get("counts") or {}
            cells = [host, r.get("label", ""), r.get("status", ""), r.get("rc", ""),
                     *(c.get(s, 0) for s in _STATUSES), r.get("report", "")]
            lines.append(",".join('"' + str(x).replace('"', '""') + '"'
                                  if any(ch in str(x) for ch in ',"\n') else str(x)
                                  for x in cells))
    return "\n".join(lines) + "\n"


def systemd_args(argv: list[Any]) -> str:
    """A command line for ExecStart=: quoted where needed, '%' escaped as '%%'."""
    out = []
    for arg in argv:
        text = str(arg)
        if not text or re.search(r"[\s\"'\\;$`]", text):
            text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        out.append(text.replace("%", "%%"))
    return " ".join(out)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "bench_agent_pair_rounds": pair_rounds,
            "bench_agent_seconds": duration_seconds,
            "bench_agent_report_summary": report_summary,
            "bench_agent_fleet_table": fleet_table,
            "bench_agent_fleet_csv": fleet_csv,
            "bench_agent_describe_result": describe_result,
            "bench_agent_systemd_args": systemd_args,
            "bench_agent_upload_outcome": upload_outcome,
            "bench_agent_failed_results": failed_results,
        }
