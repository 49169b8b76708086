"""Files shipped in the package beside the code: the systemd units (SYSTEMD)."""

from pathlib import Path

SYSTEMD = Path(__file__).resolve().parent / "systemd"
UNITS = ("bench-agent-health.service", "bench-agent-health.timer",
         "bench-agent-acceptance.service", "bench-agent-acceptance.timer")
