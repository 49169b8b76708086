"""What Slurm and Kubernetes are told of a Report: pass, warn or fail, and the faults."""

from __future__ import annotations

from bench_agent.core.inventory import Inventory
from bench_agent.core.model import Measurement, NamedDigest, Report, Status, Verdict
from bench_agent.core.units import Unit
from bench_agent.sched.summary import Fault, summarize


def _report(*verdicts: Verdict, measured: bool = True) -> Report:
    measurements = [Measurement("inventory", "inventory.logical_cpus", 2.0, Unit("count"))] \
        if measured else []
    return Report("r-1", "0.1.0", "gpu-7", Inventory(), NamedDigest("health", "a" * 64),
                  NamedDigest("p", "b" * 64), "2026-12-01T13:00:00Z", "2026-12-01T13:00:01Z",
                  measurements, list(verdicts))


def _verdict(status: Status, **fields: object) -> Verdict:
    value = 1.0 if status in (Status.PASS, Status.WARN) else None
    return Verdict(check=str(fields.pop("check", "gpu.health")), status=status,
                   value=value, unit=Unit("count") if value is not None else None,
                   **fields)  # type: ignore[arg-type]


def test_catalogued_faults_come_first_failures_before_errors() -> None:
    report = _report(
        _verdict(Status.PASS, metric="gpu.count"),
        _verdict(Status.ERROR, check="ib.ports", message="ibstat hung", fault_code="BA-IB-TOOL"),
        _verdict(Status.FAIL, metric="gpu.xid", message="XID 79", fault_code="BA-GPU-XID-79",
                 component="GPU 3 GPU-8f1c", device="gpu3"))
    summary = summarize(report)
    assert summary.state == "fail"
    assert summary.faults == (Fault("BA-GPU-XID-79", "GPU 3 GPU-8f1c", "XID 79"),
                              Fault("BA-IB-TOOL", "", "ibstat hung"))
    assert (summary.report_id, summary.finished_at) == ("r-1", "2026-12-01T13:00:01Z")


def test_an_uncatalogued_verdict_is_named_by_status_and_metric() -> None:
    summary = summarize(_report(_verdict(Status.FAIL, metric="inventory.logical_cpus",
                                         device="cpu", message="2 < 32")))
    assert summary.faults == (Fault("FAIL-inventory.logical_cpus", "cpu", "2 < 32"),)


def test_warn_and_pass() -> None:
    assert summarize(_report(_verdict(Status.WARN, metric="gpu.temp"))).state == "warn"
    assert summarize(_report(_verdict(Status.PASS, metric="gpu.temp"))).state == "pass"
    assert summarize(_report(_verdict(Status.PASS, metric="gpu.temp"))).faults == ()


def test_a_run_that_judged_nothing_fails() -> None:
    summary = summarize(_report(_verdict(Status.SKIP, message="no GPU"), measured=False))
    assert summary.state == "fail"
    assert summary.faults == (Fault("ERROR-report", "", "the health run judged nothing "
                                    "(every check skipped)"),)
