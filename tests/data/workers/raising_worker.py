"""The real worker (`python -m bench_agent.run.worker`) with one more check, which
raises an error of a class given on the command line under a name of its own: the
renamed or subclassed error a refactoring or a check's own subclass makes.

Usage: raising_worker.py BASE NEW_NAME ARGS_JSON
    BASE       a class of bench_agent.core.errors, or a builtin exception (ValueError)
    NEW_NAME   the name of the subclass the check raises
    ARGS_JSON  the arguments of its constructor, a JSON list
The request's check must be "test.raises".
"""

import builtins
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from pydantic import BaseModel

from bench_agent import checks
from bench_agent.checks.base import Check, CheckContext
from bench_agent.core import errors
from bench_agent.core.model import Measurement
from bench_agent.run import worker

BASE, NEW_NAME, ARGS = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])


class RaisingCheck(Check):
    name = "test.raises"
    domain = "test"
    description = "raises a renamed error"
    metrics = ()

    def run(self, ctx: CheckContext, params: BaseModel) -> list[Measurement]:
        base = getattr(errors, BASE, None) or getattr(builtins, BASE)
        renamed = type(NEW_NAME, (base,), {})
        raise renamed(*ARGS)


# Registered the way a check module registers its checks: a CHECKS tuple in the
# module the first part of the name points at (checks.MODULES).
CHECKS = (RaisingCheck,)
checks.MODULES["test"] = "__main__"
raise SystemExit(worker.main())
