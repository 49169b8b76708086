"""A corpus of hostile input, written for these tests (no third-party data).

Two kinds of thing:

* NAMES: strings a host, check, device or message may be called. Each is either
  legal in a name (markup, HTML, brackets, a slash, non-ASCII letters, 10 KB)
  and must then be shown, escaped, wherever it is shown; or it holds a control
  or format character (ANSI escape, NUL, a bidirectional override), which a
  reader must refuse or show as a visible escape, never pass on raw.
* Variants of a document (a tool's output, a report file): the ways a broken,
  cut or doctored output differs from a good one. ``text_variants`` changes any
  text; ``json_variants`` also knows JSON's own traps. Each variant says
  whether a reader must refuse it (``refuse``: the figure it reads is changed,
  cut or doubled with another value, so no figure can be trusted), or may read
  it, and then only figures that the original holds.

Everything here is a plain function of its inputs, so a failing case can be
rebuilt by hand from its id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KB10 = 10 * 1024

# --- names ----------------------------------------------------------------------------

# Legal in every name, and each one breaks a naive renderer: rich markup (a style,
# a closing tag, a link), a path in brackets, HTML, a quote and an ampersand,
# non-ASCII letters, an emoji code, and 10 KB of text.
LEGAL_NAMES: dict[str, str] = {
    "markup": "[bold red]node[/bold red]",
    "closing-tag": "[/]rack-1",
    "link": "[link=https://example.invalid]click[/link]",
    "bracket-path": "[/tmp/reports]",
    "device-brackets": "nvme[0]n1/p[1]",
    "html": "<script>alert(1)</script>",
    "quote-amp": "a \"b\" & 'c' <d>",
    "unicode": "gpü-温度-✓",
    "emoji-code": ":warning: node",
    "long": "n" * KB10,
}

# Never legal in a name (model.REFUSED_IN_NAMES): ANSI colour and a terminal
# title (ECMA-48 CSI and OSC), NUL, a bidirectional override (Trojan Source),
# a carriage return that would overwrite the start of the line.
CONTROL_NAMES: dict[str, str] = {
    "ansi-colour": "\x1b[31mred\x1b[0m",
    "ansi-title": "\x1b]0;owned\x07node",
    "nul": "node\x00-1",
    "bidi": "gpu0\u202eptmet",
    "carriage-return": "ok\rFAIL",
}

ESC = "\x1b"


def visible(name: str) -> str:
    """The part of ``name`` that any faithful rendering shows as it is: its
    printable characters up to the first non-printable one (cut to 60, so that
    a wrapped or folded rendering still holds it on one line)."""
    match = re.match(r"[^\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]*", name)
    assert match is not None
    return match.group()[:60]


# --- variants of a document -----------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """A hostile copy of a document: its id, its text, and whether every reader
    must refuse it."""

    id: str
    text: str
    refuse: bool = True


def _replace_once(text: str, old: str, new: str) -> str:
    assert old in text, f"{old!r} is not in the document"
    return text.replace(old, new, 1)


def text_variants(text: str, figure: str) -> list[Variant]:
    """Variants of any text output. ``figure`` is a number exactly as the document
    prints it, one that the reader turns into a measurement."""
    assert figure in text, f"{figure!r} is not in the document"
    half = len(text) // 2
    return [
        Variant("empty", ""),
        # A prefix may be a whole output of fewer tests (qperf's first test): it is
        # read only if every figure it gives is the original's.
        Variant("truncated", text[:half], refuse=False),
        Variant("truncated-at-figure", text[:text.index(figure)], refuse=False),
        Variant("concatenated", text + text, refuse=False),
        Variant("concatenated-other-figure",
                text + _replace_once(text, figure, _other(figure))),
        Variant("nul-in-figure", _replace_once(text, figure, figure[:1] + "\x00" + figure[1:])),
        Variant("nan-figure", _replace_once(text, figure, "nan")),
        Variant("inf-figure", _replace_once(text, figure, "inf")),
        Variant("negative-figure", _replace_once(text, figure, "-" + figure)),
        Variant("huge-figure", _replace_once(text, figure, "9" * 5000)),
        Variant("overflow-figure", _replace_once(text, figure, "1e400")),
        Variant("ansi-around-figure", _replace_once(text, figure, f"{ESC}[1m{figure}{ESC}[0m"),
                refuse=False),
        Variant("markup-line", "[bold red]PASS[/bold red] <b>ok</b>\n" + text, refuse=False),
        Variant("long-line", text + "x" * KB10 + "\n", refuse=False),
        Variant("binary-garbage", text[:half] + "\ufffd\ufffd\x07\x08" + text[half:],
                refuse=False),
        Variant("nul-inside", text[:half] + "\x00" + text[half:], refuse=False),
    ]


def json_variants(text: str, key: str, after: str = "") -> list[Variant]:
    """Variants of a tool's JSON output. ``key`` names a number that the reader
    turns into a measurement; its first occurrence after the text ``after``,
    ``"key": number``, is changed."""
    pattern = re.compile('("' + re.escape(key) + r'"\s*:\s*)(-?[0-9][0-9.eE+-]*)')
    found = pattern.search(text, text.index(after) if after else 0)
    assert found is not None, f"no number under {key!r}"
    prefix, number = found.group(1), found.group(2)
    at = found.start()
    pair = found.group()

    def with_value(value: str) -> str:
        return text[:at] + prefix + value + text[found.end():]

    opening = text.index("{")
    return [
        Variant("json-empty", ""),
        Variant("json-truncated", text[:len(text) // 2]),
        Variant("json-truncated-in-number", text[:at + len(prefix) + 1]),
        Variant("json-concatenated-same", text + "\n" + text, refuse=False),
        Variant("json-concatenated-other",
                text + "\n" + with_value(_other(number))),
        Variant("json-trailing-garbage", text + "\n}garbage{"),
        Variant("json-duplicate-key", text[:at] + f"{prefix}{_other(number)}, " + text[at:]),
        Variant("json-nan", with_value("NaN")),
        Variant("json-infinity", with_value("Infinity")),
        Variant("json-minus-infinity", with_value("-Infinity")),
        Variant("json-overflow", with_value("1e400")),
        Variant("json-huge-int", with_value("9" * 5000)),
        Variant("json-negative", with_value("-" + number.lstrip("-"))),
        Variant("json-string-figure", with_value(f'"{number}"'), refuse=False),  # same figure
        Variant("json-null-figure", with_value("null")),
        # Not the figure, but traps for the reader: it may refuse them, or read the
        # original figures.
        Variant("json-deep", text[:opening + 1] + '"deep": ' + "[" * 100_000 + "]" * 100_000
                + ", " + text[opening + 1:], refuse=False),
        Variant("json-nul-raw", text[:at] + "\x00" + text[at:], refuse=False),
        Variant("json-nul-escaped-key", text[:at] + pair.replace(f'"{key}"', f'"{key}\\u0000"', 1)
                + text[found.end():]),
        Variant("json-lone-surrogate", text[:opening + 1] + '"x": "\\ud800", '
                + text[opening + 1:], refuse=False),
        Variant("json-ansi-note", f"{ESC}[31mnote: [bold]hi[/bold]{ESC}[0m\n" + text,
                refuse=False),
        Variant("json-long-string", text[:opening + 1] + f'"pad": "{"x" * KB10}", '
                + text[opening + 1:], refuse=False),
    ]


def _other(number: str) -> str:
    """Another plausible figure: the original times 47, as the document would print it."""
    try:
        value = float(number)
    except ValueError:
        return "4700"
    return f"{value * 47 + 1:.3f}"


# --- report files ---------------------------------------------------------------------


def report_file_variants(text: str) -> list[tuple[str, bytes]]:
    """Hostile copies of a report file (a DSSE envelope or a plain report), as the
    bytes on disk: every one must be refused by whoever reads it (verify, report
    show, the collector's ingest)."""
    opening = text.index("{")

    def inserted(member: str) -> str:
        return text[:opening + 1] + member + ", " + text[opening + 1:]

    first_key = re.search(r'"([A-Za-z_]+)"\s*:', text)
    assert first_key is not None
    variants = {
        "empty": "",
        "truncated": text[:len(text) // 2],
        "concatenated": text + text,
        "nan": inserted('"x": NaN'),
        "infinity": inserted('"x": -Infinity'),
        "overflow": inserted('"x": 1e400'),
        "huge-int": inserted('"x": ' + "9" * 5000),
        "deep": inserted('"x": ' + "[" * 100_000 + "]" * 100_000),
        "duplicate-key": inserted(f'"{first_key.group(1)}": "other"'),
        "nul": text[:opening + 1] + "\x00" + text[opening + 1:],
        "not-an-object": "[1, 2, 3]",
    }
    out = [(name, value.encode("utf-8")) for name, value in variants.items()]
    out.append(("utf16", text.encode("utf-16")))
    out.append(("not-utf8", text.encode("utf-8")[:opening + 1] + b"\xff\xfe" +
                text.encode("utf-8")[opening + 1:]))
    return out
