"""Suites, profiles and baselines: strict YAML in, validated pydantic models out."""
