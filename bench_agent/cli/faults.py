"""`bench-agent faults [--json]`: the fault catalog (bench_agent/faults/catalog.yaml)."""

from __future__ import annotations

import argparse
import json
import sys

COLUMNS = ("code", "severity", "remediation", "component", "title")


def cmd_faults(args: argparse.Namespace) -> int:
    from bench_agent.faults.catalog import load_catalog
    from bench_agent.report.display import print_rows

    catalog = load_catalog()
    if args.json:
        sys.stdout.write(json.dumps(catalog.records(), indent=2) + "\n")
        return 0
    rows = [tuple(record[c] for c in COLUMNS) for record in catalog.records()]
    print_rows(COLUMNS, rows)
    return 0
