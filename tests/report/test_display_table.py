"""The verdict table's order, counts, fault column and next steps, piped and on a
real pseudo-terminal."""

from __future__ import annotations

import io
import os
import shlex
from pathlib import Path

import pytest

from bench_agent.core.inventory import Inventory
from bench_agent.core.model import Measurement, NamedDigest, Report, Status, Verdict
from bench_agent.core.units import Unit
from bench_agent.report.display import counts_line, next_steps, print_table


def mixed_report(profile_path: str = "/repo/suites/profiles/guide-minimum.yaml") -> Report:
    return Report(
        report_id="00000000-0000-0000-0000-000000000001", agent_version="0",
        host="node-7", inventory=Inventory(),
        suite=NamedDigest("acceptance", "0" * 64, ""),
        profile=NamedDigest("guide-minimum", "0" * 64, profile_path),
        started_at="2026-01-01T00:00:00Z", finished_at="2026-01-01T00:00:01Z",
        measurements=[Measurement("cpu.stream", "cpu.stream_triad_bytes_per_second", 5e10,
                                  Unit.BYTES_PER_SECOND)],
        verdicts=[
            Verdict("inventory", Status.PASS, metric="inventory.logical_cpus", value=64.0,
                    unit=Unit.COUNT, threshold=">= 32", source="guide 2.1"),
            Verdict("storage.seqread", Status.SKIP, message="no target"),
            Verdict("gpu.gemm", Status.FAIL, metric="gpu.gemm_bf16_flops", value=1e14,
                    unit=Unit.FLOPS, threshold=">= 500 TFLOP/s", source="guide 3.2",
                    device="[GPU 0]", fault_code="BA-GPU-PERF-LOW"),
            Verdict("network.iperf3", Status.ERROR, message="iperf3: connection refused"),
            Verdict("cpu.gemm", Status.WARN, metric="cpu.gemm_fp32_flops", value=1e12,
                    unit=Unit.FLOPS, threshold=">= 1 TFLOP/s", source="guide 2.3"),
            Verdict("gpu.gemm", Status.FAIL, metric="gpu.gemm_fp16_flops", value=1e14,
                    unit=Unit.FLOPS, threshold=">= 500 TFLOP/s", source="guide 3.2",
                    device="[GPU 0]"),
        ],
    )


def test_rows_are_grouped_worst_first_and_counted() -> None:
    out = io.StringIO()
    print_table(mixed_report(), out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "node-7: ERROR - suite acceptance, profile guide-minimum"
    assert lines[1].split() == ["check", "metric", "value", "threshold", "status", "fault",
                                "source", "/", "message"]
    statuses = [line.split()[0] for line in lines[2:-1]]
    assert statuses == ["gpu.gemm", "gpu.gemm", "network.iperf3", "cpu.gemm",
                        "storage.seqread", "inventory", "cpu.stream"]
    # Two FAILs keep the order they were judged in; the fault code sits in its column.
    assert "gpu.gemm_bf16_flops [[GPU 0]]" in lines[2] and "BA-GPU-PERF-LOW" in lines[2]
    assert "gpu.gemm_fp16_flops" in lines[3] and "BA-GPU" not in lines[3]
    assert lines[-1] == ("summary: 2 FAIL, 1 ERROR, 1 WARN, 1 SKIP, 1 PASS, "
                         "1 measured without a threshold")


def test_no_fault_column_when_no_verdict_has_a_code() -> None:
    report = mixed_report()
    report.verdicts = [v for v in report.verdicts if not v.fault_code]
    out = io.StringIO()
    print_table(report, out)
    assert "fault" not in out.getvalue().splitlines()[1]
    assert counts_line(report).startswith("summary: 1 FAIL, 1 ERROR")


def test_next_steps_name_the_report_the_upload_and_the_rerun_of_what_failed() -> None:
    steps = next_steps(mixed_report(), Path("/srv/out/node-7/r.json"), Path("/srv/out"),
                       ["bench-agent", "run", "--output", "/srv/out"], "signed")
    assert steps == [
        "report: /srv/out/node-7/r.json (signed)",
        "upload: bench-agent upload --output /srv/out --collector URL "
        "(or set BENCH_AGENT_COLLECTOR)",
        "re-run what failed: bench-agent run --output /srv/out gpu.gemm network.iperf3 "
        "--profile guide-minimum",
    ]


def test_rerun_names_a_users_profile_by_its_path_quoted() -> None:
    report = mixed_report("/home/sre/my profiles/strict.yaml")
    steps = next_steps(report, None, Path("results"), ["bench-agent", "run"])
    assert len(steps) == 1  # no report written: nothing to point at or upload
    command = steps[0].removeprefix("re-run what failed: ")
    assert shlex.split(command) == ["bench-agent", "run", "gpu.gemm", "network.iperf3",
                                    "--profile", "/home/sre/my profiles/strict.yaml"]


def test_a_passing_run_has_no_rerun_line() -> None:
    report = mixed_report()
    report.verdicts = [v for v in report.verdicts if v.status in (Status.PASS, Status.SKIP)]
    steps = next_steps(report, Path("results/n/r.json"), Path("results"), ["bench-agent", "run"])
    assert steps == ["report: results/n/r.json",
                     "upload: bench-agent upload --collector URL (or set BENCH_AGENT_COLLECTOR)"]


def test_terminal_table_is_worst_first_with_counts_and_steps(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "300")
    master, slave = os.openpty()
    stream = open(slave, "w", encoding="utf-8", closefd=True)  # noqa: SIM115
    try:
        print_table(mixed_report(), stream, next_steps=["re-run what failed: bench-agent "
                                                        "run gpu.gemm [x]"])
        stream.flush()
        os.set_blocking(master, False)
        shown = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        stream.close()
        os.close(master)
    text = shown.decode()
    assert "\x1b[" in text  # rich styled it: a terminal
    assert text.index("gpu.gemm_bf16_flops") < text.index("iperf3: connection refused") \
        < text.index("cpu.gemm_fp32_flops") < text.index("no target") \
        < text.index("inventory.logical_cpus")
    assert "BA-GPU-PERF-LOW" in text
    assert "summary: 2 FAIL, 1 ERROR, 1 WARN, 1 SKIP, 1 PASS" in text
    assert "re-run what failed: bench-agent run gpu.gemm [x]" in text  # not read as markup
