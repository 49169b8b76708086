"""The spool and the uploader: reports reach the collector exactly once, or wait.

The output folder is the spool. ``bench-agent run`` writes every signed report
there first (atomically); ``upload_spool`` then sends each pending report, oldest
first, and only a 200 (already stored) or 201 (stored) from the collector counts
as delivered. Layout, per host folder:

    <output>/<host>/<stamp>-<suite>.json      pending (a DSSE envelope)
    <output>/<host>/sent/<same name>          acknowledged by the collector
    <output>/<host>/rejected/<same name>      refused with a 4xx (not 429), and
    <output>/<host>/rejected/<name>.reason    the collector's words

A report is moved to sent/ only after the acknowledgement, with a rename on the
same filesystem; a crash between the two resends it next time, and the
collector answers 200 (the payload digest is its idempotency key). Nothing is
deleted. A collector that is down or overloaded (connection error, 5xx, 429),
or that does not know the node's key yet (401) or the URL (404), leaves every
remaining report pending for the next upload.

The HTTP client is the standard library's, behind one seam (``Transport``), so
the agent needs no web stack to upload.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path

SENT = "sent"
REJECTED = "rejected"
DELIVERED_STATUSES = (200, 201)
# Retryable: the collector is busy or broken, the report is not at fault.
RETRY_STATUSES = (408, 429, 500, 502, 503, 504)
# Not the report's fault and not transient: the node's key is not enrolled yet
# (401) or the URL is wrong (404). Retrying now is pointless, giving up on the
# report would lose it: stop, and leave everything waiting for the next upload.
WAIT_STATUSES = (401, 404)
NOT_HOSTS = ("schema", "examples")


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: str


class TransportError(Exception):
    """No HTTP answer at all: connection refused, reset, timed out, DNS failure."""


Transport = Callable[[str, bytes, float, dict[str, str]], Response]
# The node's raw Ed25519 public key (base64), for a collector in --auto-enroll
# mode; an enrolled collector ignores it (bench_agent/collector/api.py).
PUBLIC_KEY_HEADER = "X-Bench-Agent-Public-Key"


def urllib_transport(url: str, body: bytes, timeout: float,
                     headers: dict[str, str]) -> Response:
    """POST the envelope as JSON; every HTTP status is an answer, not an exception."""
    request = urllib.request.Request(
        url, data=body, method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "bench-agent", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return Response(reply.status, {k.lower(): v for k, v in reply.headers.items()},
                            reply.read().decode("utf-8", "replace"))
    except urllib.error.HTTPError as exc:
        text = exc.read().decode("utf-8", "replace") if exc.fp else ""
        return Response(exc.code, {k.lower(): v for k, v in exc.headers.items()}, text)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TransportError(f"cannot reach {url}: {reason}") from exc


@dataclass
class Backoff:
    """Exponential backoff with full jitter (AWS Architecture Blog, "Exponential
    Backoff And Jitter", 2015), capped; Retry-After from the server wins."""

    base: float = 0.5
    cap: float = 30.0
    attempts: int = 6
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.cap * 4)
        return self.rng.uniform(0, min(self.cap, self.base * 2**attempt))


@dataclass
class UploadResult:
    delivered: list[Path] = field(default_factory=list)
    rejected: list[tuple[Path, str]] = field(default_factory=list)
    pending: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    stopped_because: str = ""

    @property
    def exit_code(self) -> int:
        """0 all delivered, 1 some refused by the collector, 2 some still waiting."""
        if self.pending:
            return 2
        if self.rejected:
            return 1
        return 0


def pending_reports(spool: Path) -> list[Path]:
    """Signed reports waiting in <spool>/<host>/, oldest first (by their UTC stamp)."""
    found: list[tuple[str, float, str, Path]] = []
    for path in spool.glob("*/*.json"):
        # results/schema and results/examples ship with the repository: not reports.
        if path.parent.name in NOT_HOSTS or path.name.startswith("."):
            continue
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            continue  # moved away while we looked: not ours to send
        if path.is_file():
            # Names start with the run's UTC timestamp (runner.report_path); mtime
            # breaks ties.
            found.append((path.name.split("-", 1)[0], mtime, str(path), path))
    return [entry[3] for entry in sorted(found)]


def _why_not_sendable(path: Path) -> str | None:
    """None if the file is a DSSE envelope we can send, else why it is skipped."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"not a readable JSON file: {exc}"
    if not isinstance(data, dict) or "payloadType" not in data:
        return "not signed (the collector accepts signed reports only)"
    return None


def _retry_after(headers: dict[str, str]) -> float | None:
    """Retry-After as seconds or an HTTP date (RFC 9110, section 10.2.3)."""
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _move(path: Path, folder: str) -> Path:
    target_dir = path.parent / folder
    target_dir.mkdir(exist_ok=True)
    target = target_dir / path.name
    os.replace(path, target)
    return target


def _reason(response: Response) -> str:
    try:
        data = json.loads(response.body)
    except json.JSONDecodeError:
        return response.body.strip()[:500] or f"HTTP {response.status}"
    if isinstance(data, dict):
        parts = [str(data[k]) for k in ("error", "detail") if data.get(k)]
        if parts:
            return ": ".join(parts)
    return response.body.strip()[:500]


def upload_spool(
    spool: Path,
    collector_url: str,
    *,
    transport: Transport = urllib_transport,
    backoff: Backoff | None = None,
    timeout: float = 30.0,
    log: Callable[[str], None] = lambda message: None,
    public_key: bytes | None = None,
) -> UploadResult:
    """Send every pending report; see the module docstring for what happens to each.

    One upload at a time per spool (a timer and `run --upload` may overlap): an
    exclusive lock on ``<spool>/.upload.lock`` makes the second wait its turn.
    """
    spool.mkdir(parents=True, exist_ok=True)
    with open(spool / ".upload.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _upload_locked(spool, collector_url, transport, backoff, timeout, log,
                              public_key)


def _upload_locked(
    spool: Path,
    collector_url: str,
    transport: Transport,
    backoff: Backoff | None,
    timeout: float,
    log: Callable[[str], None],
    public_key: bytes | None,
) -> UploadResult:
    backoff = backoff or Backoff()
    headers = ({PUBLIC_KEY_HEADER: base64.b64encode(public_key).decode()}
               if public_key else {})
    url = collector_url.rstrip("/") + "/v1/reports"
    result = UploadResult()
    queue = pending_reports(spool)
    for index, path in enumerate(queue):
        why_not = _why_not_sendable(path)
        if why_not is not None:
            result.skipped.append((path, why_not))
            continue
        try:
            body = path.read_bytes()
        except FileNotFoundError:
            continue  # moved by hand meanwhile: nothing to send
        outcome = _send_with_retries(url, body, transport, backoff, timeout, log, path,
                                     headers)
        if isinstance(outcome, Response) and outcome.status in DELIVERED_STATUSES:
            result.delivered.append(_move(path, SENT))
            log(f"delivered {path.name} ({outcome.status})")
        elif isinstance(outcome, Response) and 400 <= outcome.status < 500 \
                and outcome.status not in RETRY_STATUSES + WAIT_STATUSES:
            reason = f"HTTP {outcome.status}: {_reason(outcome)}"
            target = _move(path, REJECTED)
            target.with_name(target.name + ".reason").write_text(reason + "\n")
            result.rejected.append((target, reason))
            log(f"rejected {path.name}: {reason}")
        else:
            # Down, overloaded or broken: stop here, everything left waits.
            result.stopped_because = (outcome if isinstance(outcome, str)
                                      else f"HTTP {outcome.status}: {_reason(outcome)}")
            result.pending = [p for p in queue[index:] if p.exists()
                              and _why_not_sendable(p) is None]
            log(f"stopping: {result.stopped_because}; {len(result.pending)} report(s) wait")
            break
    return result


def _send_with_retries(
    url: str,
    body: bytes,
    transport: Transport,
    backoff: Backoff,
    timeout: float,
    log: Callable[[str], None],
    path: Path,
    headers: dict[str, str],
) -> Response | str:
    """The final answer for one report, or the transport error text after retries."""
    last: Response | str = "no attempt made"
    for attempt in range(backoff.attempts):
        try:
            response = transport(url, body, timeout, headers)
        except TransportError as exc:
            last, retry_after = str(exc), None
        else:
            if response.status not in RETRY_STATUSES or response.status in WAIT_STATUSES:
                return response
            last, retry_after = response, _retry_after(response.headers)
        if attempt + 1 < backoff.attempts:
            wait = backoff.delay(attempt, retry_after)
            what = last if isinstance(last, str) else f"HTTP {last.status}"
            log(f"{path.name}: {what}; retrying in {wait:.1f} s")
            backoff.sleep(wait)
    return last
