"""thresholds.py: comparators, warn band, severity, units, evaluate(); Verdict's promise."""

from __future__ import annotations

from typing import Any

import pytest

from bench_agent.core.model import Measurement, Status, Verdict
from bench_agent.core.thresholds import (
    Comparator,
    Series,
    Severity,
    Threshold,
    evaluate,
    evaluate_series,
)
from bench_agent.core.units import Unit

IOPS_METRIC = "storage.randread_4k_iops"
IOPS_CHECK = "storage.randread"


def threshold(
    comparator: Comparator,
    value: float,
    *,
    unit: Unit = Unit.IOPS,
    metric: str = IOPS_METRIC,
    **kwargs: Any,
) -> Threshold:
    return Threshold(
        id="t1",
        metric=metric,
        comparator=comparator,
        value=value,
        unit=unit,
        source="guide section X",
        **{"checks": (IOPS_CHECK,), **kwargs},
    )


def measure(
    value: float,
    *,
    unit: Unit = Unit.IOPS,
    metric: str = IOPS_METRIC,
    check: str = IOPS_CHECK,
    **kwargs: Any,
) -> Measurement:
    return Measurement(check=check, metric=metric, value=value, unit=unit, **kwargs)


# --- comparators at and around the boundary ----------------------------------------


@pytest.mark.parametrize(
    ("comparator", "value", "status"),
    [
        (Comparator.GE, 99.0, Status.FAIL),
        (Comparator.GE, 100.0, Status.PASS),
        (Comparator.GE, 101.0, Status.PASS),
        (Comparator.GT, 99.0, Status.FAIL),
        (Comparator.GT, 100.0, Status.FAIL),
        (Comparator.GT, 100.000001, Status.PASS),
        (Comparator.GT, 101.0, Status.PASS),
        (Comparator.LE, 99.0, Status.PASS),
        (Comparator.LE, 100.0, Status.PASS),
        (Comparator.LE, 100.000001, Status.FAIL),
        (Comparator.LE, 101.0, Status.FAIL),
        (Comparator.LT, 99.0, Status.PASS),
        (Comparator.LT, 99.999999, Status.PASS),
        (Comparator.LT, 100.0, Status.FAIL),
        (Comparator.LT, 101.0, Status.FAIL),
    ],
)
def test_comparator_boundaries(comparator: Comparator, value: float, status: Status) -> None:
    t = threshold(comparator, 100.0)
    assert t.passes(value) is (status is Status.PASS)
    v = t.judge(measure(value))
    assert v.status is status
    assert v.value == value
    assert v.unit is Unit.IOPS
    assert v.metric == IOPS_METRIC
    assert v.check == IOPS_CHECK
    assert v.source == "guide section X"
    assert v.threshold == t.describe()


@pytest.mark.parametrize(
    ("value", "status"),
    [
        (9.0, Status.FAIL),
        (9.999, Status.FAIL),
        (10.0, Status.PASS),
        (15.0, Status.PASS),
        (20.0, Status.PASS),
        (20.001, Status.FAIL),
        (30.0, Status.FAIL),
    ],
)
def test_between_boundaries(value: float, status: Status) -> None:
    t = threshold(Comparator.BETWEEN, 10.0, upper=20.0)
    assert t.judge(measure(value)).status is status


def test_between_with_equal_limits() -> None:
    t = threshold(Comparator.BETWEEN, 10.0, upper=10.0)
    assert t.judge(measure(10.0)).status is Status.PASS
    assert t.judge(measure(10.5)).status is Status.FAIL


def test_fail_message_names_value_and_rule() -> None:
    t = threshold(Comparator.GT, 1e5)
    v = t.judge(measure(9e4))
    assert v.status is Status.FAIL
    assert v.message == "90 kIOPS does not meet > 100 kIOPS"
    assert v.threshold == "> 100 kIOPS"


def test_pass_message_is_empty() -> None:
    v = threshold(Comparator.GT, 1e5).judge(measure(2e5))
    assert v.status is Status.PASS
    assert v.message == ""


# --- warn band ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("comparator", "value", "status"),
    [
        # lower limits: the band lies above the limit (100 .. 110)
        (Comparator.GE, 100.0, Status.WARN),
        (Comparator.GE, 105.0, Status.WARN),
        (Comparator.GE, 109.9, Status.WARN),
        (Comparator.GE, 110.1, Status.PASS),
        (Comparator.GE, 150.0, Status.PASS),
        (Comparator.GE, 99.9, Status.FAIL),
        (Comparator.GT, 100.0, Status.FAIL),
        (Comparator.GT, 100.1, Status.WARN),
        (Comparator.GT, 109.9, Status.WARN),
        (Comparator.GT, 110.1, Status.PASS),
        # upper limits: the band lies below the limit (90 .. 100)
        (Comparator.LE, 100.0, Status.WARN),
        (Comparator.LE, 95.0, Status.WARN),
        (Comparator.LE, 90.1, Status.WARN),
        (Comparator.LE, 89.9, Status.PASS),
        (Comparator.LE, 50.0, Status.PASS),
        (Comparator.LE, 100.1, Status.FAIL),
        (Comparator.LT, 100.0, Status.FAIL),
        (Comparator.LT, 99.9, Status.WARN),
        (Comparator.LT, 90.1, Status.WARN),
        (Comparator.LT, 89.9, Status.PASS),
    ],
)
def test_warn_band(comparator: Comparator, value: float, status: Status) -> None:
    t = threshold(comparator, 100.0, warn_band=0.1)
    v = t.judge(measure(value))
    assert v.status is status
    if status is Status.WARN:
        assert v.value == value
        assert "passes but lies within 10% of the limit" in v.message


@pytest.mark.parametrize(
    ("value", "status"),
    [
        (99.0, Status.FAIL),
        (100.0, Status.WARN),  # at the lower limit
        (105.0, Status.WARN),  # within 10 % of the width (10) above the lower limit
        (110.5, Status.PASS),
        (150.0, Status.PASS),
        (189.5, Status.PASS),
        (195.0, Status.WARN),  # within 10 units below the upper limit
        (200.0, Status.WARN),
        (201.0, Status.FAIL),
    ],
)
def test_warn_band_between(value: float, status: Status) -> None:
    t = threshold(Comparator.BETWEEN, 100.0, upper=200.0, warn_band=0.1)
    assert t.judge(measure(value)).status is status


def test_no_warn_band_means_no_warn() -> None:
    t = threshold(Comparator.GE, 100.0)
    assert t.near_limit(100.0) is False
    assert t.judge(measure(100.0)).status is Status.PASS


def test_near_limit_only_on_passing_side_is_reported_as_warn() -> None:
    # A failing value can be "near" numerically, but a miss is a miss.
    t = threshold(Comparator.LT, 100.0, warn_band=0.1)
    assert t.judge(measure(100.5)).status is Status.FAIL


def test_warn_band_percentage_rendering() -> None:
    t = threshold(Comparator.GE, 100.0, warn_band=0.25)
    v = t.judge(measure(110.0))
    assert v.status is Status.WARN
    assert v.message == "110 IOPS passes but lies within 25% of the limit"


# --- severity ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("comparator", "value"),
    [(Comparator.GE, 50.0), (Comparator.GT, 100.0), (Comparator.LE, 150.0),
     (Comparator.LT, 100.0)],
)
def test_severity_warn_turns_a_miss_into_warn(comparator: Comparator, value: float) -> None:
    t = threshold(comparator, 100.0, severity=Severity.WARN)
    v = t.judge(measure(value))
    assert v.status is Status.WARN
    assert v.value == value
    assert "does not meet" in v.message


def test_severity_warn_still_passes_a_pass() -> None:
    t = threshold(Comparator.LT, 1e-3, unit=Unit.SECONDS,
                  metric="storage.randread_4k_latency_p99", severity=Severity.WARN)
    v = t.judge(measure(5e-4, unit=Unit.SECONDS, metric="storage.randread_4k_latency_p99"))
    assert v.status is Status.PASS


def test_severity_warn_between_miss() -> None:
    t = threshold(Comparator.BETWEEN, 10.0, upper=20.0, severity=Severity.WARN)
    assert t.judge(measure(25.0)).status is Status.WARN
    assert t.judge(measure(5.0)).status is Status.WARN


def test_default_severity_is_fail() -> None:
    assert threshold(Comparator.GE, 1.0).severity is Severity.FAIL


# --- unit mismatch and unstable measurements ---------------------------------------


def test_unit_mismatch_is_error_naming_both_units() -> None:
    t = threshold(Comparator.GT, 1e5)
    v = t.judge(measure(2e5, unit=Unit.BYTES_PER_SECOND))
    assert v.status is Status.ERROR
    assert "unit mismatch" in v.message
    assert "bytes/s" in v.message
    assert "IOPS" in v.message
    assert "t1" in v.message  # the threshold id
    assert v.message == "unit mismatch: measured in bytes/s, threshold t1 is in IOPS"
    # nothing to show as a value: it was not judged
    assert v.value is None
    assert v.unit is None


def test_bits_and_bytes_are_a_mismatch() -> None:
    t = threshold(Comparator.GE, 2.5e10, unit=Unit.BITS_PER_SECOND, metric="network.tcp_bandwidth")
    v = t.judge(measure(3e10, unit=Unit.BYTES_PER_SECOND, metric="network.tcp_bandwidth",
                        check="network.tcp_bandwidth"))
    assert v.status is Status.ERROR
    assert "bytes/s" in v.message and "bits/s" in v.message


@pytest.mark.parametrize(
    ("value", "status"),
    [(2e5, Status.PASS), (1.05e5, Status.WARN), (9e4, Status.FAIL)],
)
def test_unstable_is_noted_but_status_unchanged(value: float, status: Status) -> None:
    t = threshold(Comparator.GT, 1e5, warn_band=0.1)
    stable = t.judge(measure(value))
    unstable = t.judge(measure(value, unstable=True))
    assert stable.status is status
    assert unstable.status is status
    assert "unstable" not in stable.message
    assert "unstable: wide spread between repetitions" in unstable.message


def test_unstable_pass_message() -> None:
    v = threshold(Comparator.GT, 1e5).judge(measure(2e5, unstable=True))
    assert v.status is Status.PASS
    assert v.message == "unstable: wide spread between repetitions"


def test_unstable_fail_message() -> None:
    v = threshold(Comparator.GT, 1e5).judge(measure(9e4, unstable=True))
    assert v.message == (
        "90 kIOPS does not meet > 100 kIOPS (unstable: wide spread between repetitions)"
    )


# --- describe ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("t", "text"),
    [
        (threshold(Comparator.GE, 32, unit=Unit.COUNT, metric="inventory.logical_cpus"), ">= 32"),
        (threshold(Comparator.GT, 1e5), "> 100 kIOPS"),
        (threshold(Comparator.GE, 1.28e11, unit=Unit.BYTES, metric="inventory.memory_total"),
         ">= 128 GB"),
        (threshold(Comparator.GT, 1e10, unit=Unit.BYTES_PER_SECOND,
                   metric="storage.seqread_1m_bandwidth"), "> 10 GB/s"),
        (threshold(Comparator.GE, 2.5e10, unit=Unit.BITS_PER_SECOND,
                   metric="network.tcp_bandwidth"), ">= 25 Gbit/s"),
        (threshold(Comparator.LT, 1e-5, unit=Unit.SECONDS,
                   metric="network.rdma_write_latency"), "< 10 µs"),
        (threshold(Comparator.LE, 1e-3, unit=Unit.SECONDS,
                   metric="storage.randread_4k_latency_p99"), "<= 1 ms"),
        (threshold(Comparator.BETWEEN, 1e9, upper=2e9, unit=Unit.BYTES_PER_SECOND,
                   metric="memory.stream_copy"), "between 1 GB/s and 2 GB/s"),
    ],
)
def test_describe(t: Threshold, text: str) -> None:
    assert t.describe() == text


# --- invalid construction ----------------------------------------------------------


def test_between_without_upper() -> None:
    with pytest.raises(ValueError, match="t1: 'between' needs an upper limit"):
        threshold(Comparator.BETWEEN, 10.0)


def test_between_upper_below_lower() -> None:
    with pytest.raises(ValueError, match="'between' needs an upper limit >= the lower"):
        threshold(Comparator.BETWEEN, 10.0, upper=5.0)


@pytest.mark.parametrize("comparator", [Comparator.GE, Comparator.LE, Comparator.GT, Comparator.LT])
def test_upper_only_for_between(comparator: Comparator) -> None:
    with pytest.raises(ValueError, match="only 'between' takes an upper limit"):
        threshold(comparator, 10.0, upper=20.0)


@pytest.mark.parametrize("band", [0.0, 1.0, 1.5, -0.1, 10.0])
def test_warn_band_out_of_range(band: float) -> None:
    with pytest.raises(ValueError, match=r"warn_band must be a fraction in \(0, 1\)"):
        threshold(Comparator.GE, 10.0, warn_band=band)


@pytest.mark.parametrize("band", [0.01, 0.1, 0.5, 0.99])
def test_warn_band_in_range(band: float) -> None:
    assert threshold(Comparator.GE, 10.0, warn_band=band).warn_band == band


def test_threshold_is_frozen() -> None:
    t = threshold(Comparator.GE, 10.0)
    with pytest.raises(AttributeError):
        t.value = 5.0  # type: ignore[misc]


def test_threshold_coerces_plain_strings() -> None:
    t = Threshold(id="t1", metric=IOPS_METRIC, comparator=">", value=1e5,  # type: ignore[arg-type]
                  unit="IOPS", source="s")  # type: ignore[arg-type]
    assert t.judge(measure(2e5)).status is Status.PASS


# --- evaluate ----------------------------------------------------------------------


def test_evaluate_judges_matching_measurements() -> None:
    t = threshold(Comparator.GT, 1e5)
    verdicts = evaluate([measure(2e5)], [t], [IOPS_CHECK])
    assert len(verdicts) == 1
    assert verdicts[0].status is Status.PASS
    assert verdicts[0].value == 2e5


def test_evaluate_ignores_thresholds_whose_check_did_not_run() -> None:
    t = threshold(Comparator.GT, 1e5)
    # even with a matching measurement: the check is not listed as having run
    assert evaluate([measure(2e5)], [t], ["inventory"]) == []
    assert evaluate([], [t], []) == []


def test_evaluate_absent_metric_is_skip() -> None:
    t = Threshold(id="gpu", metric="inventory.gpu_memory_min", comparator=Comparator.GE,
                  value=2.4e10, unit=Unit.BYTES, source="guide GPU")
    other = measure(64, unit=Unit.COUNT, metric="inventory.logical_cpus", check="inventory")
    verdicts = evaluate([other], [t], ["inventory"])
    assert len(verdicts) == 1
    v = verdicts[0]
    assert v.status is Status.SKIP
    assert v.check == "inventory"
    assert v.metric == "inventory.gpu_memory_min"
    assert v.value is None
    assert v.source == "guide GPU"
    assert v.threshold == ">= 24 GB"
    assert v.message == "inventory measured no inventory.gpu_memory_min on this node"


def test_evaluate_absent_required_metric_is_fail() -> None:
    t = Threshold(id="cpus", metric="inventory.logical_cpus", comparator=Comparator.GE,
                  value=32, unit=Unit.COUNT, source="guide CPU", required=True)
    verdicts = evaluate([], [t], ["inventory"])
    assert [v.status for v in verdicts] == [Status.FAIL]
    assert verdicts[0].value is None
    assert "measured no inventory.logical_cpus" in verdicts[0].message


def test_evaluate_uses_the_thresholds_check_name() -> None:
    # storage.randread_4k_iops belongs to check "storage.randread", not "storage": the
    # loader gives the threshold the catalog's checks (core never reads the catalog).
    t = threshold(Comparator.GT, 1e5)
    assert evaluate([], [t], ["storage"]) == []
    assert [v.status for v in evaluate([], [t], ["storage.randread"])] == [Status.SKIP]


def test_evaluate_unknown_metric_falls_back_to_prefix() -> None:
    t = threshold(Comparator.GE, 1.0, unit=Unit.COUNT, metric="custom.widgets", checks=())
    m = measure(2.0, unit=Unit.COUNT, metric="custom.widgets", check="custom")
    assert [v.status for v in evaluate([m], [t], ["custom"])] == [Status.PASS]


def test_evaluate_one_verdict_per_device() -> None:
    t = threshold(Comparator.GT, 1e5, warn_band=0.1)
    ms = [
        measure(2e5, device="nvme0n1"),
        measure(1.05e5, device="nvme1n1"),
        measure(5e4, device="nvme2n1"),
    ]
    verdicts = evaluate(ms, [t], [IOPS_CHECK])
    assert [(v.device, v.status) for v in verdicts] == [
        ("nvme0n1", Status.PASS),
        ("nvme1n1", Status.WARN),
        ("nvme2n1", Status.FAIL),
    ]
    assert [v.value for v in verdicts] == [2e5, 1.05e5, 5e4]


def test_evaluate_several_thresholds_in_order() -> None:
    cpus = Threshold(id="cpus", metric="inventory.logical_cpus", comparator=Comparator.GE,
                     value=32, unit=Unit.COUNT, source="g")
    ram = Threshold(id="ram", metric="inventory.memory_total", comparator=Comparator.GE,
                    value=1.28e11, unit=Unit.BYTES, source="g")
    iops = threshold(Comparator.GT, 1e5)
    ms = [
        measure(2, unit=Unit.COUNT, metric="inventory.logical_cpus", check="inventory"),
        measure(1.35e11, unit=Unit.BYTES, metric="inventory.memory_total", check="inventory"),
    ]
    verdicts = evaluate(ms, [cpus, iops, ram], ["inventory"])
    assert [(v.metric, v.status) for v in verdicts] == [
        ("inventory.logical_cpus", Status.FAIL),
        ("inventory.memory_total", Status.PASS),
    ]


def test_evaluate_unit_mismatch_is_error_verdict() -> None:
    t = threshold(Comparator.GT, 1e5)
    verdicts = evaluate([measure(2e5, unit=Unit.COUNT)], [t], [IOPS_CHECK])
    assert [v.status for v in verdicts] == [Status.ERROR]
    assert "count" in verdicts[0].message and "IOPS" in verdicts[0].message


def test_evaluate_accepts_iterables() -> None:
    t = threshold(Comparator.GT, 1e5)
    verdicts = evaluate((measure(2e5),), iter([t]), iter([IOPS_CHECK]))
    assert [v.status for v in verdicts] == [Status.PASS]


# --- every threshold gets a verdict (evaluate with ``unmeasured``) ------------------


GPU_COUNT = Threshold(id="gpu-count", metric="gpu.count", comparator=Comparator.BETWEEN,
                      value=8, upper=8, unit=Unit.COUNT, source="8-GPU nodes", required=True,
                      checks=("gpu.health",), meaning="GPUs NVML reports")
ECC = Threshold(id="ecc", metric="gpu.ecc_sram_uncorrectable", comparator=Comparator.LE,
                value=0, unit=Unit.COUNT, source="AzNHC", checks=("gpu.health",))


def test_thresholds_of_a_check_that_did_not_measure_skip_with_its_reason() -> None:
    reason = "not measured: gpu.health SKIP: NVML cannot start: NVML Shared Library Not Found"
    [count, ecc] = evaluate([], [GPU_COUNT, ECC], [], unmeasured={"gpu.health": reason},
                            profile="gpu-node-8")
    assert (ecc.check, ecc.metric, ecc.status, ecc.message) == (
        "gpu.health", "gpu.ecc_sram_uncorrectable", Status.SKIP, reason)
    assert (ecc.threshold, ecc.source, ecc.value) == ("<= 0", "AzNHC", None)
    # Required: the node cannot show what the profile demands -> FAIL, never a SKIP.
    assert (count.status, count.threshold) == (Status.FAIL, "exactly 8")
    assert count.message == (
        "profile gpu-node-8 requires gpu.count exactly 8 (GPUs NVML reports); " + reason)


def test_thresholds_of_a_check_not_in_the_suite_skip_even_when_required() -> None:
    verdicts = evaluate([], [GPU_COUNT, ECC], ["inventory"], unmeasured={})
    assert [(v.metric, v.status, v.message) for v in verdicts] == [
        ("gpu.count", Status.SKIP, "metric not measured by this suite (gpu.health is not in it)"),
        ("gpu.ecc_sram_uncorrectable", Status.SKIP,
         "metric not measured by this suite (gpu.health is not in it)"),
    ]
    # Without ``unmeasured`` the caller judges a subset: nothing is added.
    assert evaluate([], [GPU_COUNT, ECC], ["inventory"]) == []


def test_required_metric_missing_from_a_check_that_ran_names_the_profile() -> None:
    [v] = evaluate([], [GPU_COUNT], ["gpu.health"], unmeasured={}, profile="p8")
    assert v.status is Status.FAIL
    assert v.message == ("profile p8 requires gpu.count exactly 8 (GPUs NVML reports);"
                         " gpu.health measured no gpu.count on this node")


def test_a_metric_two_checks_emit_is_judged_whichever_ran() -> None:
    """network.rdma_active_devices comes from rdma_latency (the catalog's) and
    rdma_bandwidth: a suite with only the latter still judges it."""
    t = Threshold(id="rdma", metric="network.rdma_active_devices", comparator=Comparator.GE,
                  value=1, unit=Unit.COUNT, source="s",
                  checks=("network.rdma_latency", "network.rdma_bandwidth"))
    m = measure(2, unit=Unit.COUNT, metric="network.rdma_active_devices",
                check="network.rdma_bandwidth")
    [v] = evaluate([m], [t], ["network.rdma_bandwidth"], unmeasured={})
    assert (v.check, v.status, v.value) == ("network.rdma_bandwidth", Status.PASS, 2.0)


def test_a_metric_two_checks_emit_is_missed_by_the_check_of_the_suite() -> None:
    """Nothing measured: the verdict names the owner that ran, or the one the suite
    holds, never the first owner when only the second is in the suite."""
    t = Threshold(id="rdma", metric="network.rdma_active_devices", comparator=Comparator.GE,
                  value=1, unit=Unit.COUNT, source="s", required=True,
                  checks=("network.rdma_latency", "network.rdma_bandwidth"))
    why = "not measured: network.rdma_bandwidth SKIP: no active RDMA device"
    [v] = evaluate([], [t], [], unmeasured={"network.rdma_bandwidth": why})
    assert (v.check, v.status) == ("network.rdma_bandwidth", Status.FAIL)
    assert v.message.endswith("; " + why)
    [v] = evaluate([], [t], ["network.rdma_bandwidth"], unmeasured={})
    assert v.message.endswith("; network.rdma_bandwidth measured no "
                              "network.rdma_active_devices on this node")
    [v] = evaluate([], [t], [], unmeasured={})
    assert v.message == "metric not measured by this suite (network.rdma_latency is not in it)"


def test_a_miss_quotes_the_measurements_note() -> None:
    t = Threshold(id="gpu-present", metric="inventory.gpu_count",
                  comparator=Comparator.BETWEEN, value=8, upper=8, unit=Unit.COUNT, source="s")
    m = measure(0, unit=Unit.COUNT, metric="inventory.gpu_count", check="inventory",
                params={"note": "NVML cannot start: NVML Shared Library Not Found"})
    v = t.judge(m)
    assert (v.status, v.message) == (
        Status.FAIL,
        "0 does not meet exactly 8; NVML cannot start: NVML Shared Library Not Found")
    # A pass does not carry it.
    assert t.judge(measure(8, unit=Unit.COUNT, metric="inventory.gpu_count", check="inventory",
                           params={"note": "x"})).message == ""


# --- limits inside the metric's physical domain ------------------------------------


@pytest.mark.parametrize("unit", [Unit.BITS_PER_SECOND, Unit.BYTES_PER_SECOND, Unit.IOPS,
                                  Unit.COUNT, Unit.SECONDS, Unit.BYTES, Unit.FLOPS,
                                  Unit.WATTS])
def test_a_negative_limit_is_refused(unit: Unit) -> None:
    with pytest.raises(ValueError, match=r"^t1: -1( \S+)? is outside the domain of "
                                         rf"{IOPS_METRIC} \({unit.value} cannot be below 0"):
        threshold(Comparator.GE, -1.0, unit=unit)
    with pytest.raises(ValueError, match="outside the domain"):
        threshold(Comparator.BETWEEN, -2.0, upper=5.0, unit=unit)
    assert threshold(Comparator.GE, 0.0, unit=unit).value == 0.0


def test_temperatures_stop_at_absolute_zero() -> None:
    assert threshold(Comparator.GE, -20.0, unit=Unit.CELSIUS).value == -20.0
    with pytest.raises(ValueError, match="outside the domain"):
        threshold(Comparator.GE, -274.0, unit=Unit.CELSIUS)


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_a_limit_must_be_finite(value: float) -> None:
    with pytest.raises(ValueError, match="the limit must be a finite number"):
        threshold(Comparator.LE, value)


def test_a_rule_below_the_domain_that_can_never_pass_is_refused() -> None:
    with pytest.raises(ValueError, match=r"'< 0 IOPS' can never pass"):
        threshold(Comparator.LT, 0.0)
    assert threshold(Comparator.LE, 0.0).passes(0.0)


# --- Verdict and Measurement (model.py) --------------------------------------------


@pytest.mark.parametrize("status", [Status.PASS, Status.WARN])
def test_verdict_refuses_pass_or_warn_without_value(status: Status) -> None:
    with pytest.raises(ValueError, match="needs a measured value"):
        Verdict(check="cpu.gemm", status=status, metric="cpu.gemm_fp64_all_cores")


@pytest.mark.parametrize("status", [Status.FAIL, Status.ERROR, Status.SKIP])
def test_verdict_without_value_allowed_for_non_pass(status: Status) -> None:
    v = Verdict(check="cpu.gemm", status=status, message="why")
    assert v.value is None
    assert v.display_value == ""


def test_verdict_coerces_strings() -> None:
    v = Verdict(check="inventory", status="PASS", value=32.0, unit="count")  # type: ignore[arg-type]
    assert v.status is Status.PASS
    assert v.unit is Unit.COUNT
    assert v.display_value == "32"


def test_verdict_round_trips_through_dict() -> None:
    v = threshold(Comparator.GT, 1e5).judge(measure(2e5, device="nvme0n1"))
    assert Verdict.from_dict(v.to_dict()) == v
    assert v.to_dict()["unit"] == "IOPS"
    assert v.to_dict()["status"] == "PASS"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), True, "1"])
def test_measurement_refuses_bad_values(bad: Any) -> None:
    with pytest.raises(ValueError, match=r"storage\.randread_4k_iops: value must be"):
        measure(bad)


def test_measurement_refuses_unknown_unit() -> None:
    with pytest.raises(ValueError, match="'parsecs' is not a valid Unit"):
        Measurement(check="c", metric="c.m", value=1.0, unit="parsecs")  # type: ignore[arg-type]


# --- time-window rules over a series (burn-in) ------------------------------------


def series(points: list[tuple[float, float]], *, unit: Unit = Unit.FLOPS,
           metric: str = "burnin.cpu_matmul", device: str = "", note: str = "") -> Series:
    return Series("burnin.loads", metric, unit, tuple(points), device, note)


def rule(comparator: Comparator, value: float, *, unit: Unit = Unit.FLOPS,
         metric: str = "burnin.cpu_matmul", **kwargs: Any) -> Threshold:
    return Threshold("w1", metric, comparator, value, unit, "burn-in rule", **kwargs)


DROP = [(10, 100.0), (20, 102.0), (30, 101.0), (40, 99.0), (50, 80.0), (60, 79.0),
        (70, 78.0)]


def test_a_drop_below_the_first_minutes_level_fails_at_the_time_it_lasted() -> None:
    # Level: median of the samples within the first 20 s (100, 102) = 101; the limit
    # 90 % of it = 90.9; below from +50 s, for 10 s at +60 s.
    held = rule(Comparator.GE, 0.9, of_first=20, for_at_least=10)
    verdict = held.judge_series(series(DROP))
    assert verdict.status is Status.FAIL
    assert verdict.value == 79.0 and verdict.unit is Unit.FLOPS
    assert verdict.message == ("79 FLOP/s does not meet >= 90% of the first 20 s for at least"
                               " 10 s (the first 20 s: 101 FLOP/s) at +60 s for 10 s,"
                               " since +50 s")
    assert verdict.threshold_id == "w1"
    # Without the window, the first sample below fails, at its own time.
    at_once = rule(Comparator.GE, 0.9, of_first=20).judge_series(series(DROP))
    assert at_once.status is Status.FAIL and "at +50 s" in at_once.message


def test_a_dip_shorter_than_the_window_passes_and_says_so() -> None:
    dip = [(10, 100.0), (20, 100.0), (30, 50.0), (40, 100.0), (50, 99.0)]
    verdict = rule(Comparator.GE, 0.9, of_first=20, for_at_least=10).judge_series(series(dip))
    assert verdict.status is Status.PASS
    assert verdict.value == 50.0
    assert verdict.message == "held for 50 s; 50 FLOP/s at +30 s lasted less than 10 s"


def test_a_slowdown_fails_only_once_it_lasted_its_window() -> None:
    slowdown = rule(Comparator.LE, 0, unit=Unit.COUNT, metric="burnin.gpu_slowdown",
                    for_at_least=30)
    flags = [(10, 0.0), (20, 1.0), (30, 1.0), (40, 1.0), (50, 1.0), (60, 0.0)]
    verdict = slowdown.judge_series(series(flags, unit=Unit.COUNT,
                                           metric="burnin.gpu_slowdown", device="gpu1",
                                           note="hw_thermal_slowdown (+20 s)"))
    assert verdict.status is Status.FAIL and verdict.device == "gpu1"
    assert verdict.message == ("1 does not meet <= 0 for at least 30 s at +50 s for 30 s,"
                               " since +20 s; hw_thermal_slowdown (+20 s)")
    short = [(10, 1.0), (20, 1.0), (30, 1.0), (40, 0.0)]
    assert slowdown.judge_series(series(short, unit=Unit.COUNT,
                                        metric="burnin.gpu_slowdown")).status is Status.PASS


def test_a_plain_rule_on_a_series_fails_at_the_first_miss_and_passes_with_the_worst() -> None:
    hot = rule(Comparator.LE, 87, unit=Unit.CELSIUS, metric="burnin.gpu_temperature")
    temps = [(10, 70.0), (20, 88.0), (30, 91.0)]
    verdict = hot.judge_series(series(temps, unit=Unit.CELSIUS,
                                      metric="burnin.gpu_temperature"))
    assert (verdict.status, verdict.value) == (Status.FAIL, 88.0)
    assert verdict.message == "88 °C does not meet <= 87 °C at +20 s"
    cool = hot.judge_series(series([(10, 70.0), (20, 80.0), (30, 75.0)], unit=Unit.CELSIUS,
                                   metric="burnin.gpu_temperature"))
    assert (cool.status, cool.value, cool.message) == (Status.PASS, 80.0, "held for 30 s")


def test_a_relative_rule_has_nothing_to_judge_within_its_first_window() -> None:
    verdict = rule(Comparator.GE, 0.9, of_first=120).judge_series(series(DROP))
    assert verdict.status is Status.SKIP
    assert verdict.message == ("the run ended within the first 2 min: nothing to compare"
                               " with its level")


def test_series_rules_refuse_a_unit_mismatch_and_single_measurements() -> None:
    held = rule(Comparator.GE, 0.9, of_first=20)
    mismatch = held.judge_series(series(DROP, unit=Unit.IOPS))
    assert mismatch.status is Status.ERROR and "unit mismatch" in mismatch.message
    single = held.judge(Measurement("burnin.loads", "burnin.cpu_matmul", 1.0, Unit.FLOPS))
    assert single.status is Status.ERROR
    assert "time-window rule" in single.message


def test_window_fields_are_checked_and_round_trip() -> None:
    with pytest.raises(ValueError, match="for_at_least must be a duration"):
        rule(Comparator.LE, 0, for_at_least=-1)
    with pytest.raises(ValueError, match="a relative limit is a fraction"):
        rule(Comparator.GE, -0.5, of_first=60)
    held = rule(Comparator.GE, 0.9, of_first=120, for_at_least=20, severity=Severity.WARN)
    assert Threshold.from_dict(held.to_dict()) == held
    with pytest.raises(ValueError, match="is not a number"):
        Threshold.from_dict({**held.to_dict(), "for_at_least": "20s"})


def test_evaluate_series_skips_a_rule_without_series_with_the_reason() -> None:
    # The burn-in loader fills checks and meaning from its catalog, as a profile's.
    described = {"checks": ("burnin.loads",), "meaning": "GEMM"}
    held = rule(Comparator.GE, 0.9, of_first=20, **described)
    required = rule(Comparator.GE, 0.9, of_first=20, required=True, **described)
    unmeasured = {"burnin.cpu_matmul": "the load cpu_matmul is not enabled"}
    skipped, failed = evaluate_series([], [held, required], unmeasured=unmeasured,
                                      profile="burnin")
    assert (skipped.status, skipped.check) == (Status.SKIP, "burnin.loads")
    assert skipped.message == "the load cpu_matmul is not enabled"
    assert (failed.status, failed.check) == (Status.FAIL, "burnin.loads")
    assert failed.message == ("profile burnin requires burnin.cpu_matmul"
                              f" {required.describe()} (GEMM);"
                              " the load cpu_matmul is not enabled")
    two = evaluate_series([series(DROP, device="a"), series(DROP[:3], device="b")], [held])
    assert [(v.device, v.status) for v in two] == [("a", Status.FAIL), ("b", Status.PASS)]
