"""The engine: a plan of checks -> one child process per check -> measurements -> verdicts."""
