"""tools/nvml.py through the fake NVML injected at its one seam (use_loader)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench_agent.core.errors import NotApplicable, ToolFailed, ToolMissing
from bench_agent.core.inventory import Gpu
from bench_agent.tools import nvml
from tests.fake_nvml import FakeNvml
from tests.paths import REPO


@pytest.fixture
def fake() -> Iterator[FakeNvml]:
    nv = FakeNvml()
    with nvml.use_loader(lambda: nv):
        yield nv


def test_no_library_is_tool_missing() -> None:
    def missing() -> None:
        raise ImportError("No module named 'pynvml'")

    with nvml.use_loader(missing), pytest.raises(ToolMissing, match="nvidia-ml-py"):
        nvml.list_gpus()


def test_no_driver_is_not_applicable() -> None:
    nv = FakeNvml(init_error=12)
    with nvml.use_loader(lambda: nv), pytest.raises(NotApplicable,
                                                    match="NVML Shared Library Not Found"):
        nvml.list_gpus()


def test_zero_gpus_lists_none() -> None:
    nv = FakeNvml(gpus=[])
    with nvml.use_loader(lambda: nv):
        assert nvml.list_gpus() == []
    assert nv.calls == ["init", "shutdown"]


def test_list_gpus_keeps_its_shape(fake: FakeNvml) -> None:
    gpus = nvml.list_gpus()
    assert len(gpus) == 8
    assert gpus[3] == Gpu(index=3, name="NVIDIA H100 80GB HBM3",
                          uuid="GPU-00000003-1111-2222-3333-444444444444",
                          memory_total_bytes=85520809984, driver_version="550.54.15")


@pytest.mark.parametrize("total", [float("nan"), float("inf"), 1.5, "80 GB"])
def test_a_memory_total_that_is_no_count_is_a_tool_failure(fake: FakeNvml,
                                                           total: object) -> None:
    """Before: int(NaN) crashed the inventory child with a bare ValueError."""
    fake.gpus[0].memory = total  # type: ignore[assignment]
    with pytest.raises(ToolFailed, match=r"nvml failed: memory total is not a"):
        nvml.list_gpus()


def test_device_facts_and_counters(fake: FakeNvml) -> None:
    fake.gpus[0].ecc = {(0, 1, 2): 5, (1, 1, 7): 1, (0, 0, 2): 2}
    fake.gpus[0].remap = (3, 0, 1, 0)
    with nvml.session() as nv:
        handle = nv.nvmlDeviceGetHandleByIndex(0)
        facts = nvml.device_facts(nv, handle, 0)
        counters = nvml.counters(nv, handle)
        system = nvml.system_facts(nv)
    assert facts.serial == "1654321000"
    assert facts.pci_bus_id == "00000000:18:00.0"
    assert (facts.pcie_gen_max, facts.pcie_width_max) == (5, 16)
    assert facts.ecc_mode_current == 1
    assert facts.to_dict()["pci_bus_id"] == "00000000:18:00.0"  # as the params carry it
    assert counters.ecc_dram_correctable == 5
    assert counters.ecc_sram_uncorrectable == 1
    assert counters.ecc_volatile_corrected == 2
    assert counters.row_remap_pending == 1 and counters.row_remap_correctable == 3
    assert counters.retired_pages is None  # a GPU that remaps rows retires no pages
    assert len(counters.nvlink) == 18
    assert counters.nvlink[0] == nvml.NvLinkState(active=True, errors=0)
    assert system == nvml.SystemFacts(driver_version="550.54.15", cuda_driver_version="12.4")


def test_not_supported_readings_are_absent(fake: FakeNvml) -> None:
    """A PCIe card without NVLink, a pre-Ampere GPU without row remapping."""
    fake.gpus[0].nvlink = None
    fake.gpus[0].remap = None
    with nvml.session() as nv:
        counters = nvml.counters(nv, nv.nvmlDeviceGetHandleByIndex(0))
    assert counters.nvlink == {}
    assert counters.row_remap_pending is None
    # the fake has no retired-pages functions at all (AttributeError path)
    assert counters.retired_pages is None


def test_clock_event_reason_names() -> None:
    assert nvml.reason_names(0x8 | 0x1) == ["gpu_idle", "hw_slowdown"]
    assert nvml.reason_names(0) == []


def test_xid_watcher_collects_events(fake: FakeNvml) -> None:
    fake.pending_xids = [(2, 79), (5, 13)]
    with nvml.session() as nv:
        handles = [nv.nvmlDeviceGetHandleByIndex(i) for i in range(8)]
        watcher = nvml.XidWatcher(nv, handles, wait_ms=10)
        watcher.start()
        import time

        deadline = time.monotonic() + 5
        while len(watcher.events) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        events = watcher.stop()
    assert events == [nvml.XidEvent(xid=79, gpu=2), nvml.XidEvent(xid=13, gpu=5)]


def test_a_gpu_that_refuses_xid_events_is_noted_not_watched(fake: FakeNvml) -> None:
    fake.gpus[3].xid_events = False
    fake.pending_xids = [(2, 79)]
    with nvml.session() as nv:
        watcher = nvml.XidWatcher(nv, [nv.nvmlDeviceGetHandleByIndex(i) for i in range(8)],
                                  wait_ms=10)
        watcher.start()
        assert watcher.stop() == []
    assert watcher.note == "XID events cannot be watched: Not Supported"
    assert "register_events:2" in fake.calls and "register_events:4" not in fake.calls


KERNEL_LOG = """\
[    4.123456] nvidia: loading out-of-tree module taints kernel.
[ 8123.000001] NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, name=python, GPU has fallen off the bus.
[ 8124.000002] NVRM: Xid (PCI:0000:5e:00): 13, pid=99, Graphics Exception: ESR 0x50df30=0x0
Mar  1 10:00:00 node kernel: NVRM: Xid (0000:03:00): 48, An uncorrectable double bit error
"""


def test_kernel_log_xids() -> None:
    found = nvml.parse_kernel_xids(KERNEL_LOG)
    assert [(x.bus, x.xid) for x in found] == [
        ("0000:3b:00", 79), ("0000:5e:00", 13), ("0000:03:00", 48)]
    assert found[2].to_dict() == {
        "bus": "0000:03:00", "xid": 48,
        "line": "Mar  1 10:00:00 node kernel: NVRM: Xid (0000:03:00): 48, An uncorrectable "
                "double bit error"}
    assert nvml.bus_matches("0000:3b:00", "00000000:3B:00.0")
    assert not nvml.bus_matches("0000:3b:00", "00000000:3C:00.0")
    assert not nvml.bus_matches("0000:3b:00", None)


def test_failing_xids_are_aznhc_list() -> None:
    assert 79 in nvml.FAILING_XIDS and 48 in nvml.FAILING_XIDS
    assert 13 not in nvml.FAILING_XIDS  # an application error, not a node fault


def test_bench_agent_help_imports_neither_torch_nor_pynvml() -> None:
    import subprocess
    import sys

    code = ("import sys; from bench_agent.cli.main import build_parser; build_parser();"
            "import bench_agent.tools.nvml, bench_agent.checks.gpu.checks,"
            " bench_agent.checks.nccl.checks;"
            "print('torch' in sys.modules, 'pynvml' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["False", "False"]


def test_newer_calls_first_and_the_deprecated_ones_on_an_older_driver(fake: FakeNvml) -> None:
    """nvmlDeviceGetTemperature and ...ClocksThrottleReasons are marked for removal in
    CUDA 14 (nvidia-ml-py 13): the V / ClocksEvent calls are used, the old ones only
    where the driver lacks the new (NVML_ERROR_FUNCTION_NOT_FOUND)."""
    fake.gpus[0].temperature, fake.gpus[0].reasons = 61, 0x20
    with nvml.session() as nv:
        reading = nvml.sample(nv, nv.nvmlDeviceGetHandleByIndex(0))
    assert (reading.temperature, reading.clock_event_reasons) == (61, 0x20)
    assert "temperature_v" in fake.calls and "clocks_event_reasons" in fake.calls
    assert "temperature" not in fake.calls and "clocks_throttle_reasons" not in fake.calls
    fake.calls.clear()
    fake.legacy = True
    with nvml.session() as nv:
        reading = nvml.sample(nv, nv.nvmlDeviceGetHandleByIndex(0))
    assert (reading.temperature, reading.clock_event_reasons) == (61, 0x20)
    assert "temperature" in fake.calls and "clocks_throttle_reasons" in fake.calls


def test_thermal_violation_time_is_read_with_the_counters(fake: FakeNvml) -> None:
    fake.gpus[1].thermal_violation_ns = 2_500_000_000
    with nvml.session() as nv:
        counters = nvml.counters(nv, nv.nvmlDeviceGetHandleByIndex(1))
    assert counters.thermal_violation_ns == 2_500_000_000
    fake.nvmlDeviceGetViolationStatus = None  # type: ignore[assignment,method-assign]
    with nvml.session() as nv:
        assert nvml.counters(nv, nv.nvmlDeviceGetHandleByIndex(1)).thermal_violation_ns is None


def test_gpus_by_uuid(fake: FakeNvml) -> None:
    found = nvml.indices_by_uuid()
    assert found["GPU-00000005-1111-2222-3333-444444444444"] == 5 and len(found) == 8
    with nvml.use_loader(lambda: FakeNvml(init_error=9)):
        assert nvml.indices_by_uuid() == {}


@pytest.mark.parametrize("bytes_names", [False, True])
def test_names_read_as_text_from_either_binding(fake: FakeNvml, bytes_names: bool) -> None:
    # nvidia-ml-py 13 returns str (convertStrBytes); releases before 11.5 returned bytes.
    fake.bytes_names = bytes_names
    fake.gpus[2].name = "NVIDIA H200 [SXM] <b>ü"
    names = [gpu.name for gpu in nvml.list_gpus()]
    assert names[2] == "NVIDIA H200 [SXM] <b>ü" and names[0] == "NVIDIA H100 80GB HBM3"


def test_without_a_driver_pynvml_is_not_even_imported(tmp_path: Path) -> None:
    # The real library seam (no fake): none of the driver's paths exists, so the
    # answer is known without pynvml's import (a tenth of health's budget).
    code = ("import sys\nfrom pathlib import Path\nfrom bench_agent.tools import nvml\n"
            f"nvml.DRIVER_PATHS = (Path({str(tmp_path / 'none')!r}),)\n"
            "try:\n    nvml.list_gpus()\nexcept Exception as exc:\n"
            "    print(type(exc).__name__, exc)\n"
            "print('pynvml' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=60)
    assert done.stdout.splitlines() == [
        f"NotApplicable NVML cannot start: no NVIDIA driver is loaded (none of "
        f"{tmp_path / 'none'} exists)", "False"], done.stderr
