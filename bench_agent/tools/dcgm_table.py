"""The table ``dcgmi diag`` prints without ``-j``, read into tools/dcgm.py's records.

Layout per NVIDIA/DCGM dcgmi/Diag.cpp (DIAG_HEADER, DIAG_DATA, the category
banners, HelperDisplayGlobalResult, HelperDisplayEntityResults):

    +---------------------------+------------------------------------------------+
    | Diagnostic                | Result                                         |
    +===========================+================================================+
    |-----  Metadata  ----------+------------------------------------------------|
    | DCGM Version              | 4.4.1                                          |
    |-----  Deployment  --------+------------------------------------------------|
    | software                  | Pass                                           |
    |                           | GPU0: Pass                                     |
    | Warning                   | There was an internal error during the test:   |
    |                           | 'Output of child process (11167) couldn't be   |
    | Warning: GPU1             | ...                                            |

A test row names the test and its overall status (4.x: "Warn" shows here only);
"GPU0: Pass" rows are its per-entity results (4.x); older versions print "Pass -
All" or "Fail - GPU: 0, 1" in the test row instead. "Warning" and "Info" rows carry
text cut into 45-character pieces in the middle of words (DisplayVerboseInfo), so
continuation rows are joined without a blank. The table has no error codes.
"""

from __future__ import annotations

import re

from bench_agent.core.errors import ParseError
from bench_agent.core.strict_json import check_size, snippet
from bench_agent.tools.dcgm import (
    NOT_RUN,
    RANK,
    TOOL,
    WHOLE_NODE,
    Diag,
    DiagResult,
    DiagWarning,
    status_of,
    worst,
)

_HEADER = re.compile(r"^\|\s*Diagnostic\s*\|\s*Result\s*\|\s*$", re.MULTILINE)
_BORDER = re.compile(r"^[+|][-=+]+[+|]$")
_BANNER = re.compile(r"^[+|]-{3,}\s+([A-Za-z][A-Za-z ]*?)\s+-+\+-+[+|]$")
_ROW = re.compile(r"^\| (.{25}) \| (.*?)\s*\|$")
_ENTITY_RESULT = re.compile(r"^([A-Z]{3})(\d{1,4}): (Pass|Fail|Warn|Skip|Not Run)$")
# "Pass - All", "Fail - GPU: 0, 1" (DCGM 2.x-3.x test rows).
_OLD_STATUS = re.compile(r"^(Pass|Fail|Warn|Skip|Not Run)(?: - (All|GPU: ([0-9, ]+)))?$")
# DATA_INFO_TAG_LEN of Diag.cpp: the width a warning is cut into.
PIECE = 45
_LABEL = re.compile(r"^(Warning|Info)(?:: ([A-Z]{3})(\d{1,4}))?$")


def looks_like_table(text: str) -> bool:
    return _HEADER.search(text) is not None


class _Reader:
    def __init__(self) -> None:
        self.diag = Diag([], "table")
        self.category = ""
        self.test: str | None = None
        self.status = NOT_RUN
        self.entities: dict[str, str] = {}
        self.entity_text: dict[str, list[list[str]]] = {}  # entity -> warnings (pieces)
        self.label: tuple[str, str] | None = None  # (Warning|Info, entity) being read
        self.tests_seen: set[str] = set()
        self.listed = False  # the test row listed its GPUs ("Fail - GPU: 0, 1")

    def close_test(self) -> None:
        if self.test is None:
            return
        # Every piece but the last is 45 characters: a blank at its end was cut off
        # with the table's padding.
        warnings = {e: tuple(DiagWarning("".join([*(x.ljust(PIECE) for x in p[:-1]),
                                                  p[-1]]).strip()) for p in pieces)
                    for e, pieces in self.entity_text.items()}
        node_warnings = warnings.get(WHOLE_NODE, ())
        if self.listed and node_warnings:
            # "Fail - GPU: 0, 1" (DCGM 2.x-3.x): its Warning rows are about those GPUs
            # (each names its GPU in its words), not about the node.
            for entity in self.entities:
                warnings[entity] = warnings.get(entity, ()) + node_warnings
            node_warnings = ()
        results = [DiagResult(self.category, self.test, e, s, warnings.get(e, ()))
                   for e, s in self.entities.items()]
        statuses = [r.status for r in results]
        # The test row's own status stands for the node when no entity row carries
        # it (a 4.x test that failed as a whole) or when warnings name no entity.
        if WHOLE_NODE not in self.entities and (
                not results or RANK[self.status] > RANK[worst(statuses)] or node_warnings):
            results.append(DiagResult(self.category, self.test, WHOLE_NODE, self.status,
                                      node_warnings))
        self.diag.results += results
        self.test, self.entities, self.entity_text, self.label = None, {}, {}, None
        self.listed = False

    def row(self, name: str, value: str, line: str) -> None:
        if self.category == "Metadata":
            if name == "DCGM Version":
                self.diag.version = value
            elif name == "Driver Version Detected":
                self.diag.driver = value
            return
        if name:
            label = _LABEL.match(name)
            if label and self.test is not None:
                entity = f"{label.group(2).lower()}{label.group(3)}" if label.group(2) \
                    else WHOLE_NODE
                self.label = (label.group(1), entity)
                if label.group(1) == "Warning":
                    self.entity_text.setdefault(entity, []).append([value])
                return
            self.start_test(name, value, line)
            return
        if self.test is None:
            raise ParseError(TOOL, f"a table row outside any test: {snippet(line)}")
        entity_result = _ENTITY_RESULT.match(value)
        if entity_result:
            entity = f"{entity_result.group(1).lower()}{entity_result.group(2)}"
            if entity in self.entities:
                raise ParseError(TOOL, f"test {self.test!r} reports {entity} twice")
            self.entities[entity] = status_of(entity_result.group(3), f"test {self.test}")
            self.label = None
            return
        if self.label is None:
            raise ParseError(TOOL, f"a row of test {self.test!r} that is neither a result "
                                   f"nor part of a warning: {snippet(line)}")
        if self.label[0] == "Warning":
            self.entity_text[self.label[1]][-1].append(value)

    def start_test(self, name: str, value: str, line: str) -> None:
        self.close_test()
        old = _OLD_STATUS.match(value)
        if old is None:
            raise ParseError(TOOL, f"test {name!r}: the result {snippet(value, 60)} is none "
                                   "of Pass, Fail, Warn, Skip, Not Run")
        if name in self.tests_seen:
            raise ParseError(TOOL, f"test {name!r} is reported twice: {snippet(line)}")
        self.tests_seen.add(name)
        self.test, self.status = name, status_of(old.group(1), f"test {name}")
        if old.group(2) == "All":
            self.entities[WHOLE_NODE] = self.status
        elif old.group(3):
            self.listed = True
            for part in old.group(3).split(","):
                if part.strip():
                    self.entities[f"gpu{int(part)}"] = self.status


def parse_table(text: str) -> Diag:
    """The Diag of a ``dcgmi diag`` table; lines before its header (a prompt,
    "Successfully ran diagnostic for group.") are skipped."""
    check_size(TOOL, text)
    header = _HEADER.search(text)
    if header is None:
        raise ParseError(TOOL, "no '| Diagnostic | Result |' table header", text[:300])
    reader = _Reader()
    closed = False
    for line in text[header.end():].splitlines():
        line = line.rstrip()
        if not line:
            continue
        if closed:
            raise ParseError(TOOL, f"text after the table's closing border: {snippet(line)}")
        banner = _BANNER.match(line)
        if banner:
            reader.close_test()
            reader.category = banner.group(1).strip()
            continue
        if _BORDER.match(line):
            if set(line) <= set("+-") and reader.category:
                closed = True  # the footer; a "+===+" line only follows the header
            continue
        row = _ROW.match(line)
        if row is None:
            raise ParseError(TOOL, f"a line that is no table row: {snippet(line)}")
        reader.row(row.group(1).strip(), row.group(2), line)
    reader.close_test()
    if not closed:
        reader.diag.notes.append("the table has no closing border: the output may be cut "
                                 "short, later tests may be missing")
    if not reader.diag.results:
        raise ParseError(TOOL, "a diag table with no test in it", text[:300])
    return reader.diag
