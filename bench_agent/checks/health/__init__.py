"""Passive health checks: `bench-agent health` runs them in-process (bench_agent/health)."""
