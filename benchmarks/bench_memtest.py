"""The memory test's bandwidth beside the device copy bandwidth of the same device.

    python benchmarks/bench_memtest.py [--gib 8] [--seconds 60]

The issue's target on a GPU: the patterns move at least half the HBM copy
bandwidth (every word written and every word read counted once, as the copy
counts read + write). Without a GPU it runs on the CPU over 64 MiB, where the
figures only show the overhead of the block loop (a shared machine is noisy).

It reports and does not assert: the exit code is 0 whatever the figures.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main() -> int:
    import torch

    from bench_agent.checks.gpu.kernels import (
        GIB,
        MIB,
        CudaEventTimer,
        PerfCounterTimer,
        Timer,
        rates,
        time_copies,
    )
    from bench_agent.checks.gpu.memtest import PATTERNS, run_patterns

    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser()
    parser.add_argument("--gib", type=float, default=8.0 if cuda else 1 / 16)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--block-mib", type=int, default=512 if cuda else 8)
    args = parser.parse_args()
    device = "cuda:0" if cuda else "cpu"
    size = int(args.gib * GIB)
    block = args.block_mib * MIB
    size -= size % block
    timer: Timer = CudaEventTimer(torch) if cuda else PerfCounterTimer()
    copy = time_copies(torch, device, min(size // 2, 4 * GIB), 3, 20, timer, host=False)
    copy_rate = statistics.median(rates(copy["hbm_copy"]["bytes_counted"],
                                        copy["hbm_copy"]["seconds"]))
    buffer = torch.empty(size, dtype=torch.uint8, device=device)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    found = run_patterns(torch, buffer, list(PATTERNS), args.seconds, block, 1, sync)
    name = torch.cuda.get_device_name(device) if cuda else "CPU"
    print(f"{name}: {size / GIB:.2f} GiB under test, blocks of {block // MIB} MiB; "
          f"device copy {copy_rate / 1e9:.1f} GB/s (read+write)")
    print(f"  {'pattern':<18} {'passes':>6} {'seconds':>8} {'GB/s':>9} {'/ copy':>7}")
    moved = spent = 0.0
    for pattern, run in found["patterns"].items():
        rate = run["bytes_moved"] / run["seconds"] if run["seconds"] > 0 else 0.0
        moved += run["bytes_moved"]
        spent += run["seconds"]
        print(f"  {pattern:<18} {run['passes']:>6} {run['seconds']:>8.2f} {rate / 1e9:>9.1f} "
              f"{rate / copy_rate:>7.2f}")
    if spent > 0:
        total = moved / spent
        print(f"  {'all':<18} {'':>6} {spent:>8.2f} {total / 1e9:>9.1f} "
              f"{total / copy_rate:>7.2f}  (target >= 0.5 on a GPU)")
    if found["not_run"]:
        print(f"  not run within {args.seconds:g} s: {', '.join(found['not_run'])}")
    print(f"  errors: {found['errors']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
