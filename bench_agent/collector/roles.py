"""Who may do what: read, operate and admin tokens.

    read      the API's GET endpoints, the dashboard, /metrics, repair bundles
    operate   read, and change a node's lifecycle state or labels
    admin     operate, and enroll or revoke node keys

Each role includes the ones above it. Tokens come from a file (--tokens-file) or
the environment ($BENCH_AGENT_COLLECTOR_TOKENS), never the command line, where
`ps` shows them to every user. One token a line: ``ROLE NAME TOKEN``; the name is
who the token is (recorded as the actor of a state change); '#' starts a comment.
The older single admin token (--admin-token-file, $BENCH_AGENT_COLLECTOR_TOKEN) is
an admin named "admin".

Reads are open by default (a dashboard on a trusted network); with
``reads_need_token`` every read needs a read token too. POST /v1/reports never
needs one: a report is authenticated by its node's signature. /healthz and the
API's own description (/docs, /v1/openapi.json) stay open: they tell nothing of
the fleet.

A token is sent as ``Authorization: Bearer TOKEN``, or, so that a browser can
open the dashboard when reads need a token, as HTTP Basic with the token as the
password (RFC 7617; the user name is ignored).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from bench_agent.core.errors import ConfigError

READ, OPERATE, ADMIN = "read", "operate", "admin"
ROLES = (READ, OPERATE, ADMIN)
# A token a person cannot guess: 16 characters of a random token are 96 bits or
# more (base64), beyond any online guessing at the request rates of one collector.
MIN_TOKEN_LENGTH = 16


@dataclass(frozen=True, slots=True)
class Token:
    role: str
    name: str
    secret: str = ""

    def allows(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


def parse_tokens(text: str, where: str) -> tuple[Token, ...]:
    """``ROLE NAME TOKEN`` lines (or ';'-separated entries, for one environment variable);
    ConfigError naming the entry that cannot be used."""
    tokens: list[Token] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.replace(";", "\n").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 3:
            raise ConfigError(f"{where} entry {number}: expected ROLE NAME TOKEN, got "
                                 f"{len(parts)} fields")
        role, name, secret = parts
        if role not in ROLES:
            raise ConfigError(f"{where} entry {number}: role {role!r} is not one of "
                                 f"{', '.join(ROLES)}")
        if len(secret) < MIN_TOKEN_LENGTH:
            raise ConfigError(f"{where} entry {number}: the token of {name!r} has fewer "
                                 f"than {MIN_TOKEN_LENGTH} characters")
        if secret in seen:
            raise ConfigError(f"{where} entry {number}: the token of {name!r} is the "
                                 f"token of entry {seen[secret]} too")
        seen[secret] = number
        tokens.append(Token(role, name, secret))
    return tuple(tokens)


def presented(authorization: str | None) -> str | None:
    """The token an Authorization header carries (Bearer, or Basic's password)."""
    scheme, _, value = (authorization or "").partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


def identify(tokens: Iterable[Token], authorization: str | None) -> Token | None:
    """The token presented, compared in constant time with every known one."""
    secret = presented(authorization)
    if secret is None:
        return None
    found = None
    for token in tokens:
        # Every token is compared, so the time taken says nothing of which matched.
        if hmac.compare_digest(secret.encode(), token.secret.encode()):
            found = token
    return found
