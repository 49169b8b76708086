"""`python -m bench_agent.cli`: the same as the `bench-agent` command."""

import sys

from bench_agent.cli.main import main

sys.exit(main())
