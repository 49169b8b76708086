"""fio's JSON parser on outputs captured from fio 3.33 here (tests/data/fio) and on
the public samples in ../shared/samples (skipped when that folder is absent)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench_agent.checks import metric_catalog
from bench_agent.core.errors import ParseError, ToolFailed
from bench_agent.core.model import Measurement
from bench_agent.core.units import Unit
from bench_agent.tools import fio, parse_tool_output
from tests.paths import DATA, SAMPLES

# The metric catalog, as the checks declare it.
METRICS = metric_catalog()

DATA = DATA / "fio"
SAMPLES = SAMPLES


def text(name: str) -> str:
    return (DATA / name).read_text()


def by_metric(measurements: list[Measurement]) -> dict[str, Measurement]:
    return {m.metric: m for m in measurements}


def test_grouped_randread_has_iops_and_percentiles_in_seconds() -> None:
    raw = text("randread_4k_libaio_numjobs2_grouped.json")
    read = json.loads(raw)["jobs"][0]["read"]
    ms = by_metric(fio.parse_fio(raw))
    iops = ms["storage.randread_4k_iops"]
    assert iops.unit is Unit.IOPS and iops.value == read["iops"]
    assert iops.stats["bytes_per_second"] == read["bw_bytes"]
    p99 = ms["storage.randread_4k_latency_p99"]
    assert p99.unit is Unit.SECONDS
    assert p99.value == pytest.approx(read["clat_ns"]["percentile"]["99.000000"] * 1e-9)
    assert p99.params["latency_basis"] == "clat"
    for m in ms.values():
        assert m.metric in METRICS and METRICS[m.metric].unit is m.unit
        assert m.tool_version == "fio-3.33"


def test_ungrouped_clones_are_summed_and_histograms_merged() -> None:
    raw = json.loads(text("randread_4k_iouring_numjobs2_ungrouped_jsonplus.json"))
    jobs = raw["jobs"]
    assert len(jobs) == 2  # one entry per clone without group_reporting
    ms = by_metric(fio.parse_fio(text("randread_4k_iouring_numjobs2_ungrouped_jsonplus.json")))
    iops = ms["storage.randread_4k_iops"]
    assert iops.value == pytest.approx(sum(j["read"]["iops"] for j in jobs))
    assert iops.stats["bytes_per_second"] == pytest.approx(
        sum(j["read"]["bw_bytes"] for j in jobs))
    assert iops.params["latency_merge"] == "histogram"
    # The merged p99 lies between the clones' p99s (it is a mixture of them).
    p99s = [j["read"]["clat_ns"]["percentile"]["99.000000"] * 1e-9 for j in jobs]
    assert min(p99s) <= ms["storage.randread_4k_latency_p99"].value <= max(p99s)


def test_histogram_rule_reproduces_fio_percentiles() -> None:
    report = fio.parse_fio_report(text("randread_4k_iouring_numjobs2_ungrouped_jsonplus.json"))
    for job in report.jobs:
        stats = job.directions["read"]
        assert stats.bins
        for pct, seconds in stats.percentiles.items():
            assert fio.histogram_percentile(stats.bins, pct) * 1e-9 == pytest.approx(seconds)


def test_without_histograms_latency_is_the_max_over_entries() -> None:
    plain = json.loads(text("randread_4k_iouring_numjobs2_ungrouped_jsonplus.json"))
    for job in plain["jobs"]:
        del job["read"]["clat_ns"]["bins"]
    summary = fio.summarize(fio.parse_fio_report(json.dumps(plain)).jobs, "read")
    assert summary is not None and summary.latency_merge == "max"
    p99s = [j["read"]["clat_ns"]["percentile"]["99.000000"] * 1e-9 for j in plain["jobs"]]
    assert fio.percentile(summary, 99.0) == pytest.approx(max(p99s))


def test_note_before_json_is_skipped() -> None:
    raw = text("randread_4k_psync_iodepth4_note.json")
    assert raw.startswith("note: both iodepth >= 1 and synchronous I/O engine")
    report = fio.parse_fio_report(raw)
    assert report.notes and report.notes[0].startswith("note:")
    assert by_metric(fio.parse_fio(raw))["storage.randread_4k_iops"].value > 0


def test_lat_percentiles_are_read_and_labelled() -> None:
    # lat_percentiles=1 puts the percentiles under lat_ns in fio 3.33 as well
    # as clat_ns; either way a p99 is there with its basis named.
    ms = by_metric(fio.parse_fio(text("randwrite_4k_lat_percentiles.json")))
    assert ms["storage.randwrite_4k_latency_p99"].params["latency_basis"] in ("clat", "lat")


def test_several_documents_last_report_wins() -> None:
    raw = text("seqread_1m_status_interval_docs.json")
    assert raw.count('"fio version"') >= 2
    final = json.loads(raw[raw.rindex('{\n  "fio version"'):])
    ms = by_metric(fio.parse_fio(raw))
    bw = ms["storage.seqread_1m_bandwidth"]
    assert bw.unit is Unit.BYTES_PER_SECOND
    assert bw.value == pytest.approx(final["jobs"][0]["read"]["bw_bytes"])


def test_two_groups_are_reported_apart_and_merge_sums() -> None:
    report = fio.parse_fio_report(text("seqread_1m_two_targets_jsonplus.json"))
    parts = [fio.summarize([j], "read") for j in report.jobs]
    assert len(parts) == 2 and all(p is not None for p in parts)
    merged = fio.merge_summaries([p for p in parts if p is not None])
    assert merged.bytes_per_second == pytest.approx(sum(p.bytes_per_second for p in parts if p))
    assert merged.latency_merge == "histogram"
    devices = {m.device for m in fio.parse_fio(text("seqread_1m_two_targets_jsonplus.json"))}
    assert devices == {"/tmp/fxw/f", "/tmp/fxw/g"}


def test_fio2_units_are_converted() -> None:
    v3 = by_metric(fio.parse_fio(text("randread_4k_libaio_numjobs2_grouped.json")))
    v2 = by_metric(fio.parse_fio(text("randread_4k_fio2_style_derived.json")))
    assert v2["storage.randread_4k_iops"].value == pytest.approx(
        v3["storage.randread_4k_iops"].value)
    # fio 2.x: bw in KiB/s only, no bw_bytes: within 1 KiB/s of the 3.x figure.
    assert v2["storage.randread_4k_iops"].stats["bytes_per_second"] == pytest.approx(
        v3["storage.randread_4k_iops"].stats["bytes_per_second"], abs=1024)
    # usec -> seconds (the derivation truncated ns to whole usec)
    assert v2["storage.randread_4k_latency_p99"].value == pytest.approx(
        v3["storage.randread_4k_latency_p99"].value, abs=1e-6)


def test_job_error_is_tool_failed_with_errno_words() -> None:
    with pytest.raises(ToolFailed, match=r"error 1 \(Operation not permitted\)"):
        fio.parse_fio(text("job_error_eperm.json"))


def test_exit_zero_with_error_inside_is_still_an_error() -> None:
    doc = json.loads(text("randread_4k_libaio_numjobs2_grouped.json"))
    doc["jobs"][0]["error"] = 5
    with pytest.raises(ToolFailed, match="Input/output error"):
        fio.parse_fio(json.dumps(doc))


def test_unreadable_output_is_parse_error_with_fios_words() -> None:
    with pytest.raises(ParseError, match="unrecognized option"):
        fio.parse_fio(text("bad_option.txt"))
    with pytest.raises(ParseError, match="empty output"):
        fio.parse_fio("")
    truncated = text("randread_4k_libaio_numjobs2_grouped.json")[:2000]
    with pytest.raises(ParseError):
        fio.parse_fio(truncated)


def test_fios_own_repeated_percentile_slots_are_read() -> None:
    # fio 2.x and 3.1 repeat "0.00" : 0 for unused percentile slots: not a doctored
    # document, so it reads, and the real percentiles are kept.
    raw = text("randread_4k_libaio_numjobs2_grouped.json").replace(
        '"percentile" : {', '"percentile" : {\n "0.00" : 0, "0.00" : 0,', 1)
    assert raw.count('"0.00" : 0') == 2
    read = json.loads(raw)["jobs"][0]["read"]
    p99 = by_metric(fio.parse_fio(raw))["storage.randread_4k_latency_p99"]
    assert p99.value == pytest.approx(read["clat_ns"]["percentile"]["99.000000"] * 1e-9)


def test_a_duplicate_key_fio_does_not_print_is_refused() -> None:
    raw = text("randread_4k_libaio_numjobs2_grouped.json").replace(
        '"percentile" : {', '"percentile" : {\n "0.00" : 0, "0.00" : 5,', 1)
    with pytest.raises(ParseError, match=r"duplicate key '0\.00' at jobs\[0\]\.read\.clat_ns"
                                         r"\.percentile \(values '0', '5'\)"):
        fio.parse_fio(raw)


def test_an_option_given_twice_is_read_as_fio_reads_it() -> None:
    # Each filename= adds its files (fio options.c str_filename_cb); any other
    # option given twice: the later one is what fio ran.
    raw = text("randread_4k_libaio_numjobs2_grouped.json").replace(
        '"filename" : "/tmp/fxw/f",',
        '"filename" : "/tmp/fxw/f",\n "filename" : "/tmp/fxw/g",\n "bs" : "8k",', 1)
    assert raw.count('"filename"') == 2
    job = fio.parse_fio_report(raw).jobs[0]
    assert job.options["filename"] == "/tmp/fxw/f:/tmp/fxw/g"
    assert job.options["bs"] == "4k"  # the job's own "bs" : "4k" comes after the added one


def test_parse_command_registry() -> None:
    path = DATA / "randread_4k_libaio_numjobs2_grouped.json"
    assert parse_tool_output("fio", path)


def test_parse_size() -> None:
    assert fio.parse_size("4k") == 4096
    assert fio.parse_size("1M") == 1 << 20
    assert fio.parse_size("1MiB") == 1 << 20
    assert fio.parse_size("512") == 512
    assert fio.parse_size("lots") is None


# --- public samples ---------------------------------------------------------------------

_SAMPLE_FILES = sorted(SAMPLES.glob("fio_*.json")) if SAMPLES.is_dir() else []


@pytest.mark.skipif(not _SAMPLE_FILES, reason=f"no fio samples in {SAMPLES}")
@pytest.mark.parametrize("path", _SAMPLE_FILES, ids=lambda p: p.name)
def test_public_samples_parse(path: Path) -> None:
    ms = fio.parse_fio(path.read_text())
    assert ms
    assert all(m.value >= 0 for m in ms)
    assert any(m.unit is Unit.SECONDS for m in ms)


@pytest.mark.skipif(not (SAMPLES / "fio_superbench_fio3.16_randrw_4jobs_grouped.json").exists(),
                    reason="sample absent")
def test_superbench_sample_percentiles_under_lat_ns() -> None:
    raw = (SAMPLES / "fio_superbench_fio3.16_randrw_4jobs_grouped.json").read_text()
    ms = fio.parse_fio(raw)
    reads = [m for m in ms if m.metric == "storage.fio_read_latency_p99"]
    assert reads and reads[0].params["latency_basis"] == "lat"


@pytest.mark.skipif(not (SAMPLES / "fio_pkb_v2.1.4_4jobs_seq_rand.json").exists(),
                    reason="sample absent")
def test_pkb_fio2_sample_reads_every_job() -> None:
    raw = (SAMPLES / "fio_pkb_v2.1.4_4jobs_seq_rand.json").read_text()
    report = fio.parse_fio_report(raw)
    assert report.version == "fio-2.1.4"
    assert len(report.jobs) == 5
    seq = next(j for j in report.jobs if j.name == "sequential_read")
    raw_job = next(j for j in json.loads(raw)["jobs"] if j["jobname"] == "sequential_read")
    assert seq.directions["read"].bytes_per_second == raw_job["read"]["bw"] * 1024
    assert seq.directions["read"].io_bytes == raw_job["read"]["io_bytes"] * 1024


def test_nan_is_a_parse_error_and_a_huge_errno_is_not_a_crash() -> None:
    # Python's JSON reader accepts NaN (and int(nan) used to crash the parser):
    # the strict reader refuses it; os.strerror of a huge errno raised OverflowError.
    doc = json.loads(text("randread_4k_libaio_numjobs2_grouped.json"))
    doc["jobs"][0]["groupid"] = float("nan")
    with pytest.raises(ParseError, match="NaN is not a JSON number"):
        fio.parse_fio(json.dumps(doc))
    doc["jobs"][0]["groupid"] = 0
    doc["jobs"][0]["error"] = 1e30
    with pytest.raises(ToolFailed, match="unknown error"):
        fio.parse_fio(json.dumps(doc))


def test_negative_percentiles_are_not_reported_and_nan_is_refused() -> None:
    # A negative p99 would pass a latency threshold.
    doc = json.loads(text("randread_4k_libaio_numjobs2_grouped.json"))
    pct = doc["jobs"][0]["read"]["clat_ns"]["percentile"]
    pct["99.000000"] = -5
    ms = by_metric(fio.parse_fio(json.dumps(doc)))
    assert "storage.randread_4k_latency_p99" not in ms
    assert ms["storage.randread_4k_latency_p99_9"].value == pytest.approx(
        pct["99.900000"] * 1e-9)
    pct["50.000000"] = float("nan")
    with pytest.raises(ParseError, match="NaN is not a JSON number"):
        fio.parse_fio(json.dumps(doc))


@pytest.mark.skipif(not (SAMPLES / "fio_virtualclient_fio3.26_seqwrite_256k_qd64.json").exists(),
                    reason="sample absent")
def test_virtualclient_sample_with_two_filename_options_names_both_files() -> None:
    raw = (SAMPLES / "fio_virtualclient_fio3.26_seqwrite_256k_qd64.json").read_text()
    assert raw.count('"filename"') >= 2
    devices = {m.device for m in fio.parse_fio(raw)}
    assert devices == {"/home/azureuser/VirtualClient/linux-x64/remote_disk_1_0/fio-test.dat:"
                       "/home/azureuser/VirtualClient/linux-x64/remote_disk_1_1/fio-test.dat"}
