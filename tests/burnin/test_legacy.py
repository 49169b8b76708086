"""Burn-in files written before readings carried units (series format 1) and the
reports of that engine: captured from it (tests/data/burnin), still judged and shown."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from bench_agent.burnin.engine import report_from_series
from bench_agent.burnin.series import read_series, upgrade
from bench_agent.core.model import Report, Status
from bench_agent.report.attest import PublicKey, verify_envelope
from tests.cli_support import run_cli
from tests.paths import DATA, REPO

LEGACY = DATA / "burnin"


def test_a_format_1_series_is_judged_by_todays_rules() -> None:
    report = report_from_series(LEGACY / "legacy-v1-series.jsonl")
    verdicts = {(v.metric, v.device): v for v in report.verdicts if v.metric}
    # The old engine's own verdicts, now made by the thresholds from its limits.
    crash = verdicts[("burnin.load_crashed", "storage_fio")]
    assert crash.status is Status.FAIL
    assert "target /tmp/oldburn/gone is not a directory" in crash.message
    hot = verdicts[("burnin.gpu_temperature", "gpu0")]
    assert (hot.status, hot.value) == (Status.FAIL, 91.0)
    assert hot.message == "91 °C does not meet <= 87 °C at +2 s"
    assert verdicts[("burnin.gpu_temperature", "gpu1")].status is Status.PASS
    assert verdicts[("burnin.gpu_ecc_uncorrected_new", "gpu0")].status is Status.FAIL
    slowdown = verdicts[("burnin.gpu_slowdown", "gpu1")]
    assert slowdown.status is Status.FAIL  # throttle_time 2s in its limits
    assert "hw_thermal_slowdown" in slowdown.message
    assert verdicts[("burnin.cpu_matmul", "")].status is Status.PASS
    assert verdicts[("burnin.cpu_matmul", "")].threshold.startswith(
        ">= 50% of the first 2 s for at least 2 s (the first 2 s: ")
    assert report.status is Status.FAIL and not report.interrupted
    assert report.series_units["burnin.gpu_temperature[gpu0]"] == "degC"
    assert report.profile.name == "burnin-limits"


def test_the_upgrade_keeps_readings_with_units_and_tells_events_by_their_fields() -> None:
    records = upgrade(read_series(LEGACY / "legacy-v1-series.jsonl"))
    assert records[0]["series_version"] == 2
    assert records[0]["loads"]["cpu_matmul"] == {"check": "cpu.gemm", "params": {"size": 64}}
    events = [(r["kind"], r["device"]) for r in records if r["type"] == "event"]
    # The crash comes from its old event; the slowdown from the samples it was seen in.
    assert ("LOAD_CRASHED", "storage_fio") in events
    assert ("THROTTLE", "gpu1") in events
    units = {(r["metric"], r["unit"]) for s in records if s["type"] == "sample"
             for r in s["readings"]}
    assert {("burnin.gpu_power", "W"), ("burnin.cpu_load", "count"),
            ("burnin.cpu_matmul", "FLOP/s")} <= units


def test_a_killed_format_1_run_is_an_error_and_report_show_prints_it(tmp_path: Path) -> None:
    lines = (LEGACY / "legacy-v1-series.jsonl").read_text().splitlines()
    killed = tmp_path / "killed.jsonl"
    killed.write_text("\n".join(lines[:-1]) + "\n")  # no end record
    report = report_from_series(killed)
    assert report.interrupted and report.status is Status.ERROR
    shown = run_cli("report", "show", str(LEGACY / "legacy-v1-series.jsonl"), timeout=60,
                    cwd=REPO)
    assert shown.returncode == 1, shown.stderr  # FAIL
    assert "burnin.gpu_temperature" in shown.stdout


def test_an_old_signed_burnin_report_still_verifies_and_reads_its_units() -> None:
    envelope = json.loads((LEGACY / "legacy-v1-report.json").read_text())
    key = PublicKey(base64.b64decode((LEGACY / "legacy-v1-report.pub").read_text()))
    payload = verify_envelope(envelope, key)["predicate"]
    assert "series_units" not in payload  # written before they existed
    report = Report.from_dict(payload)
    assert report.series_units == {"cpu.load1": "count", "gpu.gpu0.power_w": "W",
                                   "gpu.gpu0.temp_c": "degC", "gpu.gpu1.power_w": "W",
                                   "gpu.gpu1.temp_c": "degC", "load.cpu_matmul": "FLOP/s"}
    assert report.status is Status.FAIL
