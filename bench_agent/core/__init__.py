"""Records, units, errors, statistics, thresholds, strict input readers and the
subprocess seam: what every other layer builds on. Imports nothing else of bench_agent."""
