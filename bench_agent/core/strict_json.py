"""The one strict JSON reader: of what tools print (fio, iperf3, burn-in's fio
stream: read_documents, read_document, DocumentStream; ParseError naming the
tool) and of reports, envelopes and the collector's answers (loads_strict:
StrictJSONError). Both decode with the same hooks (no NaN or Infinity, no float
overflow, duplicate keys seen); their limits differ where their inputs do.

Tools:

Python's ``json`` is lenient where a tool's output must not be: a duplicate key
keeps the last value silently (a doctored ``"iops"`` wins), ``NaN``/``Infinity``
and ``1e400`` become non-finite floats, a 5000-digit integer raises a bare
``ValueError`` (CPython's int/str conversion limit) and ``[`` x 100,000 a
``RecursionError``. Here each of them is a ParseError carrying the tool's words:

- duplicate keys are refused unless the caller's policy knows the tool repeats
  that key on purpose (fio does: see tools/fio.py) and says which value stands;
- ``NaN``, ``Infinity`` and numbers that overflow a float are refused;
- integers of more than MAX_INT_DIGITS digits are refused (no tool counts past
  2**64, 20 digits; the limit keeps int() linear and far from CPython's 4300);
- nesting deeper than MAX_DEPTH is refused (fio's and iperf3's reports are 6
  levels deep);
- an output longer than MAX_CHARS (64 MiB) is refused before it is read;
- exactly the documents the tool prints: lines of text (fio's "note: ...",
  iperf3's warnings) may come before the first document, which starts a line
  with ``{``; documents may follow each other (fio's ``--status-interval``
  reports) only where the caller says so; any other text after them is refused,
  quoted.

Linear time: the first document is found with one regex search and decoded once
(a failed decode is the error, it is never retried further on: each retry would
rescan the text, and ``JSONDecodeError`` counts the lines before its position
too). DocumentStream scans each fed character once.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

from bench_agent.core.errors import ParseError, StrictJSONError

MAX_CHARS = 64 * 2**20
MAX_DEPTH = 64
MAX_INT_DIGITS = 30
SNIPPET = 120

Path = tuple[str | int, ...]
# (path of the object, key, every value the key had in order) -> the value to keep,
# or REFUSE.
DuplicatePolicy = Callable[[Path, str, list[Any]], Any]


class _Refuse:
    def __repr__(self) -> str:
        return "REFUSE"


REFUSE: Any = _Refuse()

_DOCUMENT_START = re.compile(r"^[ \t]*\{", re.MULTILINE)
_WHITESPACE = re.compile(r"\s*")


class _Invalid(Exception):
    """Raised by the decoder's hooks; becomes a ParseError with the tool's name."""


class _WithDuplicates(dict[str, Any]):
    """An object in which a key occurred more than once: its values, for the policy."""

    __slots__ = ("repeated",)

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        counts = Counter(key for key, _ in pairs)
        self.repeated = {key: [v for k, v in pairs if k == key]
                         for key, n in counts.items() if n > 1}


def snippet(text: str, limit: int = SNIPPET) -> str:
    """The first ``limit`` characters of ``text``, quoted, with an ellipsis when cut."""
    cut = text[:limit]
    return repr(cut) + ("…" if len(text) > limit else "")


def check_size(tool: str, text: str) -> None:
    """Refuse an output larger than MAX_CHARS before any parsing (bounded memory)."""
    if len(text) > MAX_CHARS:
        raise ParseError(tool, f"the output has {len(text):,} characters, more than the "
                               f"{MAX_CHARS:,} a {tool} report can have", text[:300])


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        return _WithDuplicates(pairs)
    return obj


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Invalid(f"duplicate key {key!r:.80}")
            seen.add(key)
    return obj


def _float(token: str) -> float:
    value = float(token)
    if not math.isfinite(value):
        raise _Invalid(f"the number {snippet(token, 40)} is too large for a float")
    return value


def _int(token: str) -> int:
    digits = len(token) - token.startswith("-")
    if digits > MAX_INT_DIGITS:
        raise _Invalid(f"an integer of {digits:,} digits ({snippet(token, 40)}); "
                       f"no figure has more than {MAX_INT_DIGITS}")
    return int(token)


def _constant(token: str) -> Any:
    raise _Invalid(f"{token} is not a JSON number (JSON has no NaN or Infinity)")


_DECODER = json.JSONDecoder(object_pairs_hook=_object, parse_float=_float, parse_int=_int,
                            parse_constant=_constant)


def _where(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "the top level"


def _checked(document: Any, tool: str, duplicates: DuplicatePolicy | None) -> Any:
    """Depth and duplicate keys, in one iterative walk (no recursion to exhaust)."""
    stack: list[tuple[Any, Path]] = [(document, ())]
    while stack:
        value, path = stack.pop()
        if len(path) >= MAX_DEPTH:
            raise ParseError(tool, f"JSON nested more than {MAX_DEPTH} levels deep "
                                   f"(at {_where(path[:8])}…)")
        if isinstance(value, _WithDuplicates):
            for key, values in value.repeated.items():
                kept = duplicates(path, key, values) if duplicates else REFUSE
                if kept is REFUSE:
                    shown = ", ".join(snippet(json.dumps(v), 40) for v in values[:4])
                    raise ParseError(tool, f"duplicate key {key!r} at {_where(path)} "
                                           f"(values {shown}): which one the tool meant "
                                           "is unknown")
                value[key] = kept
        if isinstance(value, dict):
            stack.extend((v, (*path, k)) for k, v in value.items()
                         if isinstance(v, dict | list))
        elif isinstance(value, list):
            stack.extend((v, (*path, i)) for i, v in enumerate(value)
                         if isinstance(v, dict | list))
    return document


def _decode_at(text: str, pos: int, tool: str,
               duplicates: DuplicatePolicy | None) -> tuple[Any, int]:
    try:
        document, end = _DECODER.raw_decode(text, pos)
    except json.JSONDecodeError as exc:
        raise ParseError(tool, f"broken JSON at line {exc.lineno} column {exc.colno}: "
                               f"{exc.msg}: {snippet(text[exc.pos:], 60)}") from None
    except RecursionError:
        raise ParseError(tool, f"JSON nested more than {MAX_DEPTH} levels deep "
                               f"(from line {text.count(chr(10), 0, pos) + 1})") from None
    except _Invalid as exc:
        raise ParseError(tool, str(exc)) from None
    return _checked(document, tool, duplicates), end


def read_documents(text: str, tool: str, *, several: bool = False,
                   duplicates: DuplicatePolicy | None = None
                   ) -> tuple[list[dict[str, Any]], list[str]]:
    """The JSON objects of a tool's output and the text lines before the first one.

    No document at all is ``([], lines)``: the caller words that error with the
    lines (the tool's own words). ``several``: documents may follow each other,
    separated by whitespace (fio ``--status-interval``); otherwise exactly one.
    """
    check_size(tool, text)
    text = text.removeprefix("\ufeff")
    start = _DOCUMENT_START.search(text)
    if start is None:
        return [], [line.strip() for line in text.splitlines() if line.strip()]
    leading = [line.strip() for line in text[:start.start()].splitlines() if line.strip()]
    documents: list[dict[str, Any]] = []
    pos = start.end() - 1
    while True:
        document, end = _decode_at(text, pos, tool, duplicates)
        documents.append(document)
        pos = _WHITESPACE.match(text, end).end()  # type: ignore[union-attr]  # \s* matches
        if pos == len(text):
            return documents, leading
        if not (several and text[pos] == "{"):
            what = "documents" if len(documents) > 1 else "document"
            raise ParseError(tool, f"text after the JSON {what}: {snippet(text[pos:])}")


def read_document(text: str, tool: str,
                  duplicates: DuplicatePolicy | None = None) -> tuple[dict[str, Any], list[str]]:
    """Exactly one JSON object (after optional text lines); ParseError otherwise."""
    documents, leading = read_documents(text, tool, duplicates=duplicates)
    if not documents:
        words = "; ".join(leading[-5:]) or "empty output"
        raise ParseError(tool, f"no JSON object in the output ({snippet(words, 300)})",
                         text.strip()[:300])
    return documents[0], leading


class DocumentStream:
    """Documents of an output read while it is written (burn-in's fio stream).

    Same rules as read_documents(several=True): text lines before the first
    document, then documents and whitespace only. Each character is scanned once:
    braces are counted outside strings to find where a document ends, and only a
    complete document is decoded.
    """

    _IN_DOCUMENT = re.compile(r'[{}"]')
    _IN_STRING = re.compile(r'["\\]')

    def __init__(self, tool: str, duplicates: DuplicatePolicy | None = None) -> None:
        self.tool = tool
        self.duplicates = duplicates
        self._chunks: list[str] = []  # the document being read
        self._size = 0
        self._depth = 0
        self._in_string = False
        self._escape = False
        self._in_note = False  # inside a text line before the first document
        self._at_line_start = True
        self.documents_read = 0

    def feed(self, text: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        pos = 0
        while pos < len(text):
            if self._depth == 0:
                pos = self._outside(text, pos)
                continue
            begin = pos
            pos = self._inside(text, pos)
            self._chunks.append(text[begin:pos])
            self._size += pos - begin
            if self._size > MAX_CHARS:
                raise ParseError(self.tool, f"a JSON document longer than {MAX_CHARS:,} "
                                            "characters")
            if self._depth == 0:
                document = "".join(self._chunks)
                self._chunks, self._size = [], 0
                out.append(_decode_at(document, 0, self.tool, self.duplicates)[0])
                self.documents_read += 1
        return out

    def _outside(self, text: str, pos: int) -> int:
        char = text[pos]
        if self._in_note:
            end = text.find("\n", pos)
            if end < 0:
                return len(text)
            self._in_note, self._at_line_start = False, True
            return end + 1
        if char == "{" and (self._at_line_start or self.documents_read):
            self._depth = 1
            self._chunks, self._size = ["{"], 1
            return pos + 1
        if char.isspace():
            end = _WHITESPACE.match(text, pos).end()  # type: ignore[union-attr]
            self._at_line_start = self._at_line_start or "\n" in text[pos:end]
            return end
        if self.documents_read:
            raise ParseError(self.tool, f"text after the JSON documents: {snippet(text[pos:])}")
        self._in_note, self._at_line_start = True, False
        return pos

    def _inside(self, text: str, pos: int) -> int:
        """Scan to the end of the document or of ``text``; return where it stopped."""
        while pos < len(text):
            if self._escape:
                self._escape = False
                pos += 1
                continue
            if self._in_string:
                found = self._IN_STRING.search(text, pos)
                if found is None:
                    return len(text)
                pos = found.end()
                if found.group() == "\\":
                    self._escape = True
                else:
                    self._in_string = False
                continue
            found = self._IN_DOCUMENT.search(text, pos)
            if found is None:
                return len(text)
            pos = found.end()
            char = found.group()
            if char == '"':
                self._in_string = True
            elif char == "{":
                self._depth += 1
                if self._depth > MAX_DEPTH:
                    raise ParseError(self.tool, f"JSON nested more than {MAX_DEPTH} levels "
                                                "deep")
            else:
                self._depth -= 1
                if self._depth == 0:
                    return pos
        return pos


# --- reports: loads_strict ------------------------------------------------------------

# What a report may hold, checked when it is read (verify, report show, the
# collector's ingest), so that nothing is shown or stored that a later reader
# cannot decode or serve. A report nests about 8 deep (statement > predicate >
# inventory > gpus > [i] > field); 64 leaves room for suite params and stays far
# below the interpreter's recursion limit (1000), which the C json module and
# FastAPI's jsonable_encoder (a few frames a level) reach when they serve it.
MAX_JSON_DEPTH = 64
# Far above any 64-bit counter (20 digits) or double (17 significant digits),
# below float overflow (309 digits: float() of a larger int raises OverflowError)
# and CPython's int-string limit (4300 digits, sys.int_info: a ValueError).
MAX_NUMBER_DIGITS = 64

# A JSON string (RFC 8259 section 7), possessive so that no body can make it
# backtrack. What is left without the strings is structure and numbers.
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_LONG_NUMBER = re.compile(rb"[0-9]{%d}" % (MAX_NUMBER_DIGITS + 1))
# Only an exponent of three digits or more can overflow a double (1e308 is finite).
_BIG_EXPONENT = re.compile(rb"[eE][-+]?[0-9]{3}")
_BRACKETS = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")
# Decoded UTF-8 holds no surrogate; only a \uD800-\uDFFF escape can make one.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def loads_strict(data: bytes | str) -> Any:
    """JSON as RFC 8259 and I-JSON (RFC 7493) define it, or StrictJSONError.

    Python's json.loads is lenient where a report must not be: it accepts NaN and
    Infinity (not JSON, RFC 8259 section 6; a strict encoder such as the
    collector's JSONResponse then cannot serve them) and 1e400 (as infinity),
    keeps the last of duplicate keys (RFC 7493 section 2.3: two readers would see
    two reports), raises ValueError past 4300 digits and RecursionError on deep
    nesting, and reads UTF-16 (RFC 8259 section 8.1: exchanged JSON is UTF-8).
    The checks that need no parse run on the bytes at C speed: a 2 MB burn-in
    report reads in under twice json.loads' time (50 ms here).
    """
    if isinstance(data, bytes):
        raw = data
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise StrictJSONError(f"not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    else:
        raw, text = data.encode("utf-8", "surrogatepass"), data
    outside_strings = _JSON_STRING.sub(b"", raw)
    depth = _nesting(outside_strings)
    if depth > MAX_JSON_DEPTH:
        raise StrictJSONError(f"nested {depth} deep, more than {MAX_JSON_DEPTH}")
    if _LONG_NUMBER.search(outside_strings):
        raise StrictJSONError(f"a number of more than {MAX_NUMBER_DIGITS} digits")
    hooks: dict[str, Any] = {}
    if _BIG_EXPONENT.search(outside_strings):
        hooks["parse_float"] = _float  # a call per number: only when needed
    try:
        value = json.loads(text, object_pairs_hook=_unique_object, parse_constant=_constant,
                           **hooks)
    except _Invalid as exc:
        raise StrictJSONError(str(exc)) from None
    except (ValueError, RecursionError) as exc:
        # JSONDecodeError is a ValueError; RecursionError cannot happen after the
        # depth check, but a typed error is the only way out of here.
        raise StrictJSONError(str(exc) or type(exc).__name__) from exc
    if _SURROGATE_ESCAPE.search(raw):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise StrictJSONError("a string holds a lone surrogate escape (not Unicode text, "
                                  "RFC 8259 section 8.2)") from exc
    return value


def _nesting(structure: bytes) -> int:
    """How deep the brackets of ``structure`` (JSON without its strings) nest.

    Each pass removes the innermost containers ("[]" once both kinds are one), so
    the passes count the levels; past MAX_JSON_DEPTH the count stops. Brackets left
    unpaired (not JSON; json.loads says where) count as open levels.
    """
    brackets = structure.translate(_BRACKETS, _NOT_BRACKETS)
    depth = 0
    while brackets and depth <= MAX_JSON_DEPTH:
        inner = brackets.replace(b"[]", b"")
        if len(inner) == len(brackets):
            return depth + brackets.count(b"[")
        brackets, depth = inner, depth + 1
    return depth
