"""Long runs: the checks' kernels in a loop, health sampled, judged by thresholds."""
