"""`bench-agent topology capture` and the --expect side of `bench-agent run topology`.

capture: this node's PCI topology as the expected-topology YAML of its node type
(checks/topology/expected.py), on stdout or into --output FILE (written whole or
not at all). ``expected_topology`` reads such a file strictly for a run, before
anything runs: a bad file is a configuration error (exit 4) naming it.
"""

from __future__ import annotations

import argparse
import re
import socket
from pathlib import Path
from typing import Any

HEADER = ("# Expected PCI topology of a node type, written by `bench-agent topology capture`.\n"
          "# Check another node against it: bench-agent run topology --expect THIS_FILE\n"
          "# Components are matched by PCI address; names are informative.\n")


def capture_text(root: Path, host: str | None) -> str:
    import yaml

    from bench_agent.checks.topology.expected import capture
    from bench_agent.checks.topology.reader import read_topology

    class Dumper(yaml.SafeDumper):
        """Every text value quoted: an unquoted 0000:53:00.0 is a YAML 1.1 base-60
        number to PyYAML, and a reader copying the file's style must not meet one."""

    def quoted(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="'")

    Dumper.add_representer(str, quoted)
    document = capture(read_topology(root), host)
    text = yaml.dump(document, Dumper=Dumper, sort_keys=False, default_flow_style=None,
                     width=100)
    # Keys stay bare (they are names, never numbers).
    return HEADER + re.sub(r"'([a-z_]+)':", r"\1:", text)


def cmd_topology(args: argparse.Namespace) -> int:
    from bench_agent.core.errors import NotApplicable
    from bench_agent.core.model import write_atomic

    if not (args.sysroot / "sys/bus/pci/devices").is_dir():
        raise NotApplicable("no /sys/bus/pci/devices: no PCI bus visible here, nothing to "
                            "capture")
    text = capture_text(args.sysroot, socket.gethostname())
    if args.output is None:
        print(text, end="")
        return 0
    write_atomic(args.output, text)  # a ReportError (exit 5) naming the file
    print(f"wrote {args.output}")
    return 0


def expected_topology(path: Path) -> dict[str, Any]:
    """The expected topology file's document, checked; ConfigError otherwise."""
    from bench_agent.checks.topology.expected import parse_expected
    from bench_agent.config.loader import read_yaml

    data, _digest = read_yaml(path)
    parse_expected(data, str(path))
    return data
