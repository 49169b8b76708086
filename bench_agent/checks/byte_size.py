"""A pydantic params field in bytes that a suite's YAML may write with a unit.

    size: ByteSize = Field(default=16 * GIB, ge=MIB)   # "64 MiB", "16G" or 17179869184

Apart from checks/base.py so that the checks which need no pydantic (the passive
health checks, checks/plain_params.py) do not import it through their base class.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator

from bench_agent.core.errors import UnitError
from bench_agent.core.units import Unit, parse_quantity


def _bytes_from_text(value: Any) -> Any:
    """ "4 MiB" or "16G" as a whole number of bytes; anything else goes on to
    pydantic's own int validation (and its ge/le bounds)."""
    if isinstance(value, str):
        try:
            return int(parse_quantity(value, Unit.BYTES).value)
        except UnitError as exc:
            raise ValueError(str(exc)) from exc
    return value


ByteSize = Annotated[int, BeforeValidator(_bytes_from_text)]
