"""The command line's files the package ships, generated from the parser.

`bench-agent completion bash|zsh` and `bench-agent man` print them on demand;
the same text is also written into the package (bench_agent/data/completion,
bench_agent/data/man) so that a wheel, a distribution package or the Ansible
role can install them without running the agent. scripts/gen-cli-docs writes
them; tests/cli/test_shipped_cli_docs.py fails while one is stale.
"""

from __future__ import annotations

from pathlib import Path

from bench_agent import data


def expected() -> dict[Path, str]:
    """Each shipped file and the text the current parser generates for it."""
    from bench_agent.cli.completion import bash_script, zsh_autoload_script
    from bench_agent.cli.manpage import man_page
    from bench_agent.cli.parser import build_parser

    parser = build_parser()
    return {data.BASH_COMPLETION: bash_script(parser),
            data.ZSH_COMPLETION: zsh_autoload_script(parser),
            data.MAN_PAGE: man_page(parser)}


def stale() -> list[Path]:
    """The shipped files whose text differs from what the parser generates."""
    return [path for path, text in expected().items()
            if not path.is_file() or path.read_text(encoding="utf-8") != text]


def write() -> list[Path]:
    """Rewrite the stale files; return them."""
    changed = stale()
    texts = expected()
    for path in changed:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(texts[path], encoding="utf-8")
    return changed
