"""bench-agent(1), generated from the argparse parser: every command, its
description and its options with their help, so the page cannot drift from the
command line.

roff as man-pages(7) and groff_man(7) describe it: .TH, .SH, .SS, .TP, .B/.I;
text escaped so that a backslash, a leading dot or apostrophe, or a hyphen in an
option name (\\- is the minus sign man(1) lets you search for) reads as written.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

ENVIRONMENT = (
    ("BENCH_AGENT_KEY", "path of the node's Ed25519 signing key"),
    ("BENCH_AGENT_COLLECTOR", "collector base URL of `upload` when --collector is not given"),
    ("BENCH_AGENT_COLLECTOR_DB", "database of `collector serve|init|enroll|revoke`"),
    ("BENCH_AGENT_COLLECTOR_TOKEN", "admin token of the collector"),
)


def roff_text(text: str) -> str:
    """``text`` safe as a roff text line (or the argument of a macro)."""
    escaped = text.replace("\\", "\\e").replace("-", "\\-")
    lines = []
    for line in escaped.splitlines() or [""]:
        lines.append("\\&" + line if line.startswith((".", "'")) else line)
    return "\n".join(lines)


def _help(action: argparse.Action, parser: argparse.ArgumentParser) -> str:
    if not action.help:
        return ""
    # argparse's own expansion of %(default)s and the like.
    formatter = parser._get_formatter()
    return formatter._expand_help(action)


def _option_label(action: argparse.Action) -> str:
    names = ", ".join(f"\\fB{roff_text(o)}\\fR" for o in action.option_strings)
    if action.nargs == 0:
        return names
    metavar = action.metavar or (
        "{" + ",".join(str(c) for c in action.choices) + "}" if action.choices
        else action.dest.upper())
    return f"{names} \\fI{roff_text(str(metavar))}\\fR"


def _commands(parser: argparse.ArgumentParser, path: str
              ) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, f"{path} {name}")


def _section(path: str, parser: argparse.ArgumentParser, root: bool) -> list[str]:
    out = []
    if not root:
        out.append(f".SS {roff_text(path)}")
        usage = parser.format_usage().removeprefix("usage: ").strip()
        out += [".PP", roff_text(" ".join(usage.split()))]
        if parser.description:
            out += [".PP", roff_text(parser.description)]
    positionals = [a for a in parser._actions if not a.option_strings
                   and not isinstance(a, argparse._SubParsersAction)
                   and a.help != argparse.SUPPRESS]
    options = [a for a in parser._actions if a.option_strings and a.help != argparse.SUPPRESS
               and not isinstance(a, argparse._HelpAction)]
    for action in positionals:
        out += [".TP", f"\\fI{roff_text(str(action.metavar or action.dest))}\\fR",
                roff_text(_help(action, parser) or "")]
    for action in options:
        out += [".TP", _option_label(action), roff_text(_help(action, parser) or "")]
    return out


def man_page(parser: argparse.ArgumentParser) -> str:
    from bench_agent import __version__

    prog = parser.prog
    out = [
        f'.TH {prog.upper()} 1 "" "{prog} {__version__}" "User Commands"',
        ".SH NAME",
        f"{roff_text(prog)} \\- {roff_text(parser.description or '')}",
        ".SH SYNOPSIS",
        f".B {roff_text(prog)}",
        "\\fICOMMAND\\fR [\\fIOPTIONS\\fR]",
        ".SH OPTIONS",
        *_section(prog, parser, root=True),
        ".SH COMMANDS",
    ]
    for path, sub in list(_commands(parser, prog))[1:]:
        if any(isinstance(a, argparse._SubParsersAction) for a in sub._actions):
            # A group (fleet, keys ...): its commands follow with their own options.
            out += [f".SS {roff_text(path)}", roff_text(sub.description or "")]
            continue
        out += _section(path, sub, root=False)
    out += [".SH EXIT STATUS", roff_text(parser.epilog or "")]
    out.append(".SH ENVIRONMENT")
    for name, meaning in ENVIRONMENT:
        out += [".TP", f"\\fB{roff_text(name)}\\fR", roff_text(meaning)]
    out += [".SH SEE ALSO", "The project's README.md and docs/cli.md."]
    return "\n".join(out) + "\n"
