"""gpu.sdc: silent data corruption, caught by computing the same thing twice.

Every GPU computes, several times, a fixed-seed GEMM and a few training steps of a
small fixed-seed MLP, and hashes each result's bytes (SHA-256). The same inputs,
the same library and the same model of GPU give the same bits: cuBLAS results are
bit-wise reproducible run to run on GPUs of one architecture and SM count (cuBLAS
documentation, "Results reproducibility",
https://docs.nvidia.com/cuda/cublas/#results-reproducibility), given deterministic algorithms
(torch.use_deterministic_algorithms with CUBLAS_WORKSPACE_CONFIG=:4096:8, PyTorch
"Reproducibility" notes). So a hash that differs from the GPU's own first repeat,
or from the hash most GPUs of the same model computed, is a GPU computing wrong
numbers without any error raised: the class of fault Meta's and Google's fleet
studies call silent data corruption (Dixit et al., "Silent Data Corruptions at
Scale", arXiv:2102.11245). It FAILs, naming the GPU's serial and UUID.

Inputs are drawn on the CPU from fixed seeds and copied, so no GPU random number
generator enters the comparison. The seam for tests: ``use_perturbation(hook)``
calls ``hook(kind, repeat, tensor)`` on each result before it is hashed; a test
perturbs one rank and sees it named.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from bench_agent.checks.base import CheckContext, MetricSpec
from bench_agent.checks.gpu.diag import DiagCheck, gpu_identities, gpu_label
from bench_agent.checks.gpu.kernels import Device, gpu_kernel
from bench_agent.core.model import Measurement
from bench_agent.core.units import Unit

KINDS = ("gemm", "mlp")
# (kind, repeat, result tensor) -> None; may change the tensor in place.
Perturbation = Callable[[str, int, Any], None]
_perturbation: Perturbation | None = None


@contextlib.contextmanager
def use_perturbation(hook: Perturbation) -> Iterator[None]:
    """The seam: ``hook`` sees (and may change) each result before it is hashed."""
    global _perturbation
    previous, _perturbation = _perturbation, hook
    try:
        yield
    finally:
        _perturbation = previous


def digest(torch: Any, kind: str, repeat: int, tensor: Any) -> str:
    if _perturbation is not None:
        _perturbation(kind, repeat, tensor)
    data = tensor.detach().contiguous().cpu().view(torch.uint8).numpy().tobytes()
    return hashlib.sha256(data).hexdigest()


def _dtype(torch: Any, name: str) -> Any:
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


def gemm(torch: Any, device: str, n: int, dtype: str, seed: int) -> Any:
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=_dtype(torch, dtype))
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=_dtype(torch, dtype))
    return a @ b


def mlp_steps(torch: Any, device: str, width: int, depth: int, batch: int, steps: int,
              seed: int) -> Any:
    """``steps`` of plain SGD on a ReLU MLP (fp32), from fixed weights and data; the
    flattened final weights. Forward, backward and update all run on the GPU."""
    gen = torch.Generator().manual_seed(seed)
    weights = [(torch.randn(width, width, generator=gen) / width ** 0.5).to(device)
               .requires_grad_() for _ in range(depth)]
    x = torch.randn(batch, width, generator=gen).to(device)
    target = torch.randn(batch, width, generator=gen).to(device)
    for _ in range(steps):
        h = x
        for i, w in enumerate(weights):
            h = h @ w
            if i < depth - 1:
                h = torch.relu(h)
        loss = ((h - target) ** 2).mean()
        grads = torch.autograd.grad(loss, weights)
        with torch.no_grad():
            for w, g in zip(weights, grads, strict=True):
                w -= 0.01 * g
    return torch.cat([w.detach().flatten() for w in weights])


@gpu_kernel
def sdc_kernel(dev: Device, task: dict[str, Any]) -> dict[str, Any]:
    """Hashes of each repeat of the GEMM and of the MLP steps on one device."""
    torch = dev.torch
    # Read when cuBLAS makes its handle, i.e. at the first product, which comes after
    # this (PyTorch "Reproducibility": required for deterministic cuBLAS on CUDA >= 10.2).
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    dev.barrier()
    out: dict[str, list[str]] = {kind: [] for kind in KINDS}
    try:
        for repeat in range(int(task.get("repeats", 5))):
            out["gemm"].append(digest(torch, "gemm", repeat, gemm(
                torch, dev.name, int(task.get("n", 4096)), str(task.get("dtype", "bf16")),
                int(task.get("seed", 14)))))
            out["mlp"].append(digest(torch, "mlp", repeat, mlp_steps(
                torch, dev.name, int(task.get("width", 1024)), int(task.get("depth", 4)),
                int(task.get("batch", 256)), int(task.get("steps", 5)),
                int(task.get("seed", 14)))))
    finally:
        torch.use_deterministic_algorithms(previous)
    return {"sdc": out}


class SdcParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    repeats: int = Field(default=5, ge=2)
    # 4096³ bf16: large enough to run every SM and the tensor cores, a few ms each.
    n: int = Field(default=4096, ge=16)
    dtype: Literal["bf16", "fp16", "fp32"] = "bf16"
    width: int = Field(default=1024, ge=8)
    depth: int = Field(default=4, ge=1)
    batch: int = Field(default=256, ge=1)
    steps: int = Field(default=5, ge=1)
    seed: int = 14


def compare(per_gpu: dict[int, dict[str, list[str]]], models: dict[int, str]
            ) -> dict[int, dict[str, Any]]:
    """Per GPU: repeats that differ from its own first, and whether its first differs
    from the hash most GPUs of its model computed (a strict majority; without one,
    every GPU outside the largest group is suspect and the note says so)."""
    found: dict[int, dict[str, Any]] = {i: {"repeats": {}, "across": {}, "notes": []}
                                        for i in per_gpu}
    for index, hashes in per_gpu.items():
        for kind in KINDS:
            first = hashes[kind][0]
            found[index]["repeats"][kind] = [r for r, h in enumerate(hashes[kind]) if h != first]
    by_model: dict[str, list[int]] = collections.defaultdict(list)
    for index in per_gpu:
        by_model[models[index]].append(index)
    for model, indices in by_model.items():
        for kind in KINDS:
            if len(indices) < 2:
                found[indices[0]]["notes"].append(
                    f"{kind}: the only {model} here, compared across its repeats only")
                continue
            counts = collections.Counter(per_gpu[i][kind][0] for i in indices)
            reference, most = counts.most_common(1)[0]
            majority = most * 2 > len(indices)
            for i in indices:
                if per_gpu[i][kind][0] != reference:
                    found[i]["across"][kind] = per_gpu[i][kind][0][:16]
                elif not majority:
                    found[i]["across"][kind] = per_gpu[i][kind][0][:16]
                    found[i]["notes"].append(
                        f"{kind}: no majority among the {len(indices)} {model} GPUs "
                        f"({len(counts)} different results): which is wrong cannot be told")
    return found


class SdcCheck(DiagCheck):
    name: ClassVar[str] = "gpu.sdc"
    description: ClassVar[str] = ("silent data corruption: fixed-seed GEMM and MLP steps, "
                                  "bit-for-bit across repeats and GPUs")
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("gpu.sdc_mismatches", Unit.COUNT,
                   "results that differ bit for bit from the GPU's own first repeat or "
                   "from its model's majority", higher_is_better=False, per_device=True),
    )
    params_model: ClassVar[type[BaseModel]] = SdcParams
    kernel: ClassVar[str] = "bench_agent.checks.gpu.sdc:sdc_kernel"

    def run(self, ctx: CheckContext, params: BaseModel) -> list[Measurement]:
        if not isinstance(p := params, SdcParams):
            raise TypeError(f"expected SdcParams, got {type(params).__name__}")
        indices, results = self.run_kernel(ctx, p.model_dump(), "gpu sdc")
        idents, note = gpu_identities(indices)
        per_gpu = {i: r["sdc"] for i, r in zip(indices, results, strict=True)}
        models = {i: idents.get(i, {}).get("name") or r.get("name") or "unknown model"
                  for i, r in zip(indices, results, strict=True)}
        found = compare(per_gpu, models)
        out = []
        for index in indices:
            f, ident = found[index], idents.get(index, {})
            count = sum(len(v) for v in f["repeats"].values()) + len(f["across"])
            out.append(self.m(
                "gpu.sdc_mismatches", count, device=f"gpu{index}", **ident,
                gpu=gpu_label(index, ident), model=models[index], identity_note=note,
                repeats_differing=f["repeats"], differs_from_model=f["across"],
                notes=f["notes"], first_hashes={k: per_gpu[index][k][0][:16] for k in KINDS},
                repeats=p.repeats, gemm=f"{p.n}^3 {p.dtype}",
                mlp=f"{p.depth}x{p.width} fp32, batch {p.batch}, {p.steps} SGD steps"))
        return out
