"""PlainParams (checks/plain_params.py) refuses what a pydantic model with
extra="forbid" refuses, with pydantic's own error, so the suite loader names the
same key with the same words; it is stricter on readings (finite numbers only)."""

from __future__ import annotations

import math
import textwrap
from dataclasses import FrozenInstanceError, dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bench_agent.checks.base import NoParams
from bench_agent.checks.health.common import HealthParams
from bench_agent.checks.health.node import FilesystemParams, ServiceParams
from bench_agent.checks.plain_params import PlainParams
from bench_agent.config.loader import load_suite
from bench_agent.core.errors import ConfigError


class _PydanticTwin(BaseModel):
    """What ServiceParams was, as pydantic: the reference for the messages."""

    model_config = ConfigDict(extra="forbid")
    since: dict[str, float] = Field(default_factory=dict)
    services: list[str] = Field(default_factory=list)
    modules: list[str] = Field(default_factory=list)


def _errors(model: Any, data: Any) -> list[tuple[tuple[Any, ...], str, str]]:
    with pytest.raises(ValidationError) as exc:
        model.model_validate(data)
    return [(tuple(e["loc"]), e["type"], e["msg"]) for e in exc.value.errors()]


@pytest.mark.parametrize("data", [
    {"servces": ["sshd"]},  # a misspelt key
    {"services": "sshd"},  # one name, not a list
    {"services": ["sshd", 7]},  # a number among the names
    {"since": ["a"]},  # not a mapping
    {"modules": None, "extra": 1},
    "services: [sshd]",  # not a mapping at all
])
def test_refusals_are_pydantics_own(data: Any) -> None:
    twin = [(loc, kind, msg.replace("_PydanticTwin", "ServiceParams"))
            for loc, kind, msg in _errors(_PydanticTwin, data)]
    assert _errors(ServiceParams, data) == twin


def test_accepted_values_and_defaults_match_pydantic() -> None:
    data = {"services": ["sshd", "nv-hostengine"], "modules": ["nvidia_peermem"],
            "since": {"health.ib_link_downed@mlx5_0/1": 3}}
    plain = ServiceParams.model_validate(data)
    assert plain.model_dump() == _PydanticTwin.model_validate(data).model_dump()
    assert plain.since == {"health.ib_link_downed@mlx5_0/1": 3.0}
    assert isinstance(plain.since["health.ib_link_downed@mlx5_0/1"], float)
    assert ServiceParams().model_dump() == _PydanticTwin().model_dump()
    assert FilesystemParams().free == ["/"]
    assert NoParams.model_validate({}) == NoParams()
    assert ServiceParams.model_validate(plain) is plain


def test_a_dump_is_a_copy_and_the_params_are_frozen() -> None:
    plain = FilesystemParams.model_validate({"mounts": ["/data"]})
    plain.model_dump()["mounts"].append("/scratch")
    assert plain.mounts == ["/data"]
    with pytest.raises(FrozenInstanceError):
        plain.mounts = []  # type: ignore[misc]


@pytest.mark.parametrize("reading", [math.nan, math.inf, "12", True, None])
def test_a_reading_is_a_finite_number(reading: Any) -> None:
    errors = _errors(HealthParams, {"since": {"health.gpu_xid@kmsg": reading}})
    assert errors == [(("since", "health.gpu_xid@kmsg"), "finite_number",
                       "Input should be a finite number")]


def test_model_fields_name_the_fields_for_the_loaders_suggestions() -> None:
    assert list(ServiceParams.model_fields) == ["since", "services", "modules"]
    assert list(NoParams.model_fields) == []


def test_a_field_of_another_type_is_refused_when_the_class_is_made() -> None:
    with pytest.raises(TypeError, match=r"_Odd.limit: a PlainParams field is one of "
                                        r"list\[str\], dict\[str, float\], not int"):
        @dataclass(frozen=True)
        class _Odd(PlainParams):
            limit: int = 3
            names: list[str] = field(default_factory=list)


def test_the_suite_loader_names_a_refused_health_param(tmp_path: Path) -> None:
    path = tmp_path / "my-health.yaml"
    path.write_text(textwrap.dedent("""
        name: my-health
        checks:
          - check: health.services
            params: {services: [sshd], modles: [nvidia_peermem]}
          - check: health.filesystems
            params: {mounts: /data}
    """), encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_suite(path)
    text = str(exc.value)
    assert "checks[0].params.modles: Extra inputs are not permitted" in text
    assert "checks[1].params.mounts: Input should be a valid list" in text


def test_the_suite_loader_keeps_valid_health_params(tmp_path: Path) -> None:
    path = tmp_path / "my-health.yaml"
    path.write_text("name: my-health\nchecks:\n  - check: health.services\n"
                    "    params: {services: [sshd, 'nv-hostengine'], modules: []}\n",
                    encoding="utf-8")
    plan = load_suite(path).checks[0]
    assert plan.params == {"since": {}, "services": ["sshd", "nv-hostengine"], "modules": []}
