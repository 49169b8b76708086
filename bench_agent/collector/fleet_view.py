"""The fleet list for 1,000 to 10,000 nodes: filters, sort, search and pages, in SQL.

Every filter is a condition on the nodes table or an EXISTS over the newest
results (node_results) and their verdicts, each served by an index (db.py; the
plans are asserted in tests/collector/test_collector_fleet_view.py):

    status      the node's status (status.py), computed in SQL from node_results
    state       its lifecycle state                         ix_nodes_state
    fault_code  a current result has a verdict with it      ix_verdicts_fault_code
    check       a current result FAILs or ERRORs in it      ix_verdicts_check_status
    metric      a current result FAILs on it                ix_verdicts_metric_status
    suite       it has a result of the suite                node_results primary key
    gpu_model   its newest inventory's GPU model            ix_nodes_gpu_model
    label       key=value                                   ix_node_labels_key_value
    q           the name contains the text

Only the page's nodes are then read in full (queries.node_dicts). The counts at the
top (by status and by state) are of the whole fleet, not of the filtered page.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, delete, exists, func, insert, select
from sqlalchemy.sql import ColumnElement, Select

from bench_agent.collector import db, lifecycle, queries, status

SORTS = ("name", "status", "state", "last_run", "gpu_model")
DEFAULT_PER_PAGE = 100
MAX_PER_PAGE = 1000


@dataclass(frozen=True, slots=True)
class FleetQuery:
    status: str = ""
    state: str = ""
    fault_code: str = ""
    check: str = ""
    metric: str = ""
    suite: str = ""
    gpu_model: str = ""
    label: str = ""
    q: str = ""
    sort: str = "name"
    order: str = "asc"
    page: int = 1
    per_page: int = DEFAULT_PER_PAGE

    @classmethod
    def from_params(cls, params: dict[str, str]) -> FleetQuery:
        """From a URL's query; ValueError naming the parameter that is wrong."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"unknown parameter {unknown[0]!r}; one of {', '.join(sorted(known))}")
        values: dict[str, Any] = {}
        for name, value in params.items():
            if "\x00" in value or len(value) > db.NAME_LENGTH:
                raise ValueError(f"{name} is not a value this collector stores")
            if name in ("page", "per_page"):
                if not value.isdigit() or not 1 <= int(value) <= (
                        MAX_PER_PAGE if name == "per_page" else 10**6):
                    raise ValueError(f"{name}={value!r:.40} is not a whole number in range "
                                     f"(per_page at most {MAX_PER_PAGE})")
                values[name] = int(value)
            else:
                values[name] = value
        query = cls(**values)
        if query.status and query.status not in status.STATUSES:
            raise ValueError(f"status={query.status!r:.40} is not one of "
                             f"{', '.join(status.STATUSES)}")
        if query.state and query.state not in lifecycle.STATES:
            raise ValueError(f"state={query.state!r:.40} is not one of "
                             f"{', '.join(lifecycle.STATES)}")
        if query.sort not in SORTS:
            raise ValueError(f"sort={query.sort!r:.40} is not one of {', '.join(SORTS)}")
        if query.order not in ("asc", "desc"):
            raise ValueError("order is asc or desc")
        if query.label and "=" not in query.label:
            raise ValueError("label is KEY=VALUE")
        return query

    def params(self, **changes: Any) -> dict[str, str]:
        """The non-default parameters, with ``changes``: for the dashboard's links."""
        merged = {f.name: getattr(self, f.name) for f in fields(self)} | changes
        defaults = FleetQuery()
        return {k: str(v) for k, v in merged.items() if v != getattr(defaults, k)}


def _current_verdict(*conditions: ColumnElement[bool]) -> ColumnElement[bool]:
    """The node has a verdict meeting ``conditions`` in one of its current results.

    An IN over the verdicts found by their index, not a correlated EXISTS per node:
    a fault code is rare, and EXISTS made the page walk every node by name to find
    100 with it (measured: 0.8 s on 10,000 nodes, the uncorrelated form a few ms).
    """
    r, v = db.node_results.c, db.verdicts.c
    matching = (select(r.node_id).select_from(db.verdicts.join(
        db.node_results, r.report_id == v.report_id)).where(*conditions))
    return db.nodes.c.id.in_(matching)


def _filtered(query: FleetQuery, cutoff: datetime) -> tuple[Select[Any], ColumnElement[Any]]:
    """(SELECT nodes.* with the filters, the rank column) without order or paging."""
    n = db.nodes.c
    ranks = status.node_ranks(cutoff)
    rank = ranks.c.rank
    statement: Select[Any] = select(db.nodes, rank).select_from(
        db.nodes.outerjoin(ranks, ranks.c.node_id == n.id))
    if query.status == status.NONE:
        statement = statement.where(rank.is_(None))
    elif query.status:
        statement = statement.where(rank == status.RANKS.index(query.status))
    if query.state:
        statement = statement.where(n.state == query.state)
    if query.gpu_model:
        statement = statement.where(n.gpu_model == query.gpu_model)
    v = db.verdicts.c
    if query.fault_code:
        statement = statement.where(_current_verdict(v.fault_code == query.fault_code))
    if query.check:
        statement = statement.where(_current_verdict(v.check_name == query.check,
                                                     v.status.in_(queries.FAILING)))
    if query.metric:
        statement = statement.where(_current_verdict(v.metric == query.metric,
                                                     v.status.in_(queries.FAILING)))
    if query.suite:
        r = db.node_results.c
        statement = statement.where(exists(select(1).where(
            r.node_id == n.id, r.suite == query.suite)))
    if query.label:
        key, _, value = query.label.partition("=")
        lab = db.node_labels.c
        statement = statement.where(exists(select(1).where(
            lab.node_id == n.id, lab.key == key, lab.value == value)))
    if query.q:
        # Escaped: a name may hold % or _, which LIKE would read as wildcards.
        pattern = query.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        statement = statement.where(n.name.like(f"%{pattern}%", escape="\\"))
    return statement, rank


def _ordered(statement: Select[Any], rank: ColumnElement[Any], query: FleetQuery
             ) -> Select[Any]:
    n = db.nodes.c
    column: Any = {"name": n.name, "state": n.state, "last_run": n.last_finished_at,
                   "gpu_model": n.gpu_model,
                   # Worst first when descending; no report (NULL) counts as the least.
                   "status": func.coalesce(rank, -1)}[query.sort]
    column = column.desc() if query.order == "desc" else column.asc()
    return statement.order_by(column, n.name.asc())


def fleet_page(conn: Connection, query: FleetQuery, now: datetime, validity_s: float
               ) -> dict[str, Any]:
    cutoff = now - timedelta(seconds=validity_s)
    statement, rank = _filtered(query, cutoff)
    total = int(conn.execute(select(func.count()).select_from(statement.subquery()))
                .scalar_one())
    rows = conn.execute(_ordered(statement, rank, query)
                        .limit(query.per_page).offset((query.page - 1) * query.per_page)
                        ).all()
    return {
        "total": total, "page": query.page, "per_page": query.per_page,
        "pages": max(1, -(-total // query.per_page)),
        "counts": {"status": queries.nodes_by_status(conn, now, validity_s),
                   "state": queries.nodes_by_state(conn)},
        "nodes": queries.node_dicts(conn, list(rows), now, validity_s),
    }


def set_labels(database: db.Database, name: str, labels: dict[str, str]) -> bool:
    """Replace the node's labels; False when there is no such node."""
    with database.writing(), database.engine.begin() as conn:
        node_id = conn.execute(select(db.nodes.c.id).where(db.nodes.c.name == name)).scalar()
        if node_id is None:
            return False
        conn.execute(delete(db.node_labels).where(db.node_labels.c.node_id == node_id))
        if labels:
            conn.execute(insert(db.node_labels), [
                {"node_id": node_id, "key": k, "value": v} for k, v in labels.items()])
        return True


def _current_fault_codes() -> Select[Any]:
    """The fault codes of the current results' verdicts.

    fault_code > '' is fault_code != '' (the empty string sorts first in every
    collation) written as a range, which the index (fault_code, report_id) can scan:
    for != '' PostgreSQL read every verdict (600,000 rows in the 10,000-node
    benchmark: 70 ms of the fleet page's 140 ms), for > '' 210 index entries (17 ms).
    """
    v = db.verdicts.c
    current = select(db.node_results.c.report_id).scalar_subquery()
    return (select(v.fault_code).distinct()
            .where(and_(v.fault_code > "", v.report_id.in_(current))).order_by(v.fault_code))


CURRENT_FAULT_CODES = _current_fault_codes()


def choices(conn: Connection) -> dict[str, list[str]]:
    """The values the filters can take, for the dashboard's menus (distinct, indexed)."""
    n, r = db.nodes.c, db.node_results.c
    return {
        "gpu_model": [m for m in conn.execute(select(n.gpu_model).distinct()
                                              .order_by(n.gpu_model)).scalars() if m],
        "suite": list(conn.execute(select(r.suite).distinct().order_by(r.suite)).scalars()),
        "fault_code": list(conn.execute(CURRENT_FAULT_CODES).scalars()),
    }
