"""Suites (what runs) and profiles (what passes): load, validate, resolve.

Both are YAML files shipped inside the wheel (``suites/`` and
``suites/profiles/``). Every problem is a ConfigError naming the file, the key
and what was expected; values with units ("10 GB/s", "128 GiB") are parsed here
against the metric catalog, so a wrong dimension never reaches a run.
"""

from __future__ import annotations

import copy
import hashlib
import re
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)

from bench_agent.checks import metric_catalog
from bench_agent.config.expected import (
    ConfigEntry,
    FleetConfigEntry,
    expectations,
    section_thresholds,
)

# The records a load makes live in config/plans.py (no YAML, no pydantic); named
# here too, for the callers that load.
from bench_agent.config.plans import CheckPlan as CheckPlan
from bench_agent.config.plans import Profile as Profile
from bench_agent.config.plans import Suite as Suite
from bench_agent.config.plans import data_dir as data_dir
from bench_agent.config.plans import did_you_mean as did_you_mean
from bench_agent.config.plans import profile_names as profile_names
from bench_agent.config.plans import resolve_profile_path as resolve_profile_path
from bench_agent.config.plans import suite_path as suite_path
from bench_agent.core.config_rules import Expectation
from bench_agent.core.errors import ConfigError, UnitError, UsageError
from bench_agent.core.metrics import MetricInfo, unknown_metric
from bench_agent.core.thresholds import Comparator, Severity, Threshold
from bench_agent.core.units import parse_duration, parse_fraction, parse_quantity

ModelT = TypeVar("ModelT", bound=BaseModel)

DEFAULT_PROFILE = "guide-minimum"
DEFAULT_TIMEOUT_S = 300.0
# A check re-run more often than this is no confirmation but a loop; ten re-runs
# of the slowest acceptance check (600 s) already take well over an hour.
MAX_CONFIRM = 10
DOMAINS = ("cpu", "storage", "network", "gpu", "nccl")


def schema_dir() -> Path:
    packaged = Path(__file__).resolve().parents[1] / "_data" / "schema"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "results" / "schema"


# --- YAML with duplicate keys refused, depth and numbers bounded -----------------

# Suites and profiles nest three or four levels deep and hold numbers of a few
# digits. PyYAML's composer recurses once per level (a 20,000-deep "[[[...]]]"
# overflows Python's stack) and int() refuses more than 4,300 digits
# (CPython's int_max_str_digits, CVE-2020-10735): both bounds are met long
# before, with a ConfigError that says where.
MAX_YAML_DEPTH = 64
MAX_YAML_DIGITS = 100
_LONG_DIGITS = re.compile(rf"\d{{{MAX_YAML_DIGITS + 1},}}")


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one),
    nesting deeper than MAX_YAML_DEPTH and numbers longer than MAX_YAML_DIGITS."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                line = self.peek_event().start_mark.line + 1  # type: ignore[no-untyped-call]
                raise ConfigError(f"nested deeper than {MAX_YAML_DEPTH} levels at line {line}")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_scalar(self, node: yaml.Node) -> Any:
        if isinstance(node.value, str) and _LONG_DIGITS.search(node.value):
            line = node.start_mark.line + 1
            raise ConfigError(f"a number of more than {MAX_YAML_DIGITS} digits at line {line}")
        return super().construct_scalar(node)  # type: ignore[arg-type]


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node)
        if key in mapping:
            line = key_node.start_mark.line + 1
            raise ConfigError(f"duplicate key {key!r} at line {line}")
        mapping[key] = loader.construct_object(value_node, deep=True)
    return mapping


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml_text(raw: bytes | str, file: str) -> Any:
    """Parse YAML with the strict loader; every problem is a ConfigError naming ``file``."""
    try:
        return yaml.load(raw, Loader=_StrictLoader)
    except ConfigError as exc:
        raise ConfigError(str(exc), file=file) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", file=file) from exc
    except RecursionError as exc:
        # The depth bound comes first; this is the net under it.
        raise ConfigError("not valid YAML: nested too deeply", file=file) from exc
    except (ValueError, OverflowError) as exc:
        # A value PyYAML's constructors cannot build (int() digit limit, a bad
        # timestamp such as 2024-13-45).
        raise ConfigError(f"not valid YAML: {exc}", file=file) from exc


# Parsed documents by the SHA-256 of their bytes: the strict loader is pure Python
# (its nesting bound lives in the composer), and one process may read a file many
# times (each GPU check its model's baseline, `fleet` every report's profile). A
# copy is handed out: callers may change what they get.
_PARSED: dict[str, dict[str, Any]] = {}
_PARSED_MAX = 256


def read_yaml(path: Path) -> tuple[dict[str, Any], str]:
    """The parsed mapping and the sha256 of the file's bytes."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError("no such file", file=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=str(path)) from exc
    digest = hashlib.sha256(raw).hexdigest()
    known = _PARSED.get(digest)
    if known is not None:
        return copy.deepcopy(known), digest
    data = load_yaml_text(raw, str(path))
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping at the top level", file=str(path))
    if len(_PARSED) >= _PARSED_MAX:
        _PARSED.pop(next(iter(_PARSED)))
    _PARSED[digest] = copy.deepcopy(data)
    return data, digest


_read_yaml = read_yaml

class Problems:
    """Every problem of one file, so that one run of the command names them all:
    each step that may fail runs under ``collect()``; ``check()`` raises one
    ConfigError naming each (a single problem reads as it always did)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.found: list[ConfigError] = []

    @contextmanager
    def collect(self) -> Iterator[None]:
        try:
            yield
        except ConfigError as exc:
            self.found.extend(_PARTS.get(exc, [exc]))

    def check(self) -> None:
        if len(self.found) == 1:
            raise self.found[0]
        if self.found:
            raise combined(self.found, self.path)


# The problems a combined error was made of, so that a combined error collected
# again (a check's params inside a suite) adds its lines, not one nested block. A
# plain ConfigError, not a subclass: core/errors.py holds the exception tree.
_PARTS: weakref.WeakKeyDictionary[ConfigError, list[ConfigError]] = (
    weakref.WeakKeyDictionary())


def combined(problems: list[ConfigError], path: Path) -> ConfigError:
    """Several problems of one file as one error: a line for each, under the file."""
    prefix = f"{path}: "
    lines = [str(p).removeprefix(prefix) for p in problems]
    error = ConfigError(f"{len(lines)} problems:\n" + "\n".join(f"  {ln}" for ln in lines),
                        file=str(path))
    _PARTS[error] = problems
    return error


def params_error(exc: ValidationError, path: Path, key: str) -> ConfigError:
    """A check's (or a burn-in load's) params refused by its params_model, at ``key``;
    every refused parameter is named."""
    problems = [ConfigError(error["msg"], file=str(path),
                            key=f"{key}.{_key_path(error['loc'])}") for error in exc.errors()]
    return problems[0] if len(problems) == 1 else combined(problems, path)


def _key_path(loc: tuple[int | str, ...]) -> str:
    """pydantic's ("thresholds", 0, "value") as "thresholds[0].value"."""
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key


def validation_error(exc: ValidationError, path: Path, model: type[BaseModel] | None = None
                     ) -> ConfigError:
    """Every problem pydantic found, as a ConfigError naming the file and each key.

    Unknown keys come first: a misspelt key ("limt") is why the right one is
    missing, and the allowed keys name the fix.
    """
    errors = sorted(exc.errors(), key=lambda error: error["type"] != "extra_forbidden")
    # A key missing beside an unknown one is that key misspelt: one problem, not two.
    misspelt_in = {tuple(e["loc"][:-1]) for e in errors if e["type"] == "extra_forbidden"}
    errors = [e for e in errors
              if not (e["type"] == "missing" and tuple(e["loc"][:-1]) in misspelt_in)]
    problems = []
    for error in errors:
        message = error["msg"]
        if error["type"] == "extra_forbidden" and model is not None:
            message += f" (allowed keys: {', '.join(_allowed_keys(model, error['loc']))})"
        problems.append(ConfigError(message, file=str(path), key=_key_path(error["loc"])))
    return problems[0] if len(problems) == 1 else combined(problems, path)


def validated(data: Any, path: Path, model: type[ModelT]) -> ModelT:
    """``data`` through its file kind's model (extra="forbid"), or a ConfigError."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, path, model) from exc


def load_model(path: Path, model: type[ModelT]) -> tuple[ModelT, str]:
    """A YAML file of one kind (suite, baseline, burn-in): the strict loader, then the
    kind's pydantic model. (parsed, sha256 of the file's bytes)."""
    data, digest = read_yaml(path)
    return validated(data, path, model), digest


def _allowed_keys(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The field names of the (nested) model where an unknown key was found."""
    current: Any = model
    for part in loc[:-1]:
        fields = getattr(current, "model_fields", None)
        if isinstance(part, int) or fields is None or part not in fields:
            continue  # a list index or a mapping's key: the item's model stays
        current = _item_model(fields[part].annotation)
    return list(current.model_fields) if hasattr(current, "model_fields") else []


def _item_model(annotation: Any) -> Any:
    """The model inside an annotation: X of X, list[X], dict[str, X] or X | None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _item_model(arg)
        if found is not None:
            return found
    return None


# --- suites ------------------------------------------------------------------------


class _CheckEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    check: str
    params: dict[str, Any] = Field(default_factory=dict)
    timeout: str | float = DEFAULT_TIMEOUT_S
    required: bool = False
    # confirm-before-failing: re-run a FAIL up to this many times (docs/faults.md).
    confirm: int = Field(default=0, ge=0, le=MAX_CONFIRM, strict=True)


class _SuiteFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    profile: str | None = None
    # A suite of no check measures nothing: its report would be all SKIP.
    checks: list[_CheckEntry] = Field(min_length=1)


def load_suite(path: Path) -> Suite:
    from bench_agent.checks import check_names, get_check, is_check

    parsed, digest = load_model(path, _SuiteFile)
    plans: list[CheckPlan] = []
    problems = Problems(path)
    for index, entry in enumerate(parsed.checks):
        key = f"checks[{index}]"
        timeout = DEFAULT_TIMEOUT_S
        with problems.collect():
            try:
                timeout = parse_duration(entry.timeout)
            except UnitError as exc:
                raise ConfigError(str(exc), file=str(path), key=f"{key}.timeout") from exc
        with problems.collect():
            if not is_check(entry.check):
                raise ConfigError(
                    f"unknown check {entry.check!r}; "
                    + did_you_mean(entry.check, check_names(), "check"),
                    file=str(path),
                    key=f"{key}.check",
                )
            check = get_check(entry.check)
            try:
                params = check.params_model.model_validate(entry.params)
            except ValidationError as exc:
                raise params_error(exc, path, f"{key}.params") from exc
            plans.append(CheckPlan(entry.check, params.model_dump(), timeout, entry.required,
                                   entry.confirm))
    problems.check()
    return Suite(parsed.name, parsed.description, plans, str(path), digest, parsed.profile)


# Suites of another kind, run by their own command (`bench-agent burnin`).
OTHER_KIND_SUITES = ("burnin",)


def suite_names() -> list[str]:
    return sorted(p.stem for p in data_dir().glob("*.yaml") if p.stem not in OTHER_KIND_SUITES)


def resolve_targets(targets: list[str]) -> Suite:
    """Turn `run` arguments (domains, suite names, check names) into one suite.

    A domain is the suite of the same name. Several targets are merged in order;
    a check named twice runs once, with its first parameters.
    """
    from bench_agent.checks import check_names, get_check, is_check

    if not targets:
        targets = ["quick"]
    for target in targets:
        if target in OTHER_KIND_SUITES:
            raise UsageError(f"{target!r} is run with `bench-agent {target} --duration ...`")
    if len(targets) == 1 and suite_path(targets[0]).is_file():
        return load_suite(suite_path(targets[0]))
    plans: list[CheckPlan] = []
    digests: list[str] = []
    profile: str | None = None
    for target in targets:
        path = suite_path(target)
        if path.is_file():
            suite = load_suite(path)
            plans.extend(suite.checks)
            digests.append(suite.sha256)
            profile = profile or suite.profile
        elif is_check(target):
            defaults = get_check(target).params_model().model_dump()
            plans.append(CheckPlan(target, defaults, DEFAULT_TIMEOUT_S, False))
            digests.append(hashlib.sha256(target.encode()).hexdigest())
        else:
            known = list(dict.fromkeys([*DOMAINS, *suite_names(), *check_names()]))
            raise UsageError(f"{target!r} is not a domain, suite or check; "
                             + did_you_mean(target, known, "domain, suite and check"))
    unique: dict[str, CheckPlan] = {}
    for plan in plans:
        unique.setdefault(plan.check, plan)
    digest = hashlib.sha256("\n".join(digests).encode()).hexdigest()
    return Suite("+".join(targets), "", list(unique.values()), "", digest, profile)


# --- profiles ----------------------------------------------------------------------


class ThresholdEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    metric: str
    comparator: Literal[">=", "<=", ">", "<", "between"]
    # Strict: YAML `true` must not become a threshold of 1.
    value: StrictStr | StrictFloat | StrictInt | list[StrictStr | StrictFloat | StrictInt]
    severity: Literal["fail", "warn"] = "fail"
    warn_band: str | float | None = None
    required: bool = False
    source: str = Field(min_length=1)


class WindowThresholdEntry(ThresholdEntry):
    """A burn-in's threshold: a profile's, and the time-window rules of
    core/thresholds.py, durations ("30s", "2m")."""

    for_at_least: StrictStr | StrictFloat | StrictInt | None = None
    of_first: StrictStr | StrictFloat | StrictInt | None = None


class _ProfileFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    extends: str | None = None
    thresholds: list[ThresholdEntry] = Field(default_factory=list)
    # The node type's expected topology (`bench-agent topology capture`), a YAML path
    # relative to the profile's folder; `run topology --expect FILE` overrides it.
    topology: str | None = None
    configuration: list[ConfigEntry] = Field(default_factory=list)  # config/expected.py


def _parse_band(raw: str | float | None, path: Path, key: str) -> float | None:
    if raw is None:
        return None
    try:
        return parse_fraction(raw)
    except UnitError as exc:
        raise ConfigError(str(exc), file=str(path), key=key) from exc


def _window(entry: ThresholdEntry, name: str, path: Path, key: str) -> float | None:
    raw = getattr(entry, name, None)
    if raw is None:
        return None
    try:
        return parse_duration(raw)
    except UnitError as exc:
        raise ConfigError(str(exc), file=str(path), key=f"{key}.{name}") from exc


def threshold_from_entry(entry: ThresholdEntry, path: Path, key: str,
                         catalog: Mapping[str, MetricInfo] | None = None) -> Threshold:
    """One threshold of a profile (or of a burn-in file: a WindowThresholdEntry), its
    metric and value checked against ``catalog`` (the checks' metric catalog by
    default); the threshold carries the metric's checks and meaning from it."""
    if catalog is None:
        catalog = metric_catalog()
    info = catalog.get(entry.metric)
    if info is None:
        raise ConfigError(f"threshold {entry.id}: {unknown_metric(entry.metric, catalog)}",
                          file=str(path), key=f"{key}.metric")
    raw_values = entry.value if isinstance(entry.value, list) else [entry.value]
    expected_count = 2 if entry.comparator == "between" else 1
    if len(raw_values) != expected_count:
        shape = "a list [low, high]" if expected_count == 2 else "a single value"
        raise ConfigError(f"comparator {entry.comparator!r} takes {shape}",
                          file=str(path), key=f"{key}.value")
    for_at_least = _window(entry, "for_at_least", path, key)
    of_first = _window(entry, "of_first", path, key)
    values: list[float] = []
    for raw in raw_values:
        if of_first is not None:
            # Relative to the early level: a fraction ("90%", 0.9), not a quantity.
            fraction = _parse_band(raw, path, f"{key}.value")
            assert fraction is not None
            values.append(fraction)
            continue
        try:
            values.append(parse_quantity(raw, info.unit).value)
        except UnitError as exc:
            raise ConfigError(
                f"{exc} (metric {entry.metric} is measured in {info.unit.value})",
                file=str(path), key=f"{key}.value",
            ) from exc
    try:
        return Threshold(
            id=entry.id,
            metric=entry.metric,
            comparator=Comparator(entry.comparator),
            value=values[0],
            upper=values[1] if len(values) == 2 else None,
            unit=info.unit,
            source=entry.source,
            checks=info.checks,
            meaning=info.meaning,
            severity=Severity(entry.severity),
            warn_band=_parse_band(entry.warn_band, path, f"{key}.warn_band"),
            required=entry.required,
            for_at_least=for_at_least,
            of_first=of_first,
        )
    except ValueError as exc:
        # Threshold's own checks: the limits' order and physical domain ("-25
        # Gbit/s"), the warn band; the message starts with the threshold's id.
        field_key = f"{key}.warn_band" if "warn_band" in str(exc) else f"{key}.value"
        raise ConfigError(f"threshold {exc}", file=str(path), key=field_key) from exc


class _FleetFigure(BaseModel):
    """One figure of a fleet baseline (fleet/analysis.py generate_baseline writes it)."""

    model_config = ConfigDict(extra="forbid")
    value: float | None = Field(default=None, strict=True, allow_inf_nan=False)  # median
    unit: str
    comparator: Literal[">=", "<="]
    limit: float = Field(strict=True, allow_inf_nan=False)
    mad: float | None = Field(default=None, strict=True, allow_inf_nan=False)
    nodes: int | None = Field(default=None, ge=1, strict=True)
    fail_fraction: float | None = Field(default=None, ge=0, le=1, strict=True)
    source: str | None = None


class _FleetBaselineFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["fleet"]
    model: str = ""
    nvml_names: list[StrictStr] = Field(default_factory=list)
    figures: dict[str, _FleetFigure] = Field(default_factory=dict)
    configuration: list[FleetConfigEntry] = Field(default_factory=list)


def _profile_from_fleet_baseline(data: dict[str, Any], path: Path, digest: str) -> Profile:
    """A fleet baseline (`bench-agent baseline generate`) used as a profile: each
    figure's explicit limit becomes a threshold on its metric."""
    parsed = validated(data, path, _FleetBaselineFile)
    thresholds = []
    for metric, figure in parsed.figures.items():
        key = f"figures.{metric}"
        catalog = metric_catalog()
        info = catalog.get(metric)
        if info is None:
            raise ConfigError(unknown_metric(metric, catalog), file=str(path), key=key)
        if figure.unit != info.unit.value:
            raise ConfigError(f"unit {figure.unit!r}, expected {info.unit.value}",
                              file=str(path), key=f"{key}.unit")
        try:
            thresholds.append(Threshold(
                id=f"fleet-{metric}", metric=metric, comparator=Comparator(figure.comparator),
                value=figure.limit, unit=info.unit,
                source=figure.source or f"fleet baseline {path.name}",
                checks=info.checks, meaning=info.meaning))
        except (ValueError, OverflowError) as exc:
            raise ConfigError(f"threshold {exc}", file=str(path), key=f"{key}.limit") from exc
    name = parsed.model or path.stem
    section = expectations(parsed.configuration, path)
    thresholds += section_thresholds(section, thresholds, metric_catalog(), path)
    return Profile(name, f"fleet baseline {name}", thresholds, str(path), digest, [str(path)],
                   configuration=section)


def load_profile(path: Path, _chain: tuple[str, ...] = (),
                 catalog: Mapping[str, MetricInfo] | None = None) -> Profile:
    """Load a profile; ``_chain`` holds the resolved paths of the profiles extending it;
    ``catalog`` the metric catalog its thresholds are checked against (the checks')."""
    # A profile file is one of two kinds: read once, then through the kind's model.
    data, digest = _read_yaml(path)
    if data.get("kind") == "fleet":
        return _profile_from_fleet_baseline(data, path, digest)
    parsed = validated(data, path, _ProfileFile)
    by_id: dict[str, Threshold] = {}
    sources = [str(path)]
    topology = str(path.parent / parsed.topology) if parsed.topology else None
    inherited: tuple[Expectation, ...] = ()
    if parsed.extends:
        chain = (*_chain, str(path.resolve()))
        parent_path = resolve_profile_path(parsed.extends, relative_to=path.parent)
        if str(parent_path.resolve()) in chain:
            raise ConfigError(f"profile inheritance loops through {parsed.extends!r}",
                              file=str(path), key="extends")
        parent = load_profile(parent_path, chain, catalog)
        by_id = {t.id: t for t in parent.thresholds}
        inherited = parent.configuration
        sources = [*parent.sources, str(path)]
        topology = topology or parent.topology
        digest = hashlib.sha256((parent.sha256 + digest).encode()).hexdigest()
    seen: set[str] = set()
    problems = Problems(path)
    for index, entry in enumerate(parsed.thresholds):
        key = f"thresholds[{index}]"
        with problems.collect():
            if entry.id in seen:
                raise ConfigError(f"duplicate threshold id {entry.id!r}", file=str(path),
                                  key=key)
            seen.add(entry.id)
            by_id[entry.id] = threshold_from_entry(entry, path, key, catalog)
    with problems.collect():
        section = expectations(parsed.configuration, path, inherited=inherited)
    problems.check()
    thresholds = list(by_id.values())
    # `catalog or ...` would call DomainCatalog.__len__, which imports every check module.
    thresholds += section_thresholds(section, thresholds,
                                     metric_catalog() if catalog is None else catalog, path)
    return Profile(parsed.name, parsed.description, thresholds, str(path), digest,
                   sources, topology, section)


def load_profile_named(name_or_path: str,
                       catalog: Mapping[str, MetricInfo] | None = None) -> Profile:
    return load_profile(resolve_profile_path(name_or_path), catalog=catalog)
