"""A stand-in for `python -m bench_agent.run.worker` whose measurement changes per run.

The runner's worker command is its seam for tests (as misbehaving_worker.py): a
real child that answers the worker protocol (run/worker.py) with one
inventory.logical_cpus measurement, the Nth value of VALUES on its Nth start, so
confirm-before-failing is tested with real re-runs.
Usage: flaky_worker.py COUNTER_FILE VALUE [VALUE ...]
"""

import json
import sys
from pathlib import Path

request = json.loads(sys.stdin.read())
counter = Path(sys.argv[1])
attempt = int(counter.read_text()) if counter.exists() else 0
counter.write_text(str(attempt + 1))
values = [float(v) for v in sys.argv[2:]]
value = values[min(attempt, len(values) - 1)]
print(json.dumps({"ok": True, "measurements": [
    {"check": request["check"], "metric": "inventory.logical_cpus", "value": value,
     "unit": "count"}]}))
