"""`bench-agent health`: fast passive checks in-process (docs/health.md).

``run_health(profile, state, ...) -> Report`` is the entry point for other code
(the Slurm and Kubernetes integrations); ``run_health_full`` also returns the
state it read and the readings it keeps.
"""

from bench_agent.health.runner import run_health as run_health
from bench_agent.health.runner import run_health_full as run_health_full
