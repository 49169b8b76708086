"""A node's status: the worst of its newest result of each suite and profile, in a window.

Each (suite, profile) a node ran keeps its newest report (node_results, kept by
ingest). A node's status is the worst of those results, where

  - a result that finished within the validity window counts as it is;
  - an older PASS, WARN or SKIP counts as STALE: the node passed once, but not
    recently enough to be trusted (the window is Settings.validity_s);
  - an older FAIL or ERROR still counts as it is: a failure does not expire by
    itself, only a newer run of the same suite and profile replaces it.

So a 30 s burn-in PASS, or an ad hoc run of another suite, never hides an
acceptance FAIL: they are other (suite, profile) pairs, and the worst wins.

Order, best first: SKIP (counts only when every result is a SKIP), PASS, STALE,
WARN, FAIL, ERROR. NONE: no report yet.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import case, func, literal, select
from sqlalchemy.sql import ColumnElement, Subquery

from bench_agent.collector import db

STALE, NONE = "STALE", "NONE"
RANKS = ("SKIP", "PASS", STALE, "WARN", "FAIL", "ERROR")
STATUSES = (*RANKS, NONE)
_EXPIRES = ("SKIP", "PASS", "WARN")


def effective(status: str, finished_at: datetime, cutoff: datetime) -> str:
    """What one result counts as at ``cutoff`` (now minus the window)."""
    return STALE if status in _EXPIRES and finished_at < cutoff else status


def worst(statuses: list[str]) -> str:
    if not statuses:
        return NONE
    return max(statuses, key=lambda s: RANKS.index(s) if s in RANKS else len(RANKS))


def rank_expression(cutoff: datetime) -> ColumnElement[int]:
    """effective() in SQL, as the index in RANKS (so that max() is worst())."""
    r = db.node_results.c
    return case(
        (r.status == "ERROR", literal(5)),
        (r.status == "FAIL", literal(4)),
        (r.finished_at < cutoff, literal(2)),
        (r.status == "WARN", literal(3)),
        (r.status == "PASS", literal(1)),
        else_=literal(0),
    )


def node_ranks(cutoff: datetime) -> Subquery:
    """node_id, rank: each node's status as an index in RANKS (nodes without results absent)."""
    r = db.node_results.c
    return (select(r.node_id, func.max(rank_expression(cutoff)).label("rank"))
            .group_by(r.node_id).subquery("node_ranks"))


def results_of(rows: list[Any], cutoff: datetime) -> tuple[str, list[dict[str, Any]]]:
    """(status, results) from node_results rows of one node, each marked stale or not."""
    results = []
    for row in sorted(rows, key=lambda r: (r.suite, r.profile)):
        counted = effective(row.status, row.finished_at, cutoff)
        results.append({"suite": row.suite, "profile": row.profile, "status": row.status,
                        "report_id": row.report_id,
                        "finished_at": row.finished_at.isoformat() + "Z",
                        "stale": row.finished_at < cutoff, "counts_as": counted})
    return worst([r["counts_as"] for r in results]), results
