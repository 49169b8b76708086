"""Check parameters without pydantic, for the checks on `bench-agent health`'s path.

Why not pydantic here: importing it and building its models costs about 60 ms of
the run on the test VM, a fifth of what `bench-agent health` may take in all
(under 0.3 s, issue 16; benchmarks/bench_health.py). The passive checks take flat
parameters (lists of names, a map of counter readings) that need no more than
the few rules below. Every other check keeps its pydantic model.

A PlainParams class shows the code that validates parameters (config/loader.py,
cli/overrides.py, run/worker.py, health/runner.py) the face of a pydantic model
it uses: ``model_validate``, ``model_dump``, ``model_fields``, and a refusal
raised as pydantic's own ``ValidationError`` (built with
``pydantic_core.ValidationError.from_exception_data``, imported only when a
value is refused), so the messages ("Extra inputs are not permitted", "Input
should be a valid list") and the loader's per-key reporting are the same as for
a pydantic model with ``extra="forbid"``. It is stricter than pydantic's lax
mode in one way, on purpose: a reading (``float``) must be a finite number, not
a numeric string or a boolean.

A subclass is a frozen dataclass whose fields are annotated with one of
``ANNOTATIONS`` (checked when the class is made) and have defaults.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Self

# One refusal: (pydantic error type, location under the field, the input).
_Problem = tuple[str, tuple[str | int, ...], Any]


def _text_list(value: Any) -> tuple[Any, list[_Problem]]:
    if not isinstance(value, list | tuple):
        return value, [("list_type", (), value)]
    problems: list[_Problem] = [("string_type", (i,), v) for i, v in enumerate(value)
                                if not isinstance(v, str)]
    return list(value), problems


def _reading(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) \
        and math.isfinite(value)


def _readings(value: Any) -> tuple[Any, list[_Problem]]:
    if not isinstance(value, dict):
        return value, [("dict_type", (), value)]
    problems: list[_Problem] = [("string_type", (k, "[key]"), k) for k in value
                                if not isinstance(k, str)]
    problems += [("finite_number", (k,), v) for k, v in value.items() if not _reading(v)]
    return ({k: float(v) for k, v in value.items()} if not problems else value), problems


# The annotations a PlainParams field may have, as written in the class (the
# modules use `from __future__ import annotations`), and their validators.
ANNOTATIONS: dict[str, Callable[[Any], tuple[Any, list[_Problem]]]] = {
    "list[str]": _text_list,
    "dict[str, float]": _readings,
}


@dataclass(frozen=True)
class PlainField:
    """What the loader reads of a field (pydantic's FieldInfo.annotation)."""

    annotation: str


def _refusal(title: str, problems: list[tuple[str, tuple[str | int, ...], Any]]) -> Exception:
    from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

    details: list[InitErrorDetails] = []
    for kind, loc, value in problems:
        if kind == "finite_number":
            # Not a pydantic type name: a custom error with its own message.
            error: Any = PydanticCustomError("finite_number",
                                             "Input should be a finite number")
            details.append({"type": error, "loc": loc, "input": value})
        elif kind == "model_type":
            details.append({"type": kind, "loc": loc, "input": value,
                            "ctx": {"class_name": title}})
        else:
            details.append({"type": kind, "loc": loc, "input": value})
    return ValidationError.from_exception_data(title, details)


class PlainParams:
    """Base of a check's parameters validated without pydantic (module docstring)."""

    model_fields: ClassVar[dict[str, PlainField]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fields: dict[str, PlainField] = {}
        for klass in reversed(cls.__mro__):
            for name, annotation in vars(klass).get("__annotations__", {}).items():
                if annotation.startswith("ClassVar"):
                    continue
                if annotation not in ANNOTATIONS:
                    raise TypeError(f"{cls.__name__}.{name}: a PlainParams field is one of "
                                    f"{', '.join(ANNOTATIONS)}, not {annotation}")
                fields[name] = PlainField(annotation)
        cls.model_fields = fields

    @classmethod
    def model_validate(cls, data: Any) -> Self:
        """``data`` (a mapping of the suite's params) as this class, or pydantic's
        ValidationError naming every refused key."""
        if isinstance(data, cls):
            return data
        if not isinstance(data, dict):
            raise _refusal(cls.__name__, [("model_type", (), data)])
        # In pydantic's order: the fields' problems, then the unknown keys.
        problems: list[_Problem] = []
        values: dict[str, Any] = {}
        for name, field in cls.model_fields.items():
            if name in data:
                value, found = ANNOTATIONS[field.annotation](data[name])
                problems += [(kind, (name, *loc), bad) for kind, loc, bad in found]
                values[name] = value
        problems += [("extra_forbidden", (key,), value) for key, value in data.items()
                     if key not in cls.model_fields]
        if problems:
            raise _refusal(cls.__name__, problems)
        return cls(**values)

    def model_dump(self, *, mode: str = "python") -> dict[str, Any]:
        """The fields as plain data (copies: the caller may change them)."""
        # Every subclass is a dataclass (module docstring); this base class is not one.
        dumped: dict[str, Any] = asdict(self)  # type: ignore[call-overload]
        return dumped
