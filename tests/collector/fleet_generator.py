"""A generated fleet written straight into the collector's tables, for the 10,000-node
browser test and benchmarks/bench_collector_fleet.py.

Signing and verifying 300,000 reports would take minutes of CPU for nothing these
tests look at (the fleet page reads the normalized rows, never the envelopes), so
the rows are inserted as ingest would leave them: nodes, reports, measurements,
verdicts (with fault codes), node_results, states, labels. Every report row holds
one real signed envelope (a template) so that a report page can still be opened.
The mix is fixed by a seed: about 2 % of nodes FAIL acceptance with a fault code,
1 % ERROR, 3 % are stale, and some are named with HTML.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert

from bench_agent.collector import db
from bench_agent.report.attest import NodeKey
from tests.collector_support import envelope_bytes, make_report

GPU_MODELS = ("NVIDIA H100 80GB HBM3", "NVIDIA H200", "NVIDIA A100-SXM4-80GB")
FAULTS = ("BA-GPU-XID-79", "BA-GPU-ECC-DBE", "BA-NET-IB-DOWN", "BA-STORAGE-SLOW")
HTML_NAME = "<img src=x onerror=alert(1)>-node"


@dataclass(frozen=True)
class Generated:
    nodes: int
    reports: int
    failing: list[str]          # names of nodes whose acceptance FAILs
    by_fault: dict[str, list[str]]
    by_gpu: dict[str, int]
    html_names: list[str]


def generate(database: db.Database, nodes: int, reports_per_node: int, now: datetime,
             seed: int = 17) -> Generated:
    rng = random.Random(seed)
    template = envelope_bytes(make_report("template"), NodeKey.generate())
    failing: list[str] = []
    by_fault: dict[str, list[str]] = {f: [] for f in FAULTS}
    by_gpu: dict[str, int] = {g: 0 for g in GPU_MODELS}
    html_names: list[str] = []
    node_rows, report_rows, measurement_rows, verdict_rows = [], [], [], []
    result_rows, label_rows, key_rows = [], [], []
    report_id = 0
    for n in range(1, nodes + 1):
        name = f"gpu-{n:05d}"
        if n % 2500 == 7:
            name = f"{HTML_NAME}{n}"
            html_names.append(name)
        gpu = GPU_MODELS[n % len(GPU_MODELS)]
        by_gpu[gpu] += 1
        roll = rng.random()
        fails, errors, stale = roll < 0.02, 0.02 <= roll < 0.03, 0.03 <= roll < 0.06
        fault = FAULTS[n % len(FAULTS)] if fails else ""
        if fails:
            failing.append(name)
            by_fault[fault].append(name)
        newest: dict[str, tuple[int, str, datetime]] = {}
        for i in range(reports_per_node):
            report_id += 1
            suite = ("acceptance", "burnin", "quick")[i % 3]
            age = timedelta(days=40 if stale else 0, hours=reports_per_node - i, minutes=n % 60)
            finished = now - age
            status = "PASS"
            last_acceptance = suite == "acceptance" and i >= reports_per_node - 3
            if last_acceptance and fails:
                status = "FAIL"
            elif suite == "quick" and i >= reports_per_node - 3 and errors:
                status = "ERROR"
            gemm = 2e11 if status == "FAIL" else 1.2e12 + rng.random() * 1e11
            report_rows.append({
                "id": report_id, "digest": hashlib.sha256(f"{name}/{i}".encode()).hexdigest(),
                "report_uuid": str(uuid.UUID(int=rng.getrandbits(128))), "node_id": n,
                "keyid": "0" * 64, "status": status, "suite": suite,
                "profile": "guide-minimum", "agent_version": "0.1.0", "interrupted": False,
                "started_at": finished - timedelta(minutes=5), "finished_at": finished,
                "received_at": finished, "envelope": template, "gpu_model": gpu})
            measurement_rows += [
                {"report_id": report_id, "check_name": "cpu-gemm",
                 "metric": "cpu.gemm_fp64_all_cores", "device": "", "value": gemm,
                 "unit": "FLOP/s", "unstable": False},
                {"report_id": report_id, "check_name": "cpu-stream",
                 "metric": "memory.stream_triad", "device": "", "value": 8e10,
                 "unit": "bytes/s", "unstable": False}]
            verdict_rows += [
                {"report_id": report_id, "check_name": "cpu-gemm",
                 "metric": "cpu.gemm_fp64_all_cores", "device": "", "status":
                 "FAIL" if status == "FAIL" else "PASS", "value": gemm, "unit": "FLOP/s",
                 "threshold": ">= 1 TFLOP/s", "source": "guide 3.1", "message": "",
                 "fault_code": fault if status == "FAIL" else "", "component": "",
                 "remediation": "reset-gpu" if status == "FAIL" else "", "attempts": 1,
                 "flaky": False},
                {"report_id": report_id, "check_name": "gpu-burn" if status == "ERROR"
                 else "cpu-stream", "metric": "" if status == "ERROR"
                 else "memory.stream_triad", "device": "",
                 "status": "ERROR" if status == "ERROR" else "PASS",
                 "value": None if status == "ERROR" else 8e10,
                 "unit": None if status == "ERROR" else "bytes/s",
                 "threshold": "" if status == "ERROR" else ">= 50 GB/s", "source": "",
                 "message": "nvml: no driver" if status == "ERROR" else "", "fault_code": "",
                 "component": "", "remediation": "", "attempts": 1, "flaky": False}]
            newest[suite] = (report_id, status, finished)
        for suite, (rid, status, finished) in newest.items():
            result_rows.append({"node_id": n, "suite": suite, "profile": "guide-minimum",
                                "report_id": rid, "status": status, "finished_at": finished})
        last_id, last_status, last_at = max(newest.values(), key=lambda v: v[2])
        state = "quarantined" if fails else ("in-service" if n % 3 else "accepted")
        node_rows.append({"id": n, "name": name, "first_seen_at": now - timedelta(days=60),
                          "last_report_id": last_id, "last_finished_at": last_at,
                          "last_status": last_status, "state": state,
                          "state_changed_at": last_at, "gpu_model": gpu})
        label_rows.append({"node_id": n, "key": "rack", "value": f"r{n % 40:02d}"})
        key_rows.append({"keyid": hashlib.sha256(name.encode()).hexdigest(),
                         "node_name": name, "public_raw": b"\0" * 32,
                         "enrolled_at": now - timedelta(days=60), "revoked_at": None})
        if len(report_rows) >= 30000 or n == nodes:  # bounded memory for 300,000 reports
            with database.engine.begin() as conn:
                for table, rows in ((db.keys, key_rows), (db.nodes, node_rows),
                                    (db.reports, report_rows),
                                    (db.measurements, measurement_rows),
                                    (db.verdicts, verdict_rows),
                                    (db.node_results, result_rows),
                                    (db.node_labels, label_rows)):
                    for start in range(0, len(rows), 20000):
                        conn.execute(insert(table), rows[start:start + 20000])
                    rows.clear()
    if database.engine.dialect.name == "postgresql":
        with database.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
            # Ids were given explicitly: move the sequences past them.
            for table in ("nodes", "reports"):
                conn.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                     f"(SELECT max(id) FROM {table}))")
    else:
        with database.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    return Generated(nodes, report_id, failing, by_fault, by_gpu, html_names)
