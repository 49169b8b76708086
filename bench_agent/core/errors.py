"""One exception tree for the whole agent.

    BenchAgentError
    ├── ConfigError        a suite, profile or option is wrong (exit code 4)
    ├── UsageError         the command line asks for something that does not exist (3)
    ├── CheckError         raised inside a check; runner.py turns it into a verdict
    │   ├── ToolMissing    the external tool or library is absent      -> SKIP
    │   ├── NotApplicable  the node has nothing to measure (no GPU)    -> SKIP
    │   ├── ToolFailed     the tool exited non-zero or reported error  -> ERROR
    │   ├── ParseError     the tool's output cannot be read            -> ERROR
    │   └── CheckTimeout   the tool or check ran past its time limit   -> ERROR
    ├── ReportError        a report file cannot be read or written
    ├── SignatureError     a signed report does not verify
    └── StrictJSONError    JSON that the strict reader of reports refuses (attest.loads_strict)

Errors are raised deep, carry the tool's own words, and become verdicts in exactly
one place (runner.py). Foreign exceptions are translated at the boundary that
calls the foreign code, with ``raise ... from exc``.
"""

from __future__ import annotations


class BenchAgentError(Exception):
    """Base class of every error the agent raises on purpose."""


class UsageError(BenchAgentError):
    """The command line names a check, suite, profile or file that does not exist."""


class ConfigError(BenchAgentError):
    """A suite or profile file (or an option) is invalid.

    The message names the file, the key and what was expected, so an SRE can fix
    the YAML without reading our code.
    """

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None):
        self.file = file
        self.key = key
        where = ""
        if file and key:
            where = f"{file}: {key}: "
        elif file:
            where = f"{file}: "
        elif key:
            where = f"{key}: "
        super().__init__(f"{where}{message}")


class CheckError(BenchAgentError):
    """Raised inside a check; runner.py maps the subclass to a verdict status."""


class ToolMissing(CheckError):
    """An external tool or library is not installed: the check is SKIP."""

    def __init__(self, tool: str, hint: str = ""):
        self.tool = tool
        message = f"{tool} is not installed"
        if hint:
            message += f" ({hint})"
        super().__init__(message)


class NotApplicable(CheckError):
    """The node has nothing this check can measure (no GPU, no RDMA device)."""


class ToolFailed(CheckError):
    """The tool exited non-zero, or exited 0 with an error inside its output."""

    def __init__(self, tool: str, message: str, *, returncode: int | None = None):
        self.tool = tool
        self.returncode = returncode
        rc = f" (exit code {returncode})" if returncode is not None else ""
        super().__init__(f"{tool} failed{rc}: {message.strip()}")


class ParseError(CheckError):
    """The tool's output could not be read; the message quotes what it said."""

    def __init__(self, tool: str, message: str, excerpt: str = ""):
        self.tool = tool
        self.excerpt = excerpt
        text = f"cannot read {tool} output: {message}"
        if excerpt:
            text += f"; output began: {excerpt[:300]!r}"
        super().__init__(text)


class CheckTimeout(CheckError):
    """The check or its tool ran past its time limit and was stopped."""


class ReportError(BenchAgentError):
    """A report cannot be read (not JSON, wrong schema) or written (disk full)."""


class SignatureError(BenchAgentError):
    """A signed report does not verify: payload, type, signature or key differ."""


class StrictJSONError(BenchAgentError):
    """JSON that attest.loads_strict refuses: not UTF-8 JSON, a duplicate key, NaN or
    Infinity, an oversized integer, nesting too deep, a lone surrogate. Each reader
    turns it into its own refusal (ReportError, SignatureError, HTTP 400/422)."""
