"""GPU checks that run NVIDIA's own tools: DCGM's diagnostic and nvbandwidth.

gpu.dcgm_diag runs ``dcgmi diag -r LEVEL -j`` (tools/dcgm.py) and turns every test x
GPU result into two measurements, ``gpu.dcgm_diag_fail`` and ``gpu.dcgm_diag_warn``
(1 or 0), whose device is "gpuN/TEST" ("all/TEST" for a test of the whole node);
the note of each names the test, the GPU, the status, DCGM's error codes and words,
so a profile rule ``<= 0`` FAILs (or WARNs) with them. Levels (DCGM user guide,
"Run Levels"): 1 quick (deployment, seconds), 2 medium (+ PCIe, memory, about 2
min), 3 long (+ stress, diagnostic, about 30 min), 4 extended (+ memtest and pulse,
an hour or more).

gpu.nvbandwidth runs ``nvbandwidth -j`` (tools/nvbandwidth.py): per testcase its
weakest cell (the GPU pair or host link that is slowest), and the testcases that
failed or were waived.

Both SKIP with the reason where the tool is not installed: DCGM and nvbandwidth
are optional on a node, unlike the driver (gpu.health ERRORs without it there).
"""

from __future__ import annotations

import shutil
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from bench_agent.checks.base import Check, CheckContext, MetricSpec
from bench_agent.core.model import Measurement
from bench_agent.core.process import TOOL_GRACE_S
from bench_agent.core.units import Unit
from bench_agent.tools import dcgm, nvbandwidth

# The share of the check's time limit a tool run gets, less the time to stop it
# (process.TOOL_GRACE_S) and a second for the worker's own start (imports) before
# the check began: the worker must report the tool's timeout before the runner's
# deadline stops the worker.
_TOOL_SHARE = 0.9
_WORKER_START_S = 1.0


def tool_budget(ctx: CheckContext) -> float:
    """Seconds a tool of this check may run within the check's time limit."""
    return max(1.0, ctx.timeout * _TOOL_SHARE - TOOL_GRACE_S - _WORKER_START_S)


class DcgmDiagParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # dcgmi diag -r 1..4 (DCGM user guide, "Run Levels"); 2 is the medium run.
    level: int = Field(default=2, ge=1, le=4)


class DcgmDiagCheck(Check):
    name: ClassVar[str] = "gpu.dcgm_diag"
    domain: ClassVar[str] = "gpu"
    description: ClassVar[str] = "DCGM diagnostic (dcgmi diag -r LEVEL -j): every test x GPU"
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("gpu.dcgm_diag_fail", Unit.COUNT,
                   "1 when a DCGM diag test failed on a GPU (device gpuN/TEST)",
                   higher_is_better=False, per_device=True),
        MetricSpec("gpu.dcgm_diag_warn", Unit.COUNT,
                   "1 when a DCGM diag test warned on a GPU, or passed with a DCGM error",
                   higher_is_better=False, per_device=True),
        MetricSpec("gpu.dcgm_diag_results", Unit.COUNT,
                   "test x GPU results the DCGM diag reported"),
        MetricSpec("gpu.dcgm_diag_skipped", Unit.COUNT,
                   "test x GPU results the DCGM diag skipped or did not run",
                   higher_is_better=False),
    )
    params_model: ClassVar[type[BaseModel]] = DcgmDiagParams

    def available(self, ctx: CheckContext) -> str | None:
        if shutil.which("dcgmi") is None:
            return f"dcgmi is not installed ({dcgm.INSTALL_HINT})"
        return None

    def run(self, ctx: CheckContext, params: BaseModel) -> list[Measurement]:
        if not isinstance(p := params, DcgmDiagParams):
            raise TypeError(f"expected DcgmDiagParams, got {type(params).__name__}")
        diag = dcgm.run_diag(p.level, tool_budget(ctx))
        return dcgm.diag_measurements(diag, p.level)


class NvbandwidthParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Testcase names (nvbandwidth -l lists them); empty: every testcase.
    testcases: list[str] = Field(default_factory=list)


class NvbandwidthCheck(Check):
    name: ClassVar[str] = "gpu.nvbandwidth"
    domain: ClassVar[str] = "gpu"
    description: ClassVar[str] = "nvbandwidth: host and GPU-to-GPU copy matrices, weakest cell"
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        *(MetricSpec(f"gpu.nvbandwidth_{name}", Unit.BYTES_PER_SECOND,
                     f"nvbandwidth {name}: the weakest cell of its matrix")
          for name in nvbandwidth.BANDWIDTH_TESTCASES),
        *(MetricSpec(f"gpu.nvbandwidth_{name}", Unit.SECONDS,
                     f"nvbandwidth {name}: the slowest cell of its matrix",
                     higher_is_better=False)
          for name in nvbandwidth.LATENCY_TESTCASES),
        MetricSpec("gpu.nvbandwidth_failed_testcases", Unit.COUNT,
                   "nvbandwidth testcases that failed (an error, an ASSERT) or were cut short",
                   higher_is_better=False),
        MetricSpec("gpu.nvbandwidth_waived_testcases", Unit.COUNT,
                   "nvbandwidth testcases waived (not applicable here, e.g. one GPU)",
                   higher_is_better=False),
    )
    params_model: ClassVar[type[BaseModel]] = NvbandwidthParams

    def available(self, ctx: CheckContext) -> str | None:
        if shutil.which("nvbandwidth") is None:
            return f"nvbandwidth is not installed ({nvbandwidth.INSTALL_HINT})"
        return None

    def run(self, ctx: CheckContext, params: BaseModel) -> list[Measurement]:
        if not isinstance(p := params, NvbandwidthParams):
            raise TypeError(f"expected NvbandwidthParams, got {type(params).__name__}")
        run = nvbandwidth.run_nvbandwidth(p.testcases, tool_budget(ctx))
        return nvbandwidth.bandwidth_measurements(run)


CHECKS: tuple[type[Check], ...] = (DcgmDiagCheck, NvbandwidthCheck)
