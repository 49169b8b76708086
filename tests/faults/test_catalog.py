"""The fault catalog: it loads, its codes and remediations are a closed set, every
metric of every check maps to a code, and a broken catalog is refused by key."""

from __future__ import annotations

import pytest

from bench_agent.checks import metric_catalog
from bench_agent.core.errors import ConfigError
from bench_agent.faults.catalog import (
    CATALOG_PATH,
    REMEDIATIONS,
    UNCLASSIFIED,
    load_catalog,
    load_catalog_text,
)
from bench_agent.tools.nvml import FAILING_XIDS


def test_the_shipped_catalog_loads_with_its_closed_sets() -> None:
    catalog = load_catalog()
    assert len(catalog.faults) > 60
    assert {f.remediation for f in catalog.faults.values()} <= set(REMEDIATIONS)
    assert set(REMEDIATIONS) == {"none", "re-run", "reset-gpu", "reboot", "reseat-recable",
                                 "replace", "check-job", "escalate"}
    assert all(code.startswith("BA-") for code in catalog.faults)
    # Codes the issue names, and the errors.
    for code in ("BA-GPU-XID-79", "BA-GPU-PCIE-WIDTH", "BA-NVME-IOPS-LOW", "BA-IB-LINK-DOWN",
                 "BA-TOOL-MISSING", "BA-CHECK-TIMEOUT", "BA-PARSE"):
        assert code in catalog.faults, code


def test_every_xid_that_fails_a_node_has_a_code_and_remediation_of_its_own() -> None:
    catalog = load_catalog()
    missing = sorted(FAILING_XIDS - set(catalog.xids))
    assert missing == [], f"add these XIDs to bench_agent/faults/catalog.yaml xids: {missing}"
    xid79 = catalog.fault("BA-GPU-XID-79")
    assert (xid79.remediation, xid79.severity, xid79.component) == ("reboot", "critical", "gpu")
    assert catalog.fault("BA-GPU-XID-48").remediation == "reset-gpu"
    assert catalog.fault("BA-GPU-XID-13").remediation == "check-job"
    assert "docs.nvidia.com/deploy/xid-errors" in xid79.source


def test_every_metric_of_the_catalog_maps_to_a_code() -> None:
    # Checks are added on other branches: this names each metric and the line to add.
    catalog = load_catalog()
    unmapped = [name for name in metric_catalog()
                if catalog.code_for(metric_catalog()[name].checks[0], name) == UNCLASSIFIED]
    hint = "\n".join(f"  - {{metric: {name}, code: BA-...}}" for name in unmapped)
    assert not unmapped, (f"metrics without a fault code; add under `mappings:` in "
                          f"bench_agent/faults/catalog.yaml (a code of `faults:`, or a new "
                          f"one there):\n{hint}")


def test_every_error_a_mapping_names_exists() -> None:
    # The worker names the error's class (run/worker.py); a renamed class would
    # silently fall through to BA-CHECK-ERROR, so the catalog is held to the tree.
    import inspect

    from bench_agent.core import errors

    classes = {name for name, obj in inspect.getmembers(errors, inspect.isclass)
               if issubclass(obj, errors.BenchAgentError)}
    runner_kinds = {"timeout", "crash", "protocol", "interrupted", "*"}
    named = {e for m in load_catalog().mappings for e in (m.errors or ())}
    assert sorted(named - classes - runner_kinds) == []


def test_every_burnin_metric_maps_to_a_code() -> None:
    from bench_agent.burnin.engine import BurninFile, default_burnin_path
    from bench_agent.burnin.health import HEALTH_METRICS
    from bench_agent.config.loader import load_model

    catalog = load_catalog()
    burnin, _ = load_model(default_burnin_path(), BurninFile)
    metrics = [*HEALTH_METRICS, *(t.metric for t in burnin.thresholds)]
    unmapped = [m for m in metrics if catalog.code_for("burnin", m) == UNCLASSIFIED]
    assert unmapped == [], f"add mappings for these burn-in metrics: {unmapped}"
    assert catalog.code_for("burnin.loads", "burnin.gpu_matmul") == "BA-BURNIN-LOAD-DROP"
    assert catalog.code_for("burnin.nvme", "burnin.nvme_media_errors_new") == (
        "BA-NVME-MEDIA-ERRORS")


def test_codes_follow_metric_patterns_errors_and_xids() -> None:
    catalog = load_catalog()
    assert catalog.code_for("gpu.health", "gpu.ecc_dram_uncorrectable") == "BA-GPU-ECC-DBE"
    assert catalog.code_for("gpu.health", "gpu.ecc_dram_correctable") == "BA-GPU-ECC-SBE-HIGH"
    assert catalog.code_for("nccl.all_reduce", "nccl.all_reduce_wrong") == "BA-NCCL-WRONG"
    assert catalog.code_for("nccl.all_reduce", "nccl.all_reduce_busbw") == "BA-NCCL-BW-LOW"
    assert catalog.code_for("cpu.gemm", "", "timeout") == "BA-CHECK-TIMEOUT"
    assert catalog.code_for("storage.randread", "", "ParseError") == "BA-PARSE"
    assert catalog.code_for("storage.randread", "", "SomethingNew") == "BA-CHECK-ERROR"
    assert catalog.code_for("x.y", "x.unknown_metric") == UNCLASSIFIED
    # The worst XID wins: 79 (critical) over 13 (minor); one without a code is OTHER.
    assert catalog.code_for("gpu.health", "gpu.xid_events", xids=[13, 79]) == "BA-GPU-XID-79"
    assert catalog.code_for("gpu.health", "gpu.xid_events", xids=[999]) == "BA-GPU-XID-OTHER"


def _catalog_text(extra_fault: str = "", mapping: str = "") -> str:
    base = CATALOG_PATH.read_text(encoding="utf-8")
    if extra_fault:
        base = base.replace("faults:\n", f"faults:\n{extra_fault}", 1)
    if mapping:
        base = base.replace("mappings:\n", f"mappings:\n{mapping}", 1)
    return base


def test_a_broken_catalog_is_refused_naming_the_key() -> None:
    bad_remedy = ("  - {code: BA-X, title: t, component: gpu, severity: major, "
                  "remediation: pray, meaning: m, action: a, source: s}\n")
    with pytest.raises(ConfigError, match=r"faults\[0\].remediation.*'pray' is not one of"):
        load_catalog_text(_catalog_text(bad_remedy), "c.yaml")
    dup = ("  - {code: BA-GPU-MISSING, title: t, component: gpu, severity: major, "
           "remediation: none, meaning: m, action: a, source: s}\n")
    with pytest.raises(ConfigError, match="BA-GPU-MISSING is defined twice"):
        load_catalog_text(_catalog_text(dup), "c.yaml")
    with pytest.raises(ConfigError, match=r"mappings\[0\].code.*'BA-NOPE' is not in faults"):
        load_catalog_text(_catalog_text(mapping="  - {metric: a.b, code: BA-NOPE}\n"), "c.yaml")
    with pytest.raises(ConfigError, match="duplicate key 'code'"):
        load_catalog_text(_catalog_text(mapping="  - {metric: a.b, code: BA-X, code: BA-Y}\n"),
                          "c.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_catalog_text("faults: [", "c.yaml")
