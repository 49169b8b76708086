"""Scheduler integration: take a node out of Slurm or Kubernetes when its health
run fails, and put it back when it passes, touching only what bench-agent set.

    summary        Report -> HealthSummary (pass/warn/fail, the faults, id, time)
    report_source  the health Report: bench_agent.health.run_health when present,
                   else the runner's inventory check; run under a time budget
    slurm          scontrol show node / update: drain with our reason, resume ours
    kube           node labels, annotations and our NoSchedule taint
"""
