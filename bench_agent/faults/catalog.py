"""Load and query the fault catalog (bench_agent/faults/catalog.yaml).

A code is looked up from what a verdict says: its check, its metric, and for a
check that could not measure, the error it ended in. The file's mappings are
shell-glob patterns (fnmatch) tried in order, first match wins, as DCGM maps its
health-watch failures to DCGM_FR_* codes (dcgmlib/dcgm_errors.h,
https://github.com/NVIDIA/DCGM). GPU XIDs get one code each, BA-GPU-XID-<n>,
from the XID table of NVIDIA's XID catalog (https://docs.nvidia.com/deploy/xid-errors/).

Every problem in the file is a ConfigError naming the file and the key: the
catalog ships in the wheel, so tests/faults/test_catalog.py loads it on every run.

Every report is coded, `bench-agent health`'s too, and that command has 0.3 s in
all (issue 16): the YAML parser's import and parse of this file took a tenth of
it. So the wheel also ships catalog.compiled.json, the same document as JSON,
with the SHA-256 of the catalog.yaml bytes it came from; it is read only while
that digest matches the YAML beside it, and goes through the same validation
(parse_catalog). scripts/gen-faults-doc writes it; tests/faults/test_outputs.py
fails while it is stale.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench_agent.core.errors import ConfigError

CATALOG_PATH = Path(__file__).with_name("catalog.yaml")
COMPILED_PATH = Path(__file__).with_name("catalog.compiled.json")
SCHEMA = 1

# The closed set of remediations (docs/faults.md explains each), cheapest first:
# a reader can sort by it.
REMEDIATIONS = ("none", "re-run", "check-job", "reset-gpu", "reboot", "reseat-recable",
                "replace", "escalate")
SEVERITIES = ("critical", "major", "minor")
COMPONENT_KINDS = ("gpu", "hca-port", "drive", "nic", "filesystem", "node", "tool", "check")
_FAULT_KEYS = ("code", "title", "component", "severity", "remediation", "meaning", "action",
               "source")
_XID_KEYS = ("title", "severity", "remediation", "meaning", "action")
XID_PREFIX = "BA-GPU-XID-"
XID_OTHER = "BA-GPU-XID-OTHER"
NOT_MEASURED = "BA-NOT-MEASURED"
UNCLASSIFIED = "BA-UNCLASSIFIED"
CHECK_ERROR = "BA-CHECK-ERROR"


@dataclass(frozen=True, slots=True)
class Fault:
    """One code of the catalog and what it means for the people who fix nodes."""

    code: str
    title: str
    component: str  # one of COMPONENT_KINDS
    severity: str  # one of SEVERITIES
    remediation: str  # one of REMEDIATIONS
    meaning: str
    action: str
    source: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class FaultMapping:
    """(check, metric or error) patterns -> a code, or ``xid``: the XID's own code."""

    check: str
    metric: str | None
    errors: tuple[str, ...] | None
    code: str | None
    xid: bool

    def matches(self, check: str, metric: str, error: str) -> bool:
        if not _glob(check, self.check):
            return False
        if self.errors is not None:
            # Only a verdict of a check that did not measure has an error.
            return not metric and any(_glob(error, e) for e in self.errors)
        return bool(metric) and self.metric is not None and _glob(metric, self.metric)


_GLOB_CHARS = frozenset("*?[")


def _glob(name: str, pattern: str) -> bool:
    """fnmatch.fnmatchcase, without compiling a regular expression for a pattern
    that has no wildcard (most of the catalog's): a pattern without ``*``, ``?``
    or ``[`` matches only itself (fnmatch's translate escapes every other
    character). Compiling all of them cost `bench-agent health` several ms."""
    if _GLOB_CHARS.isdisjoint(pattern):
        return name == pattern
    return fnmatch.fnmatchcase(name, pattern)


@dataclass(frozen=True)
class Catalog:
    faults: dict[str, Fault]
    mappings: tuple[FaultMapping, ...]
    xids: tuple[int, ...]  # the XIDs with a code of their own

    def fault(self, code: str) -> Fault:
        return self.faults[code]

    def mapping_for(self, check: str, metric: str, error: str = "") -> FaultMapping | None:
        return next((m for m in self.mappings if m.matches(check, metric, error)), None)

    def xid_code(self, xids: Iterable[int]) -> str:
        """The code of the worst of ``xids``: the first by severity (critical first),
        then by the order given; BA-GPU-XID-OTHER when none has its own code."""
        known = [x for x in xids if x in self.xids]
        if not known:
            return XID_OTHER
        rank = {s: i for i, s in enumerate(SEVERITIES)}
        worst = min(known, key=lambda x: rank[self.faults[f"{XID_PREFIX}{x}"].severity])
        return f"{XID_PREFIX}{worst}"

    def code_for(self, check: str, metric: str, error: str = "",
                 xids: Sequence[int] = ()) -> str:
        """The code of a verdict: by its metric, or by its error when it has none;
        BA-UNCLASSIFIED (a metric) or BA-CHECK-ERROR (an error) when nothing maps."""
        mapping = self.mapping_for(check, metric, error)
        if mapping is None:
            return UNCLASSIFIED if metric else CHECK_ERROR
        if mapping.xid:
            return self.xid_code(xids)
        assert mapping.code is not None
        return mapping.code

    def records(self) -> list[dict[str, str]]:
        """Every fault as a JSON object, in the file's order (`bench-agent faults --json`)."""
        return [f.to_dict() for f in self.faults.values()]


def _text(value: Any, file: str, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"expected non-empty text, got {value!r:.60}", file=file, key=key)
    return value.strip()


def _one_of(value: Any, allowed: Sequence[str], file: str, key: str) -> str:
    if value not in allowed:
        raise ConfigError(f"{value!r:.40} is not one of {', '.join(allowed)}", file=file,
                          key=key)
    return str(value)


def _fault(raw: Any, file: str, key: str) -> Fault:
    if not isinstance(raw, dict):
        raise ConfigError("expected a mapping", file=file, key=key)
    unknown = sorted(set(raw) - set(_FAULT_KEYS))
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(map(str, unknown))} (allowed keys:"
                          f" {', '.join(_FAULT_KEYS)})", file=file, key=key)
    values = {k: _text(raw.get(k), file, f"{key}.{k}") for k in _FAULT_KEYS}
    if not values["code"].startswith("BA-") or values["code"] != values["code"].upper():
        raise ConfigError(f"code {values['code']!r} must be upper case and start with BA-",
                          file=file, key=f"{key}.code")
    _one_of(values["component"], COMPONENT_KINDS, file, f"{key}.component")
    _one_of(values["severity"], SEVERITIES, file, f"{key}.severity")
    _one_of(values["remediation"], REMEDIATIONS, file, f"{key}.remediation")
    return Fault(**values)


def _xid_fault(xid: Any, raw: Any, file: str) -> Fault:
    key = f"xids.{xid}"
    if isinstance(xid, bool) or not isinstance(xid, int) or xid < 1:
        raise ConfigError(f"an XID is a whole number >= 1, got {xid!r:.40}", file=file, key=key)
    if not isinstance(raw, dict) or sorted(raw) != sorted(_XID_KEYS):
        raise ConfigError(f"expected exactly the keys {', '.join(_XID_KEYS)}", file=file,
                          key=key)
    return _fault({**raw, "code": f"{XID_PREFIX}{xid}", "component": "gpu",
                   "title": f"XID {xid}: {raw['title']}",
                   "source": f"NVIDIA XID catalog, XID {xid} "
                             "(https://docs.nvidia.com/deploy/xid-errors/)"}, file, key)


def _patterns(value: Any, file: str, key: str) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    return tuple(_text(item, file, key) for item in items)


def _mapping(raw: Any, codes: set[str], file: str, key: str) -> FaultMapping:
    allowed = {"check", "metric", "error", "code", "xid"}
    if not isinstance(raw, dict) or set(raw) - allowed:
        raise ConfigError(f"expected a mapping of {', '.join(sorted(allowed))}", file=file,
                          key=key)
    if ("metric" in raw) == ("error" in raw):
        raise ConfigError("a mapping names a metric pattern or an error, one of the two",
                          file=file, key=key)
    xid = raw.get("xid", False)
    if not isinstance(xid, bool) or xid == ("code" in raw):
        raise ConfigError("a mapping gives a code, or xid: true, one of the two", file=file,
                          key=key)
    code = raw.get("code")
    if code is not None and code not in codes:
        raise ConfigError(f"code {code!r} is not in faults", file=file, key=f"{key}.code")
    return FaultMapping(
        check=_text(raw.get("check", "*"), file, f"{key}.check"),
        metric=_text(raw["metric"], file, f"{key}.metric") if "metric" in raw else None,
        errors=_patterns(raw["error"], file, f"{key}.error") if "error" in raw else None,
        code=code, xid=xid)


def parse_catalog(data: Any, file: str) -> Catalog:
    """The catalog of a parsed YAML document; ConfigError naming what is wrong."""
    if not isinstance(data, dict) or set(data) != {"schema", "faults", "xids", "mappings"}:
        raise ConfigError("expected the keys schema, faults, xids and mappings", file=file)
    if data["schema"] != SCHEMA:
        raise ConfigError(f"schema {data['schema']!r}: this agent reads {SCHEMA}", file=file,
                          key="schema")
    faults: dict[str, Fault] = {}
    entries = [(f"faults[{i}]", raw) for i, raw in enumerate(data["faults"] or [])]
    built = [_fault(raw, file, key) for key, raw in entries]
    if not isinstance(data["xids"], dict):
        raise ConfigError("expected a mapping of XID -> fault", file=file, key="xids")
    built += [_xid_fault(xid, raw, file) for xid, raw in data["xids"].items()]
    for fault in built:
        if fault.code in faults:
            raise ConfigError(f"code {fault.code} is defined twice", file=file, key="faults")
        faults[fault.code] = fault
    for required in (XID_OTHER, NOT_MEASURED, UNCLASSIFIED, CHECK_ERROR):
        if required not in faults:
            raise ConfigError(f"the catalog lacks {required}, which the agent falls back on",
                              file=file, key="faults")
    mappings = tuple(_mapping(raw, set(faults), file, f"mappings[{i}]")
                     for i, raw in enumerate(data["mappings"] or []))
    return Catalog(faults, mappings, tuple(sorted(int(x) for x in data["xids"])))


@functools.cache
def _unique_key_loader() -> Any:
    """libyaml's parser (CSafeLoader: the pure-Python one takes ten times longer)
    with duplicate keys refused, as config/loader.py refuses them in suites (PyYAML
    keeps the last). Made on first use: only a catalog without its compiled form
    needs YAML."""
    import yaml

    class UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
        pass

    def unique_mapping(loader: Any, node: Any) -> dict[Any, Any]:
        mapping: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node)
            if key in mapping:
                raise ConfigError(f"duplicate key {key!r} at line "
                                  f"{key_node.start_mark.line + 1}")
            mapping[key] = loader.construct_object(value_node, deep=True)
        return mapping

    UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                                    unique_mapping)
    return UniqueKeyLoader


def _yaml_document(raw: bytes | str, file: str) -> Any:
    import yaml

    try:
        return yaml.load(raw, Loader=_unique_key_loader())  # a SafeLoader: no object tags
    except ConfigError as exc:
        raise ConfigError(str(exc), file=file) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", file=file) from exc


def load_catalog_text(raw: bytes | str, file: str) -> Catalog:
    return parse_catalog(_yaml_document(raw, file), file)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the fault catalog: {exc.strerror}",
                          file=str(path)) from exc


def load_catalog_file(path: Path) -> Catalog:
    return load_catalog_text(_read(path), str(path))


def compiled_text(raw: bytes, file: str = str(CATALOG_PATH)) -> str:
    """catalog.compiled.json for the catalog.yaml bytes ``raw``: the document as
    JSON (the XIDs as [number, entry] pairs: JSON keys are text) and the bytes'
    SHA-256. Only a valid catalog is compiled (ConfigError otherwise)."""
    document = _yaml_document(raw, file)
    parse_catalog(document, file)
    compiled = {"source_sha256": hashlib.sha256(raw).hexdigest(),
                "document": {**document, "xids": [[x, e] for x, e in document["xids"].items()]}}
    return json.dumps(compiled, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def _compiled_document(raw: bytes, compiled_path: Path) -> Any:
    """The compiled document when it was made from exactly ``raw``, else None."""
    try:
        compiled = json.loads(compiled_path.read_bytes())
        if compiled["source_sha256"] != hashlib.sha256(raw).hexdigest():
            return None
        document = dict(compiled["document"])
        document["xids"] = {xid: entry for xid, entry in document["xids"]}
        return document
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent, damaged or from another catalog: read the YAML


@functools.cache
def load_catalog() -> Catalog:
    """The shipped catalog, read once per process (its compiled form while current)."""
    raw = _read(CATALOG_PATH)
    document = _compiled_document(raw, COMPILED_PATH)
    if document is None:
        return load_catalog_text(raw, str(CATALOG_PATH))
    return parse_catalog(document, str(CATALOG_PATH))
