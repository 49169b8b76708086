"""NCCL collective checks: all_reduce, all_gather, reduce_scatter with torch.distributed.

Each check launches collective.py under torchrun, one rank per local GPU (nccl
backend), and turns the largest size's figures into measurements: busbw and algbw
(nccl-tests formulas), #wrong over all sizes, and busbw as a fraction of the
model's 8-GPU baseline. Several nodes: `bench-agent run nccl --nnodes N
--rdzv-endpoint HOST:PORT` on each (options reach the check as ctx.options).

The backend can be forced to gloo for a CPU run (tests, or a smoke test of the
launcher on a node without GPUs): then ``nproc`` processes share the CPU and the
figures say nothing about a fabric.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from bench_agent.checks.base import Check, CheckContext, MetricSpec
from bench_agent.checks.byte_size import ByteSize
from bench_agent.config import baselines
from bench_agent.core.errors import NotApplicable, ToolFailed
from bench_agent.core.model import Measurement
from bench_agent.core.units import Unit

MIB = 1 << 20
GIB = 1 << 30


class CollectiveParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Sizes 1 MiB .. 8 GiB doubling (capped by memory): 8 GiB is where the busbw
    # baselines hold (suites/baselines/: min_bytes 8 GiB; AzNHC judges 8×H100 at 16 GiB).
    min_bytes: ByteSize = MIB
    max_bytes: ByteSize = 8 * GIB
    factor: int = Field(default=2, ge=2)
    warmup: int = Field(default=5, ge=0)
    iterations: int = Field(default=20, ge=1)
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    backend: Literal["auto", "nccl", "gloo"] = "auto"
    # Ranks on this node; default one per GPU (gloo: 2).
    nproc: int | None = Field(default=None, ge=1)
    # Self-test of the #wrong check: this rank adds 1000 to 10 of its elements.
    corrupt_rank: int | None = None


class CollectiveCheck(Check):
    collective: ClassVar[str]
    domain: ClassVar[str] = "nccl"
    params_model: ClassVar[type[BaseModel]] = CollectiveParams

    def available(self, ctx: CheckContext) -> str | None:
        try:
            import torch  # noqa: F401
        except ImportError:
            return "torch is not installed (pip install 'bench-agent[gpu]')"
        return None

    def run(self, ctx: CheckContext, params: BaseModel) -> list[Measurement]:
        from bench_agent.checks.gpu.checks import torch_gpu_reason
        from bench_agent.checks.gpu.presence import skip_or_fail
        from bench_agent.checks.nccl.collective import launch

        if not isinstance(p := params, CollectiveParams):
            raise TypeError(f"expected CollectiveParams, got {type(params).__name__}")
        backend = p.backend if p.backend != "auto" else None
        if backend != "gloo" and (why := torch_gpu_reason()) is not None:
            raise NotApplicable(skip_or_fail(ctx.root, f"{why}; the nccl backend needs GPUs"))
        if p.nproc is not None:
            nproc = p.nproc
        elif backend == "gloo":
            nproc = 2
        else:
            import torch

            nproc = torch.cuda.device_count()
        request = {"backend": backend, "collectives": [self.collective],
                   "min_bytes": p.min_bytes, "max_bytes": p.max_bytes, "factor": p.factor,
                   "warmup": p.warmup, "iterations": p.iterations, "dtype": p.dtype,
                   "corrupt_rank": p.corrupt_rank}
        options = ctx.options
        result, tail = launch(request, nproc, ctx.timeout * 0.95, nnodes=options.nnodes,
                              rdzv_endpoint=options.rdzv_endpoint,
                              rdzv_id=options.rdzv_id or "bench-agent-nccl")
        if result is None:
            raise ToolFailed("torchrun", tail)
        return self.measurements(result)

    def measurements(self, result: dict[str, Any]) -> list[Measurement]:
        rows = result["results"][self.collective]
        if not rows:
            raise ToolFailed("torchrun", "no size fit in memory: "
                             f"dropped {result.get('dropped_sizes')}")
        largest = max(rows, key=lambda r: r["size_bytes"])
        ranks = int(result["world_size"])
        params = {
            "collective": self.collective, "backend": result["backend"], "ranks": ranks,
            "nnodes": result.get("nnodes"), "size_bytes": largest["size_bytes"],
            "placement": "out-of-place check; timed in place for all_reduce (collective.py)",
            "time_s": largest["time_s_max"], "time_across_ranks": "max (mean in rows)",
            "dtype": largest["type"], "rows": rows, "dropped_sizes": result["dropped_sizes"],
            "nccl_version": result.get("nccl_version"), "gpu_name": result.get("gpu_name"),
        }
        version = result.get("nccl_version") or result.get("torch", "")
        tool = "torch.distributed/" + result["backend"]

        def m(metric: str, value: float, unit: Unit) -> Measurement:
            return Measurement(check=self.name, metric=f"nccl.{self.collective}_{metric}",
                               value=value, unit=unit, tool=tool, tool_version=version,
                               params=params)

        busbw = m("busbw", largest["busbw"], Unit.BYTES_PER_SECOND)
        out = [busbw, m("algbw", largest["algbw"], Unit.BYTES_PER_SECOND),
               m("wrong", sum(r["wrong"] for r in rows), Unit.COUNT),
               m("avg_busbw", sum(r["busbw"] for r in rows) / len(rows),
                 Unit.BYTES_PER_SECOND)]
        name = result.get("gpu_name")
        if name and result.get("nnodes") == 1:
            # The 8-GPU baselines are single-node NVLink figures.
            frac = baselines.fraction(busbw, baselines.baseline_for(name), ranks=ranks,
                                      size_bytes=largest["size_bytes"])
            if frac is not None:
                out.append(frac)
        return out


def _metrics(collective: str) -> tuple[MetricSpec, ...]:
    """nccl-tests' formulas (doc/PERFORMANCE.md): busbw and algbw at the largest
    size, out-of-place; wrong = elements that differ from the exact result."""
    return (
        MetricSpec(f"nccl.{collective}_busbw", Unit.BYTES_PER_SECOND,
                   f"{collective} bus bandwidth, largest size"),
        MetricSpec(f"nccl.{collective}_algbw", Unit.BYTES_PER_SECOND,
                   f"{collective} algorithm bandwidth, largest size"),
        MetricSpec(f"nccl.{collective}_wrong", Unit.COUNT,
                   f"{collective} wrong elements, all sizes", higher_is_better=False),
        MetricSpec(f"nccl.{collective}_avg_busbw", Unit.BYTES_PER_SECOND,
                   f"{collective} bus bandwidth, mean of all sizes"),
    )


class AllReduceCheck(CollectiveCheck):
    name: ClassVar[str] = "nccl.all_reduce"
    collective: ClassVar[str] = "all_reduce"
    description: ClassVar[str] = "all_reduce busbw and #wrong, torch.distributed under torchrun"
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        *_metrics("all_reduce"),
        MetricSpec("nccl.all_reduce_busbw_baseline_fraction", Unit.COUNT,
                   "all_reduce busbw / the model's 8-GPU baseline"))


class AllGatherCheck(CollectiveCheck):
    name: ClassVar[str] = "nccl.all_gather"
    collective: ClassVar[str] = "all_gather"
    description: ClassVar[str] = "all_gather busbw and #wrong, torch.distributed under torchrun"
    metrics: ClassVar[tuple[MetricSpec, ...]] = _metrics("all_gather")


class ReduceScatterCheck(CollectiveCheck):
    name: ClassVar[str] = "nccl.reduce_scatter"
    collective: ClassVar[str] = "reduce_scatter"
    description: ClassVar[str] = "reduce_scatter busbw and #wrong, torch.distributed"
    metrics: ClassVar[tuple[MetricSpec, ...]] = _metrics("reduce_scatter")


# The checks of this module, in `bench-agent list` order (checks/__init__.py finds them).
CHECKS: tuple[type[Check], ...] = (AllReduceCheck, AllGatherCheck, ReduceScatterCheck)
