"""Spread within the node: every GPU against the best GPU of the same model here.

A node can clear its model's baseline while one GPU lags (a board with a weak
power stage, a bad fan, HBM running slower): training runs at the pace of the
slowest rank, so that GPU costs the whole node. gpu.matmul and gpu.hbm already
measure every GPU at once in the same run; this turns their per-GPU figures into
``<value> / <best GPU of the same model>`` per GPU, which the profile holds to a
stated fraction (gpu-node: 0.9, 10 % behind the best at most). Like is compared
with like: the same check, the same shape, the same moment, the same model (GPUs
of other models in the node are compared among themselves).

A rule inside the two checks rather than a check of its own: a separate check
would have to measure again, at another moment and temperature, which is what
the comparison must not mix.
"""

from __future__ import annotations

import collections

from bench_agent.checks.base import MetricSpec
from bench_agent.core.model import Measurement
from bench_agent.core.units import Unit

MATMUL_OF_BEST = MetricSpec(
    "gpu.matmul_of_best", Unit.COUNT,
    "the GPU's matmul / the best GPU of its model in the node (its worst precision)",
    per_device=True)
HBM_OF_BEST = MetricSpec(
    "gpu.hbm_copy_of_best", Unit.COUNT,
    "the GPU's device copy bandwidth / the best GPU of its model in the node",
    per_device=True)


def of_best(check: str, metric: str, per_gpu: list[Measurement], models: dict[str, str]
            ) -> list[Measurement]:
    """One ``metric`` per GPU: the lowest, over the per-GPU metrics given (one per
    precision), of its value over the best value of its model for that metric."""
    worst: dict[str, tuple[float, str, float]] = {}
    groups: dict[tuple[str, str], list[Measurement]] = collections.defaultdict(list)
    for m in per_gpu:
        groups[(m.metric, models.get(m.device, ""))].append(m)
    for (source, _model), group in groups.items():
        best = max(group, key=lambda m: m.value)
        if best.value <= 0:
            continue
        for m in group:
            ratio = m.value / best.value
            if m.device not in worst or ratio < worst[m.device][0]:
                worst[m.device] = (ratio, source, best.value)
    out = []
    for device, (ratio, source, best_value) in sorted(worst.items()):
        peers = [m for m in per_gpu if m.metric == source
                 and models.get(m.device, "") == models.get(device, "")]
        best_device = max(peers, key=lambda m: m.value).device
        out.append(Measurement(
            check=check, metric=metric, value=ratio, unit=Unit.COUNT, device=device,
            tool="torch", params={"worst_metric": source, "best_gpu": best_device,
                                  "best_value": best_value, "model": models.get(device, ""),
                                  "gpus_compared": len(peers)}))
    return out
