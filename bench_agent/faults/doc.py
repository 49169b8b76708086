"""docs/faults.md, generated from the catalog (scripts/gen-faults-doc writes it;
tests/faults/test_docs.py fails while it is stale)."""

from __future__ import annotations

from bench_agent.faults.catalog import REMEDIATIONS, Catalog, load_catalog

# What each remediation asks of the operator (the closed set of CONTRACT.md).
REMEDIATION_MEANING = {
    "none": "nothing to do on the node; the finding is informational",
    "re-run": "run the check again; a transient condition or an interrupted run",
    "check-job": "look at the user's job or data first; the node is likely fine",
    "reset-gpu": "drain, then reset the GPU (`nvidia-smi -r -i N`, or reboot); re-run",
    "reboot": "drain and reboot the node; re-run before returning it",
    "reseat-recable": "drain; reseat the part or replace its cable/transceiver; re-run",
    "replace": "take the part out of service and replace it (RMA)",
    "escalate": "hand to the vendor or the team owning the part, with the report",
}

HEADER = """# Fault codes

<!-- generated from bench_agent/faults/catalog.yaml by scripts/gen-faults-doc; do not edit -->

Every FAIL and ERROR verdict (and every WARN) carries a stable fault code, the
component that broke and a remediation. They are in the report JSON
(`fault_code`, `component`, `remediation`, `attempts`, `flaky` on each verdict),
the verdict table, JUnit (`<failure message="CODE: ...">`) and the Prometheus
textfile (`bench_agent_fault{code=...,component=...,remediation=...} 1`).
`bench-agent faults [--json]` lists them. The codes follow DCGM's failure codes
(`DCGM_FR_*`, dcgmlib/dcgm_errors.h in https://github.com/NVIDIA/DCGM); the GPU
XID entries NVIDIA's XID catalog (https://docs.nvidia.com/deploy/xid-errors/).

## Confirm before failing

A suite's check entry may say `confirm: N` (0 to 10): a FAIL is re-run up to N
times before it stands. When a re-run passes, the verdict is **WARN** with
`flaky: true` and `attempts` the number of runs; its message says which attempt
failed and how. It is never reported as a silent PASS, nor as a FAIL of a part
that then works. A FAIL that every attempt repeats stands, with `attempts` N+1.
ERRORs are not re-run: a tool that is missing stays missing.

## Severity

- **critical**: the part is broken; take the node out of service.
- **major**: degraded; out of service until fixed.
- **minor**: judge in context; a warning is enough.

## Remediations

| remediation | what to do |
|---|---|
"""


def render(catalog: Catalog | None = None) -> str:
    catalog = catalog or load_catalog()
    lines = [HEADER.rstrip("\n")]
    lines += [f"| `{r}` | {REMEDIATION_MEANING[r]} |" for r in REMEDIATIONS]
    lines += ["", "## Codes", "",
              "| code | severity | remediation | component | title |", "|---|---|---|---|---|"]
    faults = list(catalog.faults.values())
    lines += [f"| [`{f.code}`](#{f.code.lower()}) | {f.severity} | {f.remediation} | "
              f"{f.component} | {f.title} |" for f in faults]
    for f in faults:
        lines += ["", f"### {f.code}", "", f"**{f.title}** ({f.severity}; remediation "
                  f"`{f.remediation}`; component: {f.component})", "",
                  f"What it means: {f.meaning}", "", f"What to do: {f.action}", "",
                  f"Source: {f.source}"]
    lines += ["", "## Which verdict gets which code", "",
              "The catalog's `mappings`, first match wins (shell globs on the check and "
              "the metric; `error` is the error a check that did not measure ended in). "
              "A FAIL with no value (a required metric its check did not produce) is "
              "`BA-NOT-MEASURED`; a metric no mapping names is `BA-UNCLASSIFIED`.", "",
              "| check | metric or error | code |", "|---|---|---|"]
    for m in catalog.mappings:
        what = (f"error {', '.join(m.errors)}" if m.errors is not None else f"`{m.metric}`")
        code = f"`{m.code}`" if m.code else "`BA-GPU-XID-<n>` of the worst XID listed"
        lines.append(f"| `{m.check}` | {what} | {code} |")
    return "\n".join(lines) + "\n"
