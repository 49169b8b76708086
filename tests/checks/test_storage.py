"""Storage checks with the real fio on temporary directories and loop devices.

Runs are short (1 s, 32 MiB files): these tests check plumbing, units, safety and
cleanup, not the drive. Loop-device tests need root and losetup and are skipped
elsewhere; nothing here ever writes to a device that holds data.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench_agent.checks import get_check, metric_catalog
from bench_agent.checks.base import CheckContext, RunOptions
from bench_agent.checks.storage.checks import (
    TEST_FILE_PREFIX,
    SequentialParams,
    StorageParams,
    Target,
    measure_job,
)
from bench_agent.checks.storage.safety import inspect_device, write_refusals
from bench_agent.core.errors import NotApplicable, StorageRefused, ToolFailed, ToolMissing
from bench_agent.core.model import Measurement, Status
from bench_agent.core.units import Unit
from bench_agent.run.runner import run_in_child
from bench_agent.tools import fio_run

# The metric catalog, as the checks declare it.
METRICS = metric_catalog()

pytestmark = pytest.mark.skipif(shutil.which("fio") is None, reason="fio not installed")

SMALL = {"size": "32MiB", "runtime": "1s", "ramp_time": 0, "iodepth": 8, "numjobs": 2}


def run_check(name: str, options: RunOptions, params: dict[str, object] | None = None,
              output: Path | None = None) -> list[Measurement]:
    check = get_check(name)
    ctx = CheckContext(output_dir=output or Path("/nonexistent-output"), timeout=60,
                       options=options)
    return check.run(ctx, check.params_model.model_validate(params or SMALL))


def by_metric(ms: list[Measurement]) -> dict[str, Measurement]:
    return {m.metric: m for m in ms}


def leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.startswith(TEST_FILE_PREFIX)]


@pytest.mark.e2e
def test_randread_on_a_directory(tmp_path: Path) -> None:
    ms = by_metric(run_check("storage.randread", RunOptions(target=tmp_path)))
    iops = ms["storage.randread_4k_iops"]
    assert iops.unit is Unit.IOPS and iops.value > 0
    assert iops.device == str(tmp_path)
    assert iops.params["direct"] == 1 and iops.params["bs"] == 4096
    assert iops.params["ioengine"] in ("io_uring", "libaio")
    for p in ("p50", "p99", "p99_9"):
        lat = ms[f"storage.randread_4k_latency_{p}"]
        assert lat.unit is Unit.SECONDS and 0 < lat.value < 10
    assert all(m.metric in METRICS and METRICS[m.metric].unit is m.unit for m in ms.values())
    assert leftovers(tmp_path) == []


@pytest.mark.e2e
def test_seqwrite_on_the_default_output_folder(tmp_path: Path) -> None:
    out = tmp_path / "results"
    ms = by_metric(run_check("storage.seqwrite", RunOptions(), output=out))
    bw = ms["storage.seqwrite_1m_bandwidth"]
    assert bw.unit is Unit.BYTES_PER_SECOND and bw.value > 1e6  # a VM disk writes > 1 MB/s
    assert "storage.seqwrite_1m_latency_p99" in ms
    assert list(out.iterdir()) == []


def test_bad_fio_option_is_tool_failed_with_fios_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench_agent.checks.storage import checks as storage

    real = storage.measure_job
    monkeypatch.setattr(storage, "measure_job", lambda *a: real(*a) + "bogus_option=1\n")
    with pytest.raises(ToolFailed, match="bogus_option"):
        run_check("storage.randread", RunOptions(target=tmp_path))
    assert leftovers(tmp_path) == []


def test_run_fio_reports_fios_message() -> None:
    with pytest.raises(ToolFailed, match="Bad option"):
        fio_run.run_fio(fio_run.find_fio(), "[j]\nfilename=/dev/null\nnot_an_option=3\n", 30)


def test_missing_target_is_refused_and_nothing_is_created(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such"
    with pytest.raises(StorageRefused, match="does not exist"):
        run_check("storage.randread", RunOptions(target=missing))
    assert not (tmp_path / "no").exists()


def test_not_enough_free_space_before_fio_starts(tmp_path: Path) -> None:
    st = os.statvfs(tmp_path)
    too_big = st.f_bavail * st.f_frsize * 2
    with pytest.raises(StorageRefused, match="not enough free space"):
        run_check("storage.randread", RunOptions(target=tmp_path), {**SMALL, "size": too_big})
    assert leftovers(tmp_path) == []


def test_fio_missing_is_tool_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fio_run.shutil, "which", lambda name: None)
    with pytest.raises(ToolMissing):
        run_check("storage.randread", RunOptions(target=tmp_path))


@pytest.mark.e2e
def test_timeout_sigterm_removes_the_test_file(tmp_path: Path) -> None:
    request = {"check": "storage.randread", "params": {**SMALL, "runtime": "30s"},
               "output_dir": str(tmp_path), "timeout": 40,
               "options": {"target": str(tmp_path)}}
    started = time.monotonic()
    outcome = run_in_child(request, timeout=3)
    assert outcome.status is Status.ERROR and "timed out" in outcome.message
    assert time.monotonic() - started < 15
    assert leftovers(tmp_path) == []


def test_job_file_shape() -> None:
    targets = [Target("/dev/a", "/dev/a", 64 << 20, "device"),
               Target("/d", "/d/f:x", 32 << 20, "file")]
    job = measure_job(targets, "read", 1 << 20, SequentialParams(numjobs=4), "libaio")
    assert "direct=1" in job and "new_group=1" in job and "group_reporting=1" in job
    assert "offset_increment=16777216" in job and "size=8388608" in job
    assert "filename=/d/f\\:x" in job  # HOWTO: a colon in a file name is escaped
    rand = measure_job(targets[:1], "randread", 4096, StorageParams(), "io_uring")
    assert "norandommap=1" in rand and "iodepth=64" in rand and "numjobs=4" in rand


def test_params_accept_human_units() -> None:
    p = StorageParams.model_validate({"size": "256MiB", "runtime": "5s", "ramp_time": "2s"})
    assert (p.size, p.runtime, p.ramp_time) == (256 << 20, 5.0, 2.0)


# --- raw devices (loop devices backed by files) --------------------------------------------


def _can_loop() -> bool:
    return os.geteuid() == 0 and shutil.which("losetup") is not None and Path(
        "/dev/loop-control").exists()


@pytest.fixture
def loops(tmp_path: Path) -> Iterator[list[str]]:
    if not _can_loop():
        pytest.skip("needs root and loop devices")
    made: list[str] = []
    try:
        for i in range(2):
            image = tmp_path / f"disk{i}.img"
            with open(image, "wb") as handle:
                handle.truncate(64 << 20)
            done = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True,
                                  text=True)
            if done.returncode != 0:
                pytest.skip(f"losetup: {done.stderr.strip()}")
            made.append(done.stdout.strip())
        yield made
    finally:
        for dev in made:
            subprocess.run(["umount", dev], capture_output=True)
            subprocess.run(["losetup", "-d", dev], capture_output=True)


@pytest.mark.e2e
def test_two_devices_read_only_per_device_and_aggregate(loops: list[str]) -> None:
    ms = run_check("storage.randread", RunOptions(devices=tuple(loops)))
    total = [m for m in ms if m.metric == "storage.randread_4k_iops"]
    per = [m for m in ms if m.metric == "storage.randread_4k_iops_per_device"]
    assert len(total) == 1 and total[0].device == "aggregate"
    assert {m.device for m in per} == set(loops)
    assert total[0].value == pytest.approx(sum(m.value for m in per))
    assert total[0].params["latency_merge"] == "histogram"


def test_writes_to_devices_need_destructive(loops: list[str]) -> None:
    with pytest.raises(NotApplicable, match="--destructive"):
        run_check("storage.randwrite", RunOptions(devices=tuple(loops[:1])))


@pytest.mark.e2e
def test_destructive_write_on_a_blank_device(loops: list[str]) -> None:
    ms = by_metric(run_check("storage.randwrite",
                             RunOptions(devices=tuple(loops[:1]), destructive=True)))
    assert ms["storage.randwrite_4k_iops"].value > 0
    assert ms["storage.randwrite_4k_iops"].device == loops[0]


def test_destructive_write_refused_on_a_mounted_filesystem(
    loops: list[str], tmp_path: Path
) -> None:
    dev = loops[0]
    if shutil.which("mkfs.ext4") is None:
        pytest.skip("no mkfs.ext4")
    subprocess.run(["mkfs.ext4", "-q", dev], check=True, capture_output=True)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", dev, str(mnt)], check=True, capture_output=True)
    try:
        with pytest.raises(StorageRefused) as info:
            run_check("storage.seqwrite", RunOptions(devices=(dev,), destructive=True))
        message = str(info.value)
        assert "mounted at" in message and "ext4" in message and "nothing was written" in message
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
    # Unmounted, the filesystem signature alone still refuses the write.
    facts = inspect_device(dev)
    assert not facts.mounted_at
    assert any("signature" in r for r in write_refusals(facts))


def test_root_device_is_refused_without_writing() -> None:
    st = os.stat("/")
    sysdir = Path("/sys/dev/block") / f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    if not sysdir.exists():
        pytest.skip("/ is not on a block device here (overlay, btrfs subvolume)")
    dev = Path("/dev") / sysdir.resolve().name
    if not dev.exists():
        pytest.skip(f"{dev} has no device node here")
    facts = inspect_device(str(dev), read_signature=False)
    reasons = write_refusals(facts)
    assert facts.backs_root
    assert any("root filesystem" in r for r in reasons)
    assert any("mounted at /" in r for r in reasons)


def test_stale_test_files_of_killed_runs_are_swept_and_live_ones_kept(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from bench_agent.checks.storage.checks import TEST_FILE_PREFIX, sweep_stale_test_files

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    stale = tmp_path / f"{TEST_FILE_PREFIX}{dead.stdout.strip()}-abc"
    live = tmp_path / f"{TEST_FILE_PREFIX}{os.getpid()}-def"
    unrelated = tmp_path / "data.bin"
    for path in (stale, live, unrelated):
        path.write_bytes(b"x")
    assert sweep_stale_test_files(tmp_path) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, unrelated.name])


def test_parse_fio_of_a_run_without_io_is_an_error() -> None:
    from bench_agent.core.errors import ParseError
    from bench_agent.tools.fio import parse_fio

    idle = {"fio version": "fio-3.33", "jobs": [
        {"jobname": "idle", "groupid": 0, "error": 0, "job options": {"rw": "randread"},
         "read": {"io_bytes": 0, "bw_bytes": 0, "iops": 0.0, "total_ios": 0},
         "write": {"io_bytes": 0, "bw_bytes": 0, "iops": 0.0, "total_ios": 0}}]}
    with pytest.raises(ParseError, match=r"no job did any I/O \(jobs: idle\)"):
        parse_fio(json.dumps(idle))


def test_blkid_ambivalent_result_is_a_signature(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # blkid -p exits 8 when it finds several signatures (blkid(8), RETURN CODE);
    # the magic bytes below may know none of them, so the device must not look blank.
    from bench_agent.checks.storage.safety import probe_signature

    blank = tmp_path / "blank.img"
    blank.write_bytes(bytes(70_000))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "blkid"
    fake.write_text("#!/bin/sh\nexit 8\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    assert probe_signature(str(blank)) is not None
    fake.write_text("#!/bin/sh\nexit 2\n")  # nothing found: the magics decide
    assert probe_signature(str(blank)) is None
