"""The spool and the uploader: reports reach the collector exactly once, or wait.

The output folder is the spool. ``bench-agent run`` writes every signed report
there first (atomically); ``upload_spool`` then sends each pending report, oldest
first. Layout, per host folder:

    <output>/<host>/<stamp>-<suite>.json      pending (a DSSE envelope)
    <output>/<host>/sent/<same name>          acknowledged by the collector
    <output>/<host>/rejected/<same name>      refused with a 4xx (not 429), and
    <output>/<host>/rejected/<name>.reason    the collector's words

What each answer means for the report (and for the ones after it):

- Delivered (moved to sent/): a 200 (already stored) or 201 (stored) whose body
  is a JSON object naming the report's payload digest, ``{"digest": ...}``, the
  sha256 of the base64-decoded payload that the collector stores it under and
  answers with (bench_agent/collector/api.py post_report). The digest, not the
  collector's ``id``: the id is the collector's row number, which the node cannot
  check against the report; the digest it can compute itself.
- Rejected (moved to rejected/ with the reason): a 4xx other than 401, 404, 408
  and 429: the collector read the report and refused it (bad signature, too
  large, not a report); sending it again would be refused again.
- Waiting (stays in the spool; the upload stops, everything after waits too):
  * no HTTP answer (connection refused, reset, timed out) or an answer cut
    short (headers then a closed connection, a status line that is not HTTP:
    http.client's IncompleteRead, BadStatusLine, RemoteDisconnected), after the
    retries: the report may or may not have been stored, and a resend is safe
    because the digest is the collector's idempotency key (a repeat gets a 200);
  * 408, 429 and 5xx, after the retries (busy or broken);
  * 401 (the node's key is not enrolled yet) and 404 (wrong URL), at once;
  * any redirect (3xx, 307 and 308 included), at once, naming the Location:
    the collector never redirects a POST, so the URL is wrong. It is never
    followed: for 301/302/303 urllib would resend the POST as a GET without the
    report (RFC 9110, section 15.4) and the page at the Location answers 200;
    and a report is not sent to an address nobody configured;
  * any other 2xx, or a 200/201 that does not name this report's digest (a web
    page, a proxy's landing page, another service's JSON), at once: nothing says
    the report was stored, so it is kept to send again once the URL is right,
    rather than rejected (the report is not at fault) or counted as sent.
- Not sendable (stays in the spool, is counted, never sent): a file that is not
  readable JSON ("unreadable") or not a signed envelope ("unsigned"). These
  cannot reach the collector until someone acts, so they count against "all
  delivered".

Exit code (UploadResult.exit_code, the README's): 0 every report delivered and
nothing unsendable left; 1 some refused by the collector; 2 some still waiting,
unreadable or unsigned (2 wins over 1: what waits needs acting on first).

A report is moved to sent/ only after the acknowledgement, with a rename on the
same filesystem; a crash between the two resends it next time, and the
collector answers 200. Nothing is deleted.

The HTTP client is the standard library's, behind one seam (``Transport``), so
the agent needs no web stack to upload.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import http.client
import math
import os
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import IO
from urllib.parse import urljoin, urlsplit

from bench_agent.core.errors import SignatureError, StrictJSONError, TransportError, UsageError
from bench_agent.report.attest import decode_base64, loads_strict

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


Transport = Callable[[str, bytes, float, dict[str, str]], Response]
# The node's raw Ed25519 public key (base64), for a collector in --auto-enroll
# mode; an enrolled collector ignores it (bench_agent/collector/api.py).
PUBLIC_KEY_HEADER = "X-Bench-Agent-Public-Key"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Every 3xx comes back as the answer: a report is never sent on after one."""

    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int,
                         msg: str, headers: http.client.HTTPMessage, newurl: str) -> None:
        # None makes urllib raise HTTPError(code), which urllib_transport returns.
        return None


def urllib_transport(url: str, body: bytes, timeout: float,
                     headers: dict[str, str]) -> Response:
    """POST the envelope as JSON; every HTTP status is an answer, not an exception,
    and a redirect is not followed."""
    request = urllib.request.Request(
        url, data=body, method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "bench-agent", **headers},
    )
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        try:
            with opener.open(request, timeout=timeout) as reply:
                return Response(reply.status, {k.lower(): v for k, v in reply.headers.items()},
                                reply.read().decode("utf-8", "replace"))
        except urllib.error.HTTPError as exc:
            text = exc.read().decode("utf-8", "replace") if exc.fp else ""
            return Response(exc.code, {k.lower(): v for k, v in exc.headers.items()}, text)
    # http.client raises these from getresponse() and read(), outside urllib's own
    # wrapping into URLError; RemoteDisconnected is also an OSError, so it comes first.
    except http.client.HTTPException as exc:
        raise TransportError(f"no complete answer from {url}: {exc!r}") from exc
    except urllib.error.URLError as exc:
        raise TransportError(f"cannot reach {url}: {exc.reason}") from exc
    except OSError as exc:  # reset or timed out while the answer was read
        raise TransportError(f"no complete answer from {url}: {exc!r}") from exc


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


UNSIGNED = "not signed (the collector accepts signed reports only)"


@dataclass
class UploadResult:
    delivered: list[Path] = field(default_factory=list)
    rejected: list[tuple[Path, str]] = field(default_factory=list)
    pending: list[Path] = field(default_factory=list)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)
    unsigned: list[Path] = field(default_factory=list)
    stopped_because: str = ""

    @property
    def skipped(self) -> list[tuple[Path, str]]:
        """Every file left in the spool unsent because it cannot be sent, and why."""
        return self.unreadable + [(path, UNSIGNED) for path in self.unsigned]

    @property
    def exit_code(self) -> int:
        """0 all delivered, 1 some refused by the collector, 2 some still waiting
        (pending, unreadable or unsigned: still in the spool, not delivered)."""
        if self.pending or self.unreadable or self.unsigned:
            return 2
        if self.rejected:
            return 1
        return 0

    def summary(self) -> str:
        """One line of counts, e.g. '2 delivered, 0 rejected, 1 waiting, 1 unreadable'."""
        counts = [f"{len(self.delivered)} delivered", f"{len(self.rejected)} rejected",
                  f"{len(self.pending)} waiting"]
        if self.unreadable:
            counts.append(f"{len(self.unreadable)} unreadable")
        if self.unsigned:
            counts.append(f"{len(self.unsigned)} unsigned")
        text = ", ".join(counts)
        return text + (f" ({self.stopped_because})" if self.stopped_because else "")


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


@dataclass(frozen=True)
class _Sendable:
    body: bytes
    digest: str | None  # None: the payload is not base64; the collector will say so


@dataclass(frozen=True)
class _NotSendable:
    unsigned: bool  # False: not readable JSON
    why: str


def _load(path: Path) -> _Sendable | _NotSendable | None:
    """The envelope's bytes and digest, why it cannot be sent, or None if it is gone."""
    try:
        body = path.read_bytes()
    except FileNotFoundError:
        return None  # moved by hand meanwhile: nothing to send
    except OSError as exc:
        return _NotSendable(False, f"not a readable JSON file: {exc}")
    try:
        # As strictly as the collector reads it (collector/ingest.py): a file it
        # would refuse as malformed JSON stays here, counted, rather than rejected.
        data = loads_strict(body)
    except StrictJSONError as exc:
        return _NotSendable(False, f"not a readable JSON file: {exc}")
    if not isinstance(data, dict) or "payloadType" not in data:
        return _NotSendable(True, UNSIGNED)
    return _Sendable(body, _payload_digest(data.get("payload")))


def _payload_digest(payload: object) -> str | None:
    """sha256 of the base64-decoded payload: what the collector stores the report
    under and names in its acknowledgement (collector/ingest.py, the same strict
    base64)."""
    try:
        return hashlib.sha256(decode_base64(payload, "payload")).hexdigest()
    except SignatureError:
        return None


def _not_acknowledged(response: Response, digest: str | None) -> str | None:
    """None if the answer names the report's digest, else what it says instead."""
    try:
        data = loads_strict(response.body)
    except StrictJSONError:
        kind = response.headers.get("content-type", "no Content-Type")
        return f"the answer is not JSON ({kind}): {_snippet(response.body)}"
    named = data.get("digest") if isinstance(data, dict) else None
    if named is None:
        return f"the answer names no digest: {_snippet(response.body)}"
    if digest is None or named != digest:
        return f"the answer names digest {named}"
    return None


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return (text[:200] + "...") if len(text) > 200 else (text or "(empty)")


def _retry_after(headers: dict[str, str]) -> float | None:
    """Retry-After as seconds or an HTTP date (RFC 9110, section 10.2.3)."""
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        # "nan" and "inf" parse as floats; time.sleep refuses NaN: no usable hint.
        return max(seconds, 0.0) if math.isfinite(seconds) else None
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
        data = loads_strict(response.body)
    except StrictJSONError:
        return response.body.strip()[:500] or f"HTTP {response.status}"
    if isinstance(data, dict):
        parts = [str(data[k]) for k in ("error", "detail") if data.get(k)]
        if parts:
            return ": ".join(parts)
    return response.body.strip()[:500]


def check_collector_url(url: str) -> str:
    """``url`` without its trailing slashes, or UsageError when it is not an http or
    https URL with a host: urllib would refuse it only when the first report is
    sent (and ``http://[::1`` with a bare ValueError), after the retries, with a
    report waiting for an address that can never answer."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - ValueError for a port that is not a number
    except ValueError as exc:
        raise UsageError(f"collector URL {url!r:.200}: {exc}") from None
    if parts.scheme not in ("http", "https") or not host:
        raise UsageError(f"collector URL {url!r:.200} is not an http:// or https:// URL with "
                         "a host; give it as http://HOST:PORT (e.g. http://collector:8080)")
    if any(char.isspace() or not char.isprintable() for char in url):
        raise UsageError(f"collector URL {url!r:.200} contains a space or a control "
                         "character")
    return url.rstrip("/")


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
    collector_url = check_collector_url(collector_url)
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
        report = _load(path)
        if report is None:
            continue
        if isinstance(report, _NotSendable):
            _count_unsendable(result, path, report)
            continue
        outcome = _send_with_retries(url, report.body, transport, backoff, timeout, log, path,
                                     headers)
        if isinstance(outcome, str):
            stop = outcome
        elif 300 <= outcome.status < 400:
            location = outcome.headers.get("location")
            where = urljoin(url, location) if location else "nowhere (no Location)"
            stop = (f"HTTP {outcome.status}: {url} redirects to {where}; a report is never "
                    "sent on after a redirect: give the collector's own URL")
        elif 200 <= outcome.status < 300:
            why = (_not_acknowledged(outcome, report.digest)
                   if outcome.status in DELIVERED_STATUSES else "not an answer the collector gives")
            if why is None:
                result.delivered.append(_move(path, SENT))
                log(f"delivered {path.name} ({outcome.status})")
                continue
            stop = (f"HTTP {outcome.status} from {url} does not acknowledge {path.name} "
                    f"(digest {report.digest}): {why}; not a bench-agent collector?")
        elif 400 <= outcome.status < 500 \
                and outcome.status not in RETRY_STATUSES + WAIT_STATUSES:
            reason = f"HTTP {outcome.status}: {_reason(outcome)}"
            target = _move(path, REJECTED)
            target.with_name(target.name + ".reason").write_text(reason + "\n")
            result.rejected.append((target, reason))
            log(f"rejected {path.name}: {reason}")
            continue
        else:
            stop = f"HTTP {outcome.status}: {_reason(outcome)}"
        # Down, overloaded, broken or the wrong URL: stop here, everything left waits.
        result.stopped_because = stop
        result.pending.append(path)
        for later in queue[index + 1:]:
            left = _load(later)
            if isinstance(left, _Sendable):
                result.pending.append(later)
            elif isinstance(left, _NotSendable):
                _count_unsendable(result, later, left)
        log(f"stopping: {stop}; {len(result.pending)} report(s) wait")
        break
    return result


def _count_unsendable(result: UploadResult, path: Path, problem: _NotSendable) -> None:
    if problem.unsigned:
        result.unsigned.append(path)
    else:
        result.unreadable.append((path, problem.why))


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
