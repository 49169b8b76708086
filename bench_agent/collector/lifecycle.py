"""Node lifecycle: the states a node goes through in the fleet, and every move between them.

    new ─(first report)─► burn-in ─(acceptance PASS)─► accepted ─(operator)─► in service
                             ▲                                                   │
                             │ (operator)                         (health FAIL/ERROR)
                          in repair ◄─(operator)── quarantined ◄─────────────────┘
    retired: an operator's last word; reports of a retired node move it nowhere.

A signed report moves a node only on these edges (report_move below): a report is
evidence of what the node did, not of what should happen to it. Any other move
(accepted to in service, quarantined to in repair, back to burn-in after a repair,
retired) is an operator's, authenticated (an operate token, or the database's own
credentials for the CLI), and recorded with who and why. A report older than the
node's newest state change moves nothing: uploads arrive out of order, and a
spool emptied after a repair must not quarantine the node again.

Which suite is "acceptance" and which is "burn-in" is the collector's setting
(settings.Settings.acceptance_suites / burnin_suites), the suite names of
suites/acceptance.yaml and suites/burnin.yaml by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, bindparam, insert, select, update

from bench_agent.collector import db
from bench_agent.core.errors import Refused

NEW, BURN_IN, ACCEPTED, IN_SERVICE = "new", "burn-in", "accepted", "in-service"
QUARANTINED, IN_REPAIR, RETIRED = "quarantined", "in-repair", "retired"
STATES = (NEW, BURN_IN, ACCEPTED, IN_SERVICE, QUARANTINED, IN_REPAIR, RETIRED)
FAILED = ("FAIL", "ERROR")
REPORT_ACTOR = "report"
# An operator's reason is shown on the node page and in the repair bundle; a
# paragraph is plenty, and the bound keeps one request from storing megabytes.
MAX_WHY = 2000


@dataclass(frozen=True, slots=True)
class Move:
    to_state: str
    why: str


def report_move(state: str, suite: str, status: str, *, acceptance: tuple[str, ...],
                burnin: tuple[str, ...]) -> Move | None:
    """Where a report of ``suite`` with ``status`` moves a node in ``state`` (None: nowhere)."""
    if state == NEW:
        return Move(BURN_IN, f"first report (suite {suite}, {status})")
    if state == BURN_IN and suite in acceptance and status == "PASS":
        return Move(ACCEPTED, f"acceptance suite {suite} passed")
    if state in (ACCEPTED, IN_SERVICE) and status in FAILED and suite not in burnin:
        return Move(QUARANTINED, f"suite {suite} {status} while {state}")
    return None


def record(conn: Connection, node_id: int, from_state: str, move: Move, actor: str,
           at: datetime, report_id: int | None = None, as_of: datetime | None = None) -> None:
    """Set the node's state and append the transition, in the caller's transaction.

    ``at`` is when the move is recorded; ``as_of`` the time of the evidence (a
    report's finish time; an operator's move: ``at``): reports that finished
    before it move the node no more (report_moves).
    """
    conn.execute(_SET_STATE, {"b_node_id": node_id, "b_state": move.to_state,
                              "b_changed": as_of or at})
    conn.execute(_INSERT_TRANSITION, {
        "node_id": node_id, "at": at, "from_state": from_state, "to_state": move.to_state,
        "actor": actor[:db.NAME_LENGTH], "why": move.why, "report_id": report_id})


# Built once: building a statement costs more CPU than running it on SQLite (ingest.py).
_SET_STATE = (update(db.nodes).where(db.nodes.c.id == bindparam("b_node_id"))
              .values(state=bindparam("b_state"), state_changed_at=bindparam("b_changed")))
_INSERT_TRANSITION = insert(db.node_transitions)


def report_moves(locked: tuple[str, datetime | None], suite: str, status: str,
                 finished_at: datetime, *, acceptance: tuple[str, ...],
                 burnin: tuple[str, ...]) -> list[tuple[str, Move]]:
    """The (from state, move) edges a stored report takes the node along, in order.

    ``locked`` is the node's (state, state changed at), read with its row locked at
    the start of the ingest transaction (ingest._NODE_ID), so two reports or a report
    and an operator cannot both move from one state. Nothing is written here: ingest
    folds the new state into its one UPDATE of the node row and inserts the
    transitions (transition_rows) in one statement.
    """
    state, changed_at = locked
    if changed_at is not None and finished_at <= changed_at:
        return []
    edges = []
    # A node's first report may be an acceptance PASS: new -> burn-in -> accepted.
    # Each edge is recorded; report_move has no cycle, so this ends within STATES.
    for _ in STATES:
        move = report_move(state, suite, status, acceptance=acceptance, burnin=burnin)
        if move is None:
            break
        edges.append((state, move))
        state = move.to_state
    return edges


def transition_rows(node_id: int, edges: list[tuple[str, Move]], report_id: int,
                    at: datetime) -> list[dict[str, object]]:
    """The node_transitions rows of a report's moves (report_moves), for one INSERT."""
    return [{"node_id": node_id, "at": at, "from_state": from_state,
             "to_state": move.to_state, "actor": REPORT_ACTOR, "why": move.why,
             "report_id": report_id} for from_state, move in edges]


def set_state(database: db.Database, name: str, state: str, why: str, actor: str
              ) -> tuple[str, str]:
    """An operator's move: (from, to). Refused(404 not_found) for an unknown node,
    Refused(422 bad_state) for an unknown state or a missing reason. Setting the state
    a node already has is recorded too (a reason to keep it is worth keeping)."""
    if state not in STATES:
        raise Refused(422, "bad_state", f"unknown state {state!r}; one of {', '.join(STATES)}")
    why = (why or "").strip()
    if not why:
        raise Refused(422, "bad_state", "an operator's state change needs a reason (--why)")
    if len(why) > MAX_WHY:
        raise Refused(422, "bad_state", f"the reason is longer than {MAX_WHY} characters")
    if not actor.strip():
        raise Refused(422, "bad_state", "an operator's state change needs who made it")
    with database.writing(), database.engine.begin() as conn:
        row = conn.execute(select(db.nodes.c.id, db.nodes.c.state)
                           .where(db.nodes.c.name == name)
                           .with_for_update(key_share=True)).first()
        if row is None:
            raise Refused(404, "not_found", f"no node named {name!r}")
        record(conn, row.id, row.state, Move(state, why), actor, db.utcnow())
        return row.state, state


def history(conn: Connection, node_id: int) -> list[dict[str, object]]:
    t = db.node_transitions.c
    rows = conn.execute(select(db.node_transitions).where(t.node_id == node_id)
                        .order_by(t.at, t.id)).all()
    return [{"at": r.at.isoformat() + "Z", "from": r.from_state, "to": r.to_state,
             "actor": r.actor, "why": r.why, "report_id": r.report_id} for r in rows]
