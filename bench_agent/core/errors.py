"""One exception tree for the whole agent, the collector's errors included.

Each class says what it becomes: ``status`` is the verdict status when a check
raises it (runner.py reads that value, never the class's name, so renaming or
subclassing an error cannot turn a SKIP into an ERROR); ``exit_code`` is the exit
code when it reaches the command line's main() (the README's exit-code table).
A dash is None: the error is not a verdict, or not an exit code, and is turned
into something else where it is caught (column "becomes").

    class                         status exit becomes
    BenchAgentError               -      -    the base: reaching main() without an exit code, a bug
    ├── UsageError                -      3    the command line names what does not exist
    ├── ConfigError               -      4    a suite, profile or option is wrong (file, key)
    ├── UnitError                 -      -    no or a wrong unit; config makes it a ConfigError
    ├── CheckError                ERROR  2    raised inside a check (exit 2: `parse`)
    │   ├── ToolMissing           SKIP   2    the external tool or library is absent
    │   ├── NotApplicable         SKIP   2    nothing to measure here (no GPU, no peer)
    │   │   └── NotApplicableHere SKIP   2    a burn-in load cannot run here
    │   ├── ToolFailed            ERROR  2    the tool exited non-zero or reported an error
    │   │   └── GpuStackBroken    ERROR  2    GPUs on the PCI bus, but no driver/NVML/CUDA
    │   ├── ParseError            ERROR  2    the tool's output cannot be read
    │   ├── CheckTimeout          ERROR  2    the tool or check ran past its time limit
    │   └── StorageRefused        ERROR  2    a storage target is unsafe or unusable
    ├── ReportError               -      5    a report cannot be read or written
    ├── SignatureError            -      5    a signed report does not verify (`verify`: 1)
    ├── StrictJSONError           -      -    JSON the strict reader refuses; each reader's own
    ├── TransportError            -      -    upload: no complete answer; the report stays spooled
    ├── PeerError                 -      -    peer: it cannot start; `bench-agent peer` exits 2
    ├── EnrollmentError           -      -    collector: a key it cannot enroll: HTTP 4xx, reason
    └── Refused                   -      -    collector: a body it will not store: http_status

An error with no status that escapes a check anyway (a UsageError for an unknown
check name) is ERROR: only a class that says SKIP can make a SKIP
(``verdict_status``). A foreign exception is ERROR too, with its traceback.

Private exceptions, which never leave their module (tests/core/test_errors.py
allows only these outside this file):
    core.strict_json._Invalid   control flow inside the JSON decoder's hooks; the
                                reader raises ParseError with the tool's name
    core.inventory._Mismatch    a compiled record reader's "not this": the slow
                                reader then raises the ValueError naming the place

Errors are raised deep, carry the tool's own words, and become verdicts in exactly
one place (runner.py). Foreign exceptions are translated at the boundary that
calls the foreign code, with ``raise ... from exc``.
"""

from __future__ import annotations

from typing import ClassVar

from bench_agent.core.status import Status

# The README's exit codes that errors give (0 PASS and 1 FAIL come from verdicts).
EXIT_ERROR = 2
EXIT_USAGE = 3
EXIT_CONFIG = 4
EXIT_REPORT = 5


class BenchAgentError(Exception):
    """Base class of every error the agent raises on purpose."""

    status: ClassVar[Status | None] = None
    exit_code: ClassVar[int | None] = None


class UsageError(BenchAgentError):
    """The command line names a check, suite, profile or file that does not exist."""

    status = None
    exit_code: ClassVar[int] = EXIT_USAGE


class ConfigError(BenchAgentError):
    """A suite or profile file (or an option) is invalid.

    The message names the file, the key and what was expected, so an SRE can fix
    the YAML without reading our code.
    """

    status = None
    exit_code: ClassVar[int] = EXIT_CONFIG

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


class UnitError(BenchAgentError, ValueError):
    """A value that cannot be read as a quantity of the expected unit.

    config/loader.py turns it into a ConfigError that names the file and the key.
    A ValueError too, so that a pydantic validator raising it gives a
    ValidationError like any other bad value.
    """

    status = None
    exit_code = None


class CheckError(BenchAgentError):
    """Raised inside a check; runner.py turns it into a verdict of its ``status``."""

    status: ClassVar[Status] = Status.ERROR
    exit_code: ClassVar[int] = EXIT_ERROR


class ToolMissing(CheckError):
    """An external tool or library is not installed: the check is SKIP."""

    status = Status.SKIP
    exit_code = EXIT_ERROR

    def __init__(self, tool: str, hint: str = ""):
        self.tool = tool
        message = f"{tool} is not installed"
        if hint:
            message += f" ({hint})"
        super().__init__(message)


class NotApplicable(CheckError):
    """The node has nothing this check can measure (no GPU, no RDMA device): SKIP."""

    status = Status.SKIP
    exit_code = EXIT_ERROR


class NotApplicableHere(NotApplicable):
    """This node has nothing for a burn-in load to drive; the load process exits
    burnin.loads.NOT_APPLICABLE and the supervisor reports the load as SKIP."""

    status = Status.SKIP
    exit_code = EXIT_ERROR


class ToolFailed(CheckError):
    """The tool exited non-zero, or exited 0 with an error inside its output."""

    status = Status.ERROR
    exit_code = EXIT_ERROR

    def __init__(self, tool: str, message: str, *, returncode: int | None = None):
        self.tool = tool
        self.returncode = returncode
        rc = f" (exit code {returncode})" if returncode is not None else ""
        super().__init__(f"{tool} failed{rc}: {message.strip()}")


class GpuStackBroken(ToolFailed):
    """NVIDIA GPUs on the PCI bus, but the driver, NVML or CUDA does not answer: a
    broken GPU node (fault BA-GPU-DRIVER), never a SKIP (checks/gpu/presence.py)."""

    status = Status.ERROR
    exit_code = EXIT_ERROR


class ParseError(CheckError):
    """The tool's output could not be read; the message quotes what it said."""

    status = Status.ERROR
    exit_code = EXIT_ERROR

    def __init__(self, tool: str, message: str, excerpt: str = ""):
        self.tool = tool
        self.excerpt = excerpt
        text = f"cannot read {tool} output: {message}"
        if excerpt:
            text += f"; output began: {excerpt[:300]!r}"
        super().__init__(text)


class CheckTimeout(CheckError):
    """The check or its tool ran past its time limit and was stopped."""

    status = Status.ERROR
    exit_code = EXIT_ERROR


class StorageRefused(CheckError):
    """A storage target is unsafe or unusable (refused write, no space): ERROR."""

    status = Status.ERROR
    exit_code = EXIT_ERROR


class ReportError(BenchAgentError):
    """A report cannot be read (not JSON, wrong schema) or written (disk full)."""

    status = None
    exit_code: ClassVar[int] = EXIT_REPORT


class SignatureError(BenchAgentError):
    """A signed report does not verify: payload, type, signature or key differ."""

    status = None
    exit_code: ClassVar[int] = EXIT_REPORT


class StrictJSONError(BenchAgentError):
    """JSON that attest.loads_strict refuses: not UTF-8 JSON, a duplicate key, NaN or
    Infinity, an oversized integer, nesting too deep, a lone surrogate. Each reader
    turns it into its own refusal (ReportError, SignatureError, HTTP 400/422)."""

    status = None
    exit_code = None


class TransportError(BenchAgentError):
    """No complete HTTP answer: connection refused, reset, timed out, DNS failure,
    an answer cut short or one that is not HTTP (report/upload.py)."""

    status = None
    exit_code = None


class PeerError(BenchAgentError):
    """The peer cannot start (a port taken, no tool at all): peer/server.py."""

    status = None
    exit_code = None


class EnrollmentError(BenchAgentError):
    """A key cannot be enrolled: bad PEM, bad node name, or enrolled for another node.

    ``reason`` is the collector API's reason code: invalid_key, invalid_node,
    key_conflict, key_revoked, node_already_enrolled.
    """

    status = None
    exit_code = None

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class Refused(BenchAgentError):
    """The collector will not store this body: the HTTP status, reason code and a
    human detail (collector/ingest.py, collector/api.py)."""

    status = None
    exit_code = None

    def __init__(self, http_status: int, reason: str, detail: str) -> None:
        super().__init__(f"{http_status} {reason}: {detail}")
        self.http_status = http_status
        self.reason = reason
        self.detail = detail


def verdict_status(exc: BaseException) -> Status:
    """The verdict a check gets for raising ``exc``: its class's status, else ERROR.

    Only a class that declares SKIP makes a SKIP; anything else (an error with no
    status, a foreign exception) is ERROR, so a mistake can never hide a failure.
    """
    if isinstance(exc, BenchAgentError) and exc.status is not None:
        return exc.status
    return Status.ERROR
