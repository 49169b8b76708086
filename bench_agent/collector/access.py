"""The role check of every endpoint, as a FastAPI dependency (roles.py says who is who).

    Depends(need(READ))     open unless settings.reads_need_token
    Depends(need(OPERATE))  an operate or admin token
    Depends(need(ADMIN))    an admin token

A request without the role gets 401 (no or an unknown token; WWW-Authenticate
names Bearer, and Basic for the dashboard's pages so a browser asks for it) or 403
(a known token of a lesser role; or no token of the role is configured at all).
Each refusal is logged with the path, never with the token.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated

from fastapi import Header, Request

from bench_agent.collector.roles import ADMIN, READ, Token, identify
from bench_agent.collector.settings import Settings
from bench_agent.core.errors import Refused

log = logging.getLogger("bench_agent.collector")
ANONYMOUS = Token(READ, "anonymous")


def challenge(request: Request) -> dict[str, str]:
    """The WWW-Authenticate of a 401 (RFC 9110 11.6.1): Basic for the dashboard's pages,
    so that a browser asks for the token, Bearer for the API."""
    page = not request.url.path.startswith("/v1/")
    return {"WWW-Authenticate": 'Basic realm="bench-agent collector"' if page else "Bearer"}


def need(role: str) -> Callable[..., Token]:
    """A dependency that returns who is asking, or raises Refused (api.denied answers it)."""

    def check(request: Request,
              authorization: Annotated[str | None, Header()] = None) -> Token:
        settings: Settings = request.app.state.settings
        tokens = settings.all_tokens
        if role == READ and not settings.reads_need_token and not authorization:
            return ANONYMOUS
        if not any(t.allows(role) for t in tokens):
            hint = "--admin-token-file or an admin line in --tokens-file" if role == ADMIN \
                else "--tokens-file or $BENCH_AGENT_COLLECTOR_TOKENS"
            raise Refused(403, f"{role}_disabled", f"the collector was started without a "
                         f"{role} token ({hint})")
        token = identify(tokens, authorization)
        if token is None:
            log.warning("refused %s %s: 401 unauthorized", request.method, request.url.path)
            raise Refused(401, "unauthorized", f"this needs Authorization: Bearer <{role} "
                          "token>")
        if not token.allows(role):
            log.warning("refused %s %s: 403 forbidden for %s token %r", request.method,
                        request.url.path, token.role, token.name)
            raise Refused(403, "forbidden", f"token {token.name!r} has the {token.role} role; "
                         f"this needs {role}")
        return token

    return check
