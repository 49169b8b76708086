"""Shell completion for bash and zsh, generated from the argparse parser.

One walk over the parser (``grammar``) gives, for each command path
("bench-agent", "bench-agent fleet compare"): its subcommands, its options, the
options that take a value, and the values a word may take (argparse ``choices``;
for `run` the domains, suites and checks, for --profile the shipped profiles, as
they are where the script is generated). Both scripts hold that table and the
same small resolver, ``_bench_agent_candidates WORD...``: it reads the words
typed so far and prints what may come next, one per line, or the marker
``__files__`` where a path is expected. Only the last step differs per shell
(bash's ``compgen``/``COMPREPLY``; zsh's ``compadd``/``_files``).

Written for bash >= 4 (associative arrays) and zsh >= 5. Bash's completion
builtins: https://www.gnu.org/software/bash/manual/html_node/Programmable-Completion-Builtins.html;
zsh's: https://zsh.sourceforge.io/Doc/Release/Completion-Widgets.html.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = "bench-agent"
FILES = "__files__"


@dataclass
class Command:
    """What one command path accepts."""

    path: str
    subcommands: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)
    # option -> its values ([] = any value; [FILES] = a path)
    takes_value: dict[str, list[str]] = field(default_factory=dict)
    positional: list[str] = field(default_factory=list)  # values of the positional words


def _dynamic_values(path: str, dest: str) -> list[str] | None:
    """Names that exist only in the installed package (checks, suites, profiles)."""
    if (path, dest) == (f"{ROOT} run", "targets"):
        from bench_agent.checks import check_names
        from bench_agent.config.loader import DOMAINS, suite_names

        return list(dict.fromkeys([*DOMAINS, *suite_names(), *check_names()]))
    if dest == "profile":
        from bench_agent.config.loader import profile_names

        return [*profile_names(), FILES]
    return None


def _values(action: argparse.Action, path: str) -> list[str]:
    dynamic = _dynamic_values(path, action.dest)
    if dynamic is not None:
        return dynamic
    if action.choices is not None:
        return [str(choice) for choice in action.choices]
    if action.type is Path:
        return [FILES]
    return []


def grammar(parser: argparse.ArgumentParser, path: str = ROOT) -> Iterator[Command]:
    """Each command path of ``parser``, the root first."""
    command = Command(path)
    children: list[tuple[str, argparse.ArgumentParser]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                command.subcommands.append(name)
                children.append((name, sub))
        elif action.option_strings:
            if action.help == argparse.SUPPRESS:
                continue
            command.options.extend(action.option_strings)
            if action.nargs != 0:
                for option in action.option_strings:
                    command.takes_value[option] = _values(action, path)
        elif action.help != argparse.SUPPRESS:
            command.positional.extend(_values(action, path))
    yield command
    for name, sub in children:
        yield from grammar(sub, f"{path} {name}")


def _quote(word: str) -> str:
    return "'" + word.replace("'", "'\\''") + "'"


def _table(commands: list[Command]) -> str:
    """The grammar as four associative arrays, in syntax both shells read."""
    lines = ["typeset -gA _bench_agent_subs _bench_agent_opts _bench_agent_vals "
             "_bench_agent_pos"]
    # The key goes through a variable: zsh keeps quotes written inside a subscript
    # as part of the key, bash drops them; `[$_k]` means the same in both.
    for c in commands:
        lines.append(f"_k={_quote(c.path)}")
        lines.append(f"_bench_agent_subs[$_k]={_quote(' '.join(c.subcommands))}")
        lines.append(f"_bench_agent_opts[$_k]={_quote(' '.join(c.options))}")
        lines.append(f"_bench_agent_pos[$_k]={_quote(' '.join(c.positional))}")
        for option, values in c.takes_value.items():
            # "__any__" marks an option that takes a value with nothing to offer.
            lines.append(f"_k={_quote(c.path + ' ' + option)}")
            lines.append(f"_bench_agent_vals[$_k]={_quote(' '.join(values) or '__any__')}")
    lines.append("unset _k")
    return "\n".join(lines) + "\n"


# The resolver, in the common subset of bash and zsh: walk the words before the
# cursor, following subcommands and skipping option values, then print what may
# come at the cursor. Word splitting of the table's strings is explicit
# (`${=...}` in zsh) in _bench_agent_print. No variable is called `path`: zsh ties
# that name to $PATH.
_RESOLVER = r"""
_bench_agent_candidates() {
  # $1..$N-1: the words after `bench-agent` before the cursor; $N: the word at it.
  local cmd_path="bench-agent" expect="" word cur
  local -a before
  before=("$@")
  cur="${before[${#before[@]}]}"
  [ -n "$BASH_VERSION" ] && cur="${before[${#before[@]}-1]}" && unset "before[${#before[@]}-1]"
  [ -n "$ZSH_VERSION" ] && before=("${(@)before[1,-2]}")
  for word in "${before[@]}"; do
    if [ -n "$expect" ]; then expect=""; continue; fi
    case "$word" in
      --*=*) continue ;;
      -*) [ -n "${_bench_agent_vals[$cmd_path $word]+x}" ] && expect="$word"
          continue ;;
    esac
    if _bench_agent_has "${_bench_agent_subs[$cmd_path]}" "$word"; then
      cmd_path="$cmd_path $word"
    fi
  done
  if [ -n "$expect" ]; then
    _bench_agent_print "${_bench_agent_vals[$cmd_path $expect]}"
    return
  fi
  case "$cur" in
    -*) _bench_agent_print "${_bench_agent_opts[$cmd_path]}" ;;
    *) if [ -n "${_bench_agent_subs[$cmd_path]}" ]; then
         _bench_agent_print "${_bench_agent_subs[$cmd_path]}"
       else
         _bench_agent_print "${_bench_agent_pos[$cmd_path]}"
       fi ;;
  esac
}

_bench_agent_has() {
  local item
  for item in $(_bench_agent_print "$1"); do [ "$item" = "$2" ] && return 0; done
  return 1
}

_bench_agent_print() {
  local item
  if [ -n "$ZSH_VERSION" ]; then
    for item in ${=1}; do [ "$item" = "__any__" ] || printf '%s\n' "$item"; done
  else
    for item in $1; do [ "$item" = "__any__" ] || printf '%s\n' "$item"; done
  fi
}
"""

_BASH_HOOK = r"""
_bench_agent() {
  local cur="${COMP_WORDS[COMP_CWORD]}" line
  local -a candidates
  COMPREPLY=()
  while IFS= read -r line; do candidates+=("$line"); done \
    < <(_bench_agent_candidates "${COMP_WORDS[@]:1:COMP_CWORD}")
  local item
  for item in "${candidates[@]}"; do
    if [ "$item" = "__files__" ]; then
      local file
      while IFS= read -r file; do COMPREPLY+=("$file"); done < <(compgen -f -- "$cur")
      compopt -o filenames 2>/dev/null
    elif [[ "$item" == "$cur"* ]]; then
      COMPREPLY+=("$item")
    fi
  done
}
complete -F _bench_agent bench-agent
"""

_ZSH_HOOK = r"""
_bench_agent_zsh() {
  local -a candidates
  candidates=("${(@f)$(_bench_agent_candidates "${(@)words[2,CURRENT]}")}")
  if (( ${candidates[(Ie)__files__]} )); then
    _files
    candidates=("${(@)candidates:#__files__}")
  fi
  (( ${#candidates} )) && compadd -- "${(@)candidates:#}"
}
"""


def bash_script(parser: argparse.ArgumentParser) -> str:
    """`source <(bench-agent completion bash)`, or a file in
    /usr/share/bash-completion/completions/bench-agent."""
    return ("# bash completion for bench-agent (generated: bench-agent completion bash)\n"
            + _table(list(grammar(parser))) + _RESOLVER + _BASH_HOOK)


def zsh_script(parser: argparse.ArgumentParser) -> str:
    """Sourced after compinit: `source <(bench-agent completion zsh)` in ~/.zshrc."""
    return ("# zsh completion for bench-agent (generated: bench-agent completion zsh)\n"
            + _table(list(grammar(parser))) + _RESOLVER + _ZSH_HOOK
            + "compdef _bench_agent_zsh bench-agent\n")


def zsh_autoload_script(parser: argparse.ArgumentParser) -> str:
    """The file `_bench-agent` in a folder of $fpath (the package ships it).

    compinit reads the `#compdef` line and autoloads the file as the function
    `_bench-agent` at the first completion: its body defines the table and the
    helpers, then completes the current word. Autoloading:
    https://zsh.sourceforge.io/Doc/Release/Completion-System.html#Autoloaded-files
    """
    return ("#compdef bench-agent\n"
            "# zsh completion for bench-agent (generated: scripts/gen-cli-docs)\n"
            + _table(list(grammar(parser))) + _RESOLVER + _ZSH_HOOK
            + '_bench_agent_zsh "$@"\n')
