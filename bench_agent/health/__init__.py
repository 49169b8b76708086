"""`bench-agent health`: fast passive checks in-process (see runner.run_health)."""
