"""bench-agent: node acceptance and burn-in measurements for AI cluster nodes."""

__version__ = "0.1.0"
