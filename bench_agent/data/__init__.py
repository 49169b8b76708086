"""Files shipped in the package beside the code: the systemd units (SYSTEMD), the
shell completion scripts (COMPLETION) and the man page (MAN).

The completion scripts and the man page are generated from the command line's
parser by scripts/gen-cli-docs (bench_agent/cli/shipped_docs.py says which file
is which); tests/cli/test_shipped_cli_docs.py fails while they are stale.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent
SYSTEMD = ROOT / "systemd"
UNITS = ("bench-agent-health.service", "bench-agent-health.timer",
         "bench-agent-acceptance.service", "bench-agent-acceptance.timer")
COMPLETION = ROOT / "completion"
# bash-completion loads completions/<command name> on demand; zsh autoloads a
# file named _<command> from $fpath.
BASH_COMPLETION = COMPLETION / "bench-agent.bash"
ZSH_COMPLETION = COMPLETION / "_bench-agent"
MAN = ROOT / "man"
MAN_PAGE = MAN / "bench-agent.1"
