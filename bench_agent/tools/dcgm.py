"""DCGM's diagnostic, ``dcgmi diag -r LEVEL -j``: run it, read its JSON per test and GPU.

The JSON has had three shapes, all read here (published outputs of DCGM 1.7 to 4.4:
NVIDIA/DCGM test fixtures, microsoft/VirtualClient examples, NVIDIA/DCGM issues 215, 253):

- NVVS 1.x to DCGM 3.x: ``{"DCGM GPU Diagnostic": {"test_categories": [{"category",
  "tests": [{"name", "results": [{"gpu_ids", "status", "warnings", "info"}]}]}],
  "version"}}``. ``gpu_ids`` is a string ("0,1,2,3" for the Deployment tests, "0"
  per GPU) or an integer, or absent (a test of the whole system); statuses are
  "PASS" (upper case, 1.7 to 3.1) or "Pass"; ``info`` is a list of strings or one
  string; a ``null`` may stand between two tests (DCGM 3.1.0, NVIDIA/DCGM
  nvvs/src/tests/JsonResultTests.cpp "Deserialize real output").
- DCGM 4.x: the root key is "DCGM Diagnostic" (DCGM release notes, "Deprecations
  and breaking changes"; facebookresearch/gcm PR #38), each result names its
  entity (``entity_group`` "GPU"/"CPU", ``entity_id``), each test has a
  ``test_summary`` with its overall status, and ``metadata`` and ``entity_groups``
  sit beside the root key (NVIDIA/DCGM dcgmi/Diag.cpp HelperJsonBuildOutput).
- A run that could not start: ``{"DCGM Diagnostic": {"version", "runtime_error"}}``
  (Diag.cpp HelperDisplayFailureMessage): ToolFailed with DCGM's words.

Statuses are Pass, Fail, Warn, Skip and Not Run (Diag.cpp HelperDisplayDiagResult).
In 4.x JSON a Warn is printed as "Fail" (HelperDisplayDiagResult's default
DDR_NO_DISPLAY_WARN, Diag.h); only the table shows "Warn". A result that was not
run is left out of the JSON (HelperJsonAddResult), so a test with no results is
"Not Run". A warning carries DCGM's error code (``error_id``, dcgm_errors.h
dcgmError_t), its category and severity.

The table form (no ``-j``) is read by tools/dcgm_table.py into the same records.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from bench_agent.core.errors import ParseError, ToolFailed
from bench_agent.core.model import Measurement
from bench_agent.core.process import run_tool
from bench_agent.core.strict_json import read_document, snippet
from bench_agent.core.units import Unit

TOOL = "dcgmi"
CHECK = "gpu.dcgm_diag"
INSTALL_HINT = ("install DCGM: the datacenter-gpu-manager-4-core package from NVIDIA's CUDA "
                "repository, https://docs.nvidia.com/datacenter/dcgm/latest/user-guide/"
                "getting-started.html")
ROOT_KEYS = ("DCGM GPU Diagnostic", "DCGM Diagnostic")

PASS, FAIL, WARN, SKIP, NOT_RUN = "Pass", "Fail", "Warn", "Skip", "Not Run"
_STATUSES = {s.lower(): s for s in (PASS, FAIL, WARN, SKIP, NOT_RUN)}
# Worst first: a test's overall status is its worst result.
RANK = {PASS: 0, NOT_RUN: 1, SKIP: 2, WARN: 3, FAIL: 4}
# The entity groups of dcgm_fields.h (DCGM_FE_GPU, DCGM_FE_CPU, ...), lower case for
# device names; a result with no entity is about the whole node ("all").
WHOLE_NODE = "all"
_GPU_IDS = re.compile(r"[0-9]{1,4}(?:\s*,\s*[0-9]{1,4})*")
_ENTITY_GROUP = re.compile(r"[A-Za-z_]{1,20}")
MAX_ID = 4096  # far above any node's GPU or CPU count; a larger id is garbage


def status_of(value: Any, where: str) -> str:
    """DCGM's status word in our spelling ("PASS" and "Pass" are one), or ParseError."""
    if not isinstance(value, str) or value.strip().lower() not in _STATUSES:
        raise ParseError(TOOL, f"{where}: the status {snippet(str(value), 40)} is none of "
                               "Pass, Fail, Warn, Skip, Not Run")
    return _STATUSES[value.strip().lower()]


def worst(statuses: list[str]) -> str:
    return max(statuses, key=RANK.__getitem__) if statuses else NOT_RUN


@dataclass(frozen=True, slots=True)
class DiagWarning:
    """One DCGM error or warning: its words and, where printed, its code."""

    message: str
    error_id: int | None = None
    category: int | None = None
    severity: int | None = None

    def describe(self) -> str:
        from bench_agent.tools.dcgm_codes import error_name, severity_name

        if self.error_id is None:
            code = "DCGM warning"
        else:
            name = error_name(self.error_id)
            code = f"DCGM error {self.error_id}" + (f" {name}" if name else "")
        extra = []
        if self.severity is not None:
            meaning = severity_name(self.severity)
            extra.append(f"severity {self.severity}" + (f" {meaning}" if meaning else ""))
        if self.category is not None:
            extra.append(f"category {self.category}")
        detail = f" ({', '.join(extra)})" if extra else ""
        return f"{code}{detail}: {self.message}"


@dataclass(frozen=True, slots=True)
class DiagResult:
    """One test's result on one entity ("gpu2", "cpu0") or on the node ("all")."""

    category: str
    test: str
    entity: str
    status: str
    warnings: tuple[DiagWarning, ...] = ()
    info: tuple[str, ...] = ()

    @property
    def device(self) -> str:
        return f"{self.entity}/{self.test}"

    def describe(self) -> str:
        where = "the node" if self.entity == WHOLE_NODE else self.entity.upper()
        text = f"DCGM diag test {self.test!r} on {where}: {self.status}"
        if self.warnings:
            text += "; " + "; ".join(w.describe() for w in self.warnings)
        return text


@dataclass
class Diag:
    """What one diagnostic run reported."""

    results: list[DiagResult]
    form: str  # "json" or "table"
    version: str | None = None
    driver: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[DiagResult]:
        return [r for r in self.results if r.status == FAIL]

    @property
    def warnings(self) -> list[DiagResult]:
        return [r for r in self.results if r.status == WARN
                or (r.status == PASS and r.warnings)]


# --- JSON -----------------------------------------------------------------------------


def _text(value: Any, where: str, limit: int = 4000) -> str:
    if not isinstance(value, str):
        raise ParseError(TOOL, f"{where} is not text: {snippet(repr(value), 60)}")
    if len(value) > limit:
        raise ParseError(TOOL, f"{where} is longer than {limit} characters")
    return value


def _whole(value: Any, where: str) -> int | None:
    """A code DCGM prints as a whole number >= 0 (error_id, category, severity)."""
    if value is None:
        raise ParseError(TOOL, f"{where} is null")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 2**31:
        raise ParseError(TOOL, f"{where} is not a code (a whole number >= 0): "
                               f"{snippet(repr(value), 40)}")
    return value


def _warnings(value: Any, where: str) -> tuple[DiagWarning, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ParseError(TOOL, f"{where}.warnings is not a list")
    out = []
    for i, item in enumerate(value):
        at = f"{where}.warnings[{i}]"
        if isinstance(item, str):  # DCGM 2.x printed the words alone
            out.append(DiagWarning(item))
            continue
        if not isinstance(item, dict) or "warning" not in item:
            raise ParseError(TOOL, f"{at} is no warning (an object with \"warning\")")
        out.append(DiagWarning(
            _text(item["warning"], f"{at}.warning"),
            _whole(item["error_id"], f"{at}.error_id") if "error_id" in item else None,
            _whole(item["error_category"], f"{at}.error_category")
            if "error_category" in item else None,
            _whole(item["error_severity"], f"{at}.error_severity")
            if "error_severity" in item else None))
    return tuple(out)


def _info(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):  # DCGM 2.4-3.0: one string, the lines joined by ", "
        return (value,)
    if not isinstance(value, list):
        raise ParseError(TOOL, f"{where}.info is neither text nor a list")
    return tuple(_text(v, f"{where}.info[{i}]") for i, v in enumerate(value))


def _entities(result: dict[str, Any], where: str) -> list[str]:
    """The entities one result is about: "gpu0", "cpu1", or the node."""
    if "entity_id" in result or "entity_group" in result:
        group = result.get("entity_group", "GPU")
        if not isinstance(group, str) or not _ENTITY_GROUP.fullmatch(group):
            raise ParseError(TOOL, f"{where}.entity_group is not a group name: "
                                   f"{snippet(repr(group), 40)}")
        ident = _whole(result.get("entity_id"), f"{where}.entity_id")
        if ident is None or ident > MAX_ID:
            raise ParseError(TOOL, f"{where}.entity_id {ident} is no entity of a node")
        return [f"{group.lower()}{ident}"]
    ids = result.get("gpu_ids")
    if ids is None and "gpu_ids" not in result:
        return [WHOLE_NODE]
    if isinstance(ids, int) and not isinstance(ids, bool) and 0 <= ids <= MAX_ID:
        return [f"gpu{ids}"]
    if isinstance(ids, str) and _GPU_IDS.fullmatch(ids.strip()):
        numbers = [int(part) for part in ids.split(",")]
        if len(set(numbers)) != len(numbers) or max(numbers) > MAX_ID:
            raise ParseError(TOOL, f"{where}.gpu_ids {ids!r} names a GPU twice or none")
        return [f"gpu{n}" for n in numbers]
    raise ParseError(TOOL, f"{where}.gpu_ids is not a list of GPU ids: "
                           f"{snippet(repr(ids), 40)}")


def _test_results(category: str, test: dict[str, Any], where: str) -> list[DiagResult]:
    name = _text(test.get("name"), f"{where}.name", 200).strip()
    if not name:
        raise ParseError(TOOL, f"{where} has no name")
    raw = test.get("results")
    if raw is not None and not isinstance(raw, list):
        raise ParseError(TOOL, f"{where} ({name}).results is not a list")
    out: list[DiagResult] = []
    seen: set[str] = set()
    for i, result in enumerate(raw or []):
        at = f"{where} ({name}).results[{i}]"
        if not isinstance(result, dict):
            raise ParseError(TOOL, f"{at} is not an object")
        status = status_of(result.get("status"), at)
        warnings, info = _warnings(result.get("warnings"), at), _info(result.get("info"), at)
        for entity in _entities(result, at):
            if entity in seen:
                raise ParseError(TOOL, f"test {name!r} reports {entity} twice: which result "
                                       "stands is unknown")
            seen.add(entity)
            out.append(DiagResult(category, name, entity, status, warnings, info))
    summary = test.get("test_summary")
    if summary is not None:
        at = f"{where} ({name}).test_summary"
        if not isinstance(summary, dict):
            raise ParseError(TOOL, f"{at} is not an object")
        overall = status_of(summary.get("status"), at)
        # A test that failed as a whole while each entity passed (an internal
        # error of the plugin, NVIDIA/DCGM issue 253): the node's own result.
        if RANK[overall] > RANK[worst([r.status for r in out])]:
            known = {w for r in out for w in r.warnings}
            extra = tuple(w for w in _warnings(summary.get("warnings"), at) if w not in known)
            out.append(DiagResult(category, name, WHOLE_NODE, overall, extra,
                                  _info(summary.get("info"), at)))
    if not out:
        out.append(DiagResult(category, name, WHOLE_NODE, NOT_RUN))
    return out


def diag_from_document(document: dict[str, Any]) -> Diag:
    """The results of a parsed ``dcgmi diag -j`` document (any of the three shapes)."""
    roots = [k for k in ROOT_KEYS if k in document]
    if len(roots) != 1:
        keys = ", ".join(repr(k) for k in list(document)[:6]) or "none"
        raise ParseError(TOOL, "not a dcgmi diag document: it has "
                               f"{'both root keys' if roots else 'no root key'} "
                               f"{' or '.join(map(repr, ROOT_KEYS))} (top-level keys: {keys})")
    root = document[roots[0]]
    if not isinstance(root, dict):
        raise ParseError(TOOL, f"{roots[0]!r} is not an object")
    if "runtime_error" in root:
        raise ToolFailed(TOOL, "the diagnostic did not run: "
                         + _text(root["runtime_error"], "runtime_error").strip())
    categories = root.get("test_categories")
    if not isinstance(categories, list) or not categories:
        raise ParseError(TOOL, f"{roots[0]!r} has no test_categories: no test was reported")
    metadata = document.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    version = root.get("version", metadata.get("version"))
    driver = metadata.get("Driver Version Detected")
    diag = Diag([], "json", _text(version, "version", 40) if version is not None else None,
                _text(driver, "Driver Version Detected", 40) if driver is not None else None)
    tests_seen: set[tuple[str, str]] = set()
    for c, category in enumerate(categories):
        where = f"test_categories[{c}]"
        if not isinstance(category, dict) or not isinstance(category.get("tests"), list):
            raise ParseError(TOOL, f"{where} is not a category with a list of tests")
        name = _text(category.get("category", ""), f"{where}.category", 80)
        nulls = 0
        for t, test in enumerate(category["tests"]):
            if test is None:  # DCGM 3.1.0 prints one between tests
                nulls += 1
                continue
            if not isinstance(test, dict):
                raise ParseError(TOOL, f"{where}.tests[{t}] is not an object")
            results = _test_results(name, test, f"{where}.tests[{t}]")
            key = (name, results[0].test)
            if key in tests_seen:
                raise ParseError(TOOL, f"test {key[1]!r} is reported twice in {name or 'a'} "
                                       "category")
            tests_seen.add(key)
            diag.results += results
        if nulls:
            diag.notes.append(f"{nulls} null entries between the {name} tests (DCGM 3.1 "
                              "prints them), skipped")
    return diag


def parse_diag(text: str) -> Diag:
    """``dcgmi diag`` output, JSON (``-j``) or the table, as one Diag."""
    from bench_agent.tools import dcgm_table

    if dcgm_table.looks_like_table(text):
        return dcgm_table.parse_table(text)
    from bench_agent.tools import refuse_control_keys

    document, leading = read_document(text, TOOL)
    refuse_control_keys(TOOL, document)
    diag = diag_from_document(document)
    if leading:
        diag.notes.append("text before the JSON: " + snippet("; ".join(leading), 200))
    return diag


# --- measurements -----------------------------------------------------------------------


def diag_measurements(diag: Diag, level: int | None = None) -> list[Measurement]:
    """Per test and entity: ``gpu.dcgm_diag_fail`` (1 for Fail) and
    ``gpu.dcgm_diag_warn`` (1 for Warn, or a Pass that carries a DCGM warning), the
    result's words in the note; per run the count of results and of skipped ones."""
    from bench_agent.tools import tool_name

    out: list[Measurement] = []
    common: dict[str, Any] = {"form": diag.form}
    if level is not None:
        common["level"] = level
    for r in diag.results:
        device = tool_name(TOOL, r.device)
        params = {**common, "test": r.test, "category": r.category, "entity": r.entity,
                  "status": r.status, "error_ids": [w.error_id for w in r.warnings
                                                    if w.error_id is not None],
                  "warnings": [w.message for w in r.warnings][:10], "info": list(r.info[:10]),
                  "note": r.describe()}
        warned = r.status == WARN or (r.status == PASS and bool(r.warnings))
        for metric, value in (("gpu.dcgm_diag_fail", r.status == FAIL),
                              ("gpu.dcgm_diag_warn", warned)):
            out.append(Measurement(check=CHECK, metric=metric, value=int(value),
                                   unit=Unit.COUNT, device=device, tool=TOOL,
                                   tool_version=diag.version or "", params=params))
    skipped = [r.device for r in diag.results if r.status in (SKIP, NOT_RUN)]
    out.append(Measurement(check=CHECK, metric="gpu.dcgm_diag_results", value=len(diag.results),
                           unit=Unit.COUNT, tool=TOOL, tool_version=diag.version or "",
                           params={**common, "driver": diag.driver, "notes": diag.notes,
                                   "failed": [r.device for r in diag.failures]}))
    out.append(Measurement(check=CHECK, metric="gpu.dcgm_diag_skipped", value=len(skipped),
                           unit=Unit.COUNT, tool=TOOL, tool_version=diag.version or "",
                           params={**common, "skipped": skipped[:50]}))
    return out


def parse_dcgm(text: str) -> list[Measurement]:
    """`bench-agent parse dcgm FILE`: the measurements of a saved diag output."""
    return diag_measurements(parse_diag(text))


def dcgm_failures(measurements: list[Measurement]) -> list[str]:
    """What a parsed output reports as failed (`bench-agent parse dcgm` exits 1)."""
    return [str(m.params.get("note", m.device)) for m in measurements
            if m.metric == "gpu.dcgm_diag_fail" and m.value > 0]


# --- running ------------------------------------------------------------------------------


def run_diag(level: int, timeout: float) -> Diag:
    """``dcgmi diag -r LEVEL -j`` under ``timeout`` seconds. dcgmi exits non-zero when
    a test fails (Diag.cpp GetFailureResult: DCGM_ST_NVVS_ERROR), so its exit code
    alone says nothing: the JSON is read whenever there is one."""
    command = ["dcgmi", "diag", "-r", str(level), "-j"]
    done = run_tool(TOOL, command, timeout, INSTALL_HINT)
    if "{" not in done.stdout:
        words = (done.stdout.strip() or done.stderr.strip() or "no output")[-600:]
        raise ToolFailed(TOOL, f"{' '.join(command)} printed no JSON: {words}",
                         returncode=done.returncode)
    diag = parse_diag(done.stdout)
    if done.returncode != 0 and not diag.failures:
        diag.notes.append(f"dcgmi exited {done.returncode} with no failed test in its JSON"
                          + (f"; stderr: {done.stderr.strip()[-300:]}" if done.stderr.strip()
                             else ""))
    return diag
