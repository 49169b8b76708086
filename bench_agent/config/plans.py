"""What a loaded suite and profile are (Suite, CheckPlan, Profile), apart from how
they are loaded, and their plain-data form.

config/loader.py reads the YAML files strictly and validates them through
pydantic models into these records. They live here, with no YAML or pydantic
import, so that code which only holds a plan (run/runner.py, report/progress.py,
`bench-agent health`'s plan cache, health/plan_cache.py) does not pay for the
loader: pydantic's import alone is a fifth of health's 0.3 s budget (issue 16).

``to_dict``/``from_dict`` round-trip a plan exactly (the plan cache stores the
result of a full load and hands it back while its sources are unchanged); the
``from_dict`` side raises ValueError, KeyError or TypeError on damaged data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench_agent.core.config_rules import Expectation
from bench_agent.core.errors import ConfigError
from bench_agent.core.thresholds import Threshold


def data_dir() -> Path:
    """The suites folder: inside the installed wheel, or the repository's own."""
    packaged = Path(__file__).resolve().parents[1] / "_data" / "suites"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "suites"


def suite_path(name: str) -> Path:
    return data_dir() / f"{name}.yaml"


def did_you_mean(name: str, known: list[str], what: str) -> str:
    """The nearest known names to a misspelt one (difflib's ratio, as the metric
    catalog's unknown_metric), not the whole list: that is `bench-agent list`."""
    import difflib

    near = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    if near:
        return f"did you mean {', '.join(near)}? (every {what}: bench-agent list)"
    return f"see `bench-agent list` for every {what}"


def profile_names() -> list[str]:
    return sorted(p.stem for p in (data_dir() / "profiles").glob("*.yaml"))


def resolve_profile_path(name_or_path: str, relative_to: Path | None = None) -> Path:
    """A profile by name (shipped), or by path (a user's own file)."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml"):
        if not candidate.is_absolute() and relative_to is not None:
            beside = relative_to / candidate
            if beside.is_file():
                return beside
        if candidate.is_file():
            return candidate
        raise ConfigError("no such profile file", file=name_or_path)
    shipped = data_dir() / "profiles" / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    if relative_to is not None and (relative_to / f"{name_or_path}.yaml").is_file():
        return relative_to / f"{name_or_path}.yaml"
    raise ConfigError(
        f"unknown profile {name_or_path!r}; "
        + did_you_mean(name_or_path, profile_names(), "profile"))


@dataclass(frozen=True)
class CheckPlan:
    """One check to run: validated params (as a dict), time limit, required flag."""

    check: str
    params: dict[str, Any]
    timeout: float
    required: bool
    confirm: int = 0  # re-runs of a FAIL before it stands (suite `confirm: N`)


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    checks: list[CheckPlan]
    path: str
    sha256: str
    profile: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "path": self.path,
                "sha256": self.sha256, "profile": self.profile,
                "checks": [dataclasses.asdict(plan) for plan in self.checks]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Suite:
        plans = []
        for raw in data["checks"]:
            if not isinstance(raw, dict) or not isinstance(raw.get("params"), dict):
                raise ValueError(f"a check plan is an object with params, got {raw!r:.80}")
            plans.append(CheckPlan(check=_text(raw, "check"), params=raw["params"],
                                   timeout=_number(raw, "timeout"),
                                   required=_flag(raw, "required"),
                                   confirm=int(_number(raw, "confirm"))))
        profile = data["profile"]
        return cls(_text(data, "name"), _text(data, "description"), plans, _text(data, "path"),
                   _text(data, "sha256"), None if profile is None else str(profile))


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    thresholds: list[Threshold]
    path: str
    sha256: str
    sources: list[str] = field(default_factory=list)
    # The expected topology file (resolved path), inherited from the parent profile.
    topology: str | None = None
    # The configuration section: the facts' allowed values (config/expected.py).
    configuration: tuple[Expectation, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        # Threshold.to_dict leaves out what the loader fills from the metric catalog
        # (checks, meaning); a plan keeps them.
        return {"name": self.name, "description": self.description, "path": self.path,
                "sha256": self.sha256, "sources": list(self.sources),
                "topology": self.topology,
                "thresholds": [{**t.to_dict(), "checks": list(t.checks), "meaning": t.meaning}
                               for t in self.thresholds],
                "configuration": [e.to_dict() for e in self.configuration]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Profile:
        thresholds = []
        for raw in data["thresholds"]:
            rule = Threshold.from_dict(raw)
            checks = raw["checks"]
            if not isinstance(checks, list) or not all(isinstance(c, str) for c in checks):
                raise ValueError(f"threshold {rule.id!r}: checks must be a list of names")
            thresholds.append(dataclasses.replace(rule, checks=tuple(checks),
                                                  meaning=_text(raw, "meaning")))
        sources = data["sources"]
        if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
            raise ValueError("sources must be a list of paths")
        topology = data["topology"]
        return cls(_text(data, "name"), _text(data, "description"), thresholds,
                   _text(data, "path"), _text(data, "sha256"), sources,
                   None if topology is None else str(topology),
                   tuple(Expectation.from_dict(e) for e in data["configuration"]))


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data[key]
    if not isinstance(value, str):
        raise ValueError(f"{key} must be text, got {value!r:.80}")
    return value


def _number(data: Mapping[str, Any], key: str) -> float:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} must be a number, got {value!r:.80}")
    return float(value)


def _flag(data: Mapping[str, Any], key: str) -> bool:
    value = data[key]
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false, got {value!r:.80}")
    return value
