"""The classifier's SQL: event store, per-customer state, outbox rows."""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import Decimal

import asyncpg
import orjson

from shared.cpm import Figures, Purchase, Rules
from shared.events import CUSTOMER_STATES, SEGMENT_CHANGES
from shared.outbox import write_outbox
from shared.timeline import Border, Borders

from .domain import Change, ScopeState
from .fold import Fold

# The fast path's fold (fold.py), on a customer's "all" row (migration 016).
FOLD_COLUMNS = "fold_spend, fold_orders, fold_last_on, fold_void_on"

# The tables the classifier grows and reads by customer (shared.pgstats keeps their statistics).
GROWN_TABLES = ("purchases", "customer_states")

STATE_COLUMNS = (
    "scope, customer_id, seq, segment, purchase_count, total_amount, first_purchase_on,"
    " last_purchase_on, home_branch_id, clock_on, lapse_due_on, rules_version"
)


async def _stage(conn: asyncpg.Connection, table: str, ddl: str, rows: list[tuple]) -> None:
    """Rows into a per-connection temporary table (emptied at commit) by binary COPY: about a
    third of the time of passing them as ``unnest`` arrays, on both sides of the connection."""
    # Emptied at commit, but one transaction stages once per tenant of a batch: without the
    # DELETE a second tenant's upsert would also write the first tenant's rows under its own id.
    # Both statements in one round trip (this runs twice for every batch).
    await conn.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {table} ({ddl}) ON COMMIT DELETE ROWS;"
        f" DELETE FROM {table}"
    )
    await conn.copy_records_to_table(table, records=rows)


async def insert_purchases(conn: asyncpg.Connection, rows: list[tuple]) -> set[tuple[str, str]]:
    """Insert events once by (tenant, event_id); returns the keys that were new."""
    if not rows:
        return set()
    await _stage(
        conn,
        "purchases_in",
        "tenant_id text, event_id text, branch_id text, customer_id text, kind text,"
        " occurred_at timestamptz, occurred_on date, amount numeric, order_id text, payload jsonb",
        rows,
    )
    inserted = await conn.fetch(
        "INSERT INTO purchases (tenant_id, event_id, branch_id, customer_id, kind, occurred_at,"
        " occurred_on, amount, order_id, payload)"
        " SELECT * FROM purchases_in"
        " ON CONFLICT (tenant_id, event_id) DO NOTHING RETURNING tenant_id, event_id",
    )
    return {(r["tenant_id"], r["event_id"]) for r in inserted}


async def load_purchases(
    conn: asyncpg.Connection, tenant_id: str, customers: list[str]
) -> dict[str, list[Purchase]]:
    rows = await conn.fetch(
        "SELECT customer_id, event_id, kind, branch_id, occurred_on, amount, order_id FROM purchases"
        " WHERE tenant_id = $1 AND customer_id = ANY($2::text[])",
        tenant_id,
        customers,
    )
    out: dict[str, list[Purchase]] = defaultdict(list)
    for customer_id, *fields in rows:  # columns in Purchase's field order
        out[customer_id].append(Purchase(*fields))
    return out


def _state(r) -> ScopeState:
    figures = None
    if r["purchase_count"] > 0:
        figures = Figures(
            r["purchase_count"],
            r["total_amount"],
            r["first_purchase_on"],
            r["last_purchase_on"],
            r["home_branch_id"],
        )
    return ScopeState(
        r["seq"], r["segment"], figures, r["clock_on"], r["lapse_due_on"], r["rules_version"]
    )


async def lock_states(
    conn: asyncpg.Connection, tenant_id: str, customers: list[str]
) -> dict[str, dict[str, ScopeState]]:
    """Read and lock the states of these customers (row locks, in key order: no deadlocks), by
    customer and scope.

    The lapse sweep skips locked rows; a batch waits for a sweep that holds a row and then
    reads its result. (Reading without locks and checking the seq at write time was tried: no
    cheaper in PostgreSQL here, and a sweep running beside a history load made whole batches
    retry.)"""
    rows = await conn.fetch(
        f"SELECT {STATE_COLUMNS} FROM customer_states WHERE tenant_id = $1"
        " AND customer_id = ANY($2::text[]) ORDER BY customer_id, scope FOR UPDATE",
        tenant_id,
        sorted(customers),
    )
    states: dict[str, dict[str, ScopeState]] = defaultdict(dict)
    for r in rows:
        states[r["customer_id"]][r["scope"]] = _state(r)
    return states


async def due_states(conn: asyncpg.Connection, tenant_id: str, today: date, limit: int):
    rows = await conn.fetch(
        f"SELECT {STATE_COLUMNS} FROM customer_states WHERE tenant_id = $1 AND lapse_due_on <= $2"
        " ORDER BY lapse_due_on LIMIT $3 FOR UPDATE SKIP LOCKED",
        tenant_id,
        today,
        limit,
    )
    return [(r["customer_id"], r["scope"], _state(r)) for r in rows]


async def states_before_rules(conn: asyncpg.Connection, tenant_id: str, version: int, limit: int):
    rows = await conn.fetch(
        f"SELECT {STATE_COLUMNS} FROM customer_states WHERE tenant_id = $1 AND rules_version < $2"
        " LIMIT $3 FOR UPDATE SKIP LOCKED",
        tenant_id,
        version,
        limit,
    )
    return [(r["customer_id"], r["scope"], _state(r)) for r in rows]


async def read_folds(
    conn: asyncpg.Connection, tenant_id: str, customers: list[str]
) -> dict[str, Fold]:
    """The fast path's folds of these customers (those that have one), kept on their "all"
    rows (locked by :func:`lock_states` in the same transaction)."""
    rows = await conn.fetch(
        "SELECT customer_id, fold_spend::text AS spend, fold_orders, fold_last_on, fold_void_on"
        " FROM customer_states WHERE tenant_id = $1 AND customer_id = ANY($2::text[])"
        " AND scope = 'all' AND fold_orders IS NOT NULL",
        tenant_id,
        customers,
    )
    return {
        r["customer_id"]: Fold(
            {b: Decimal(v) for b, v in orjson.loads(r["spend"]).items()},
            r["fold_orders"],
            r["fold_last_on"],
            r["fold_void_on"],
        )
        for r in rows
    }


def _fold_columns(fold: Fold | None) -> tuple:
    if fold is None:
        return None, None, None, None
    spend = orjson.dumps({b: str(v) for b, v in fold.spend.items()}).decode()
    return spend, fold.orders, fold.last_on, fold.void_on


async def save_states(
    conn: asyncpg.Connection,
    tenant_id: str,
    states: dict[tuple[str, str], ScopeState],
    folds: dict[str, Fold] | None = None,
) -> None:
    """Upsert the states of locked customers, with the fast path's fold of a customer (in
    ``folds``) on their "all" row; a row given no fold keeps the one it has."""
    if not states:
        return
    folds = folds or {}
    rows = []
    for (customer, scope), s in states.items():
        f = s.figures
        rows.append(
            (
                scope,
                customer,
                s.seq,
                s.segment,
                f.purchase_count if f else 0,
                f.total_amount if f else Decimal(0),
                f.first_purchase_on if f else None,
                f.last_purchase_on if f else None,
                f.home_branch_id if f else None,
                s.clock_on,
                s.lapse_due_on,
                s.rules_version,
                *_fold_columns(folds.get(customer) if scope == "all" else None),
            )
        )
    await _stage(
        conn,
        "states_in",
        "scope text, customer_id text, seq bigint, segment text, purchase_count int,"
        " total_amount numeric, first_purchase_on date, last_purchase_on date,"
        " home_branch_id text, clock_on date, lapse_due_on date, rules_version int,"
        " fold_spend jsonb, fold_orders bytea, fold_last_on date, fold_void_on date",
        rows,
    )
    await conn.execute(
        f"INSERT INTO customer_states (tenant_id, {STATE_COLUMNS}, {FOLD_COLUMNS})"
        " SELECT $1, * FROM states_in"
        " ON CONFLICT (tenant_id, customer_id, scope) DO UPDATE SET seq = EXCLUDED.seq,"
        " segment = EXCLUDED.segment, purchase_count = EXCLUDED.purchase_count,"
        " total_amount = EXCLUDED.total_amount, first_purchase_on = EXCLUDED.first_purchase_on,"
        " last_purchase_on = EXCLUDED.last_purchase_on, home_branch_id = EXCLUDED.home_branch_id,"
        " clock_on = EXCLUDED.clock_on, lapse_due_on = EXCLUDED.lapse_due_on,"
        " rules_version = EXCLUDED.rules_version, updated_at = now(),"
        + ", ".join(
            f" {c} = coalesce(EXCLUDED.{c}, customer_states.{c})" for c in FOLD_COLUMNS.split(", ")
        ),
        tenant_id,
    )


async def queue_outbox(conn: asyncpg.Connection, rows: list) -> None:
    """The batch's records into the outbox, in the caller's transaction."""
    await write_outbox(conn, rows)


# The relay: one active at a time (an advisory lock), so several instances keep per-key order.
RELAY_LOCK = 0x4B5A52454C4159  # "KZRELAY"


async def try_relay_lock(conn: asyncpg.Connection) -> bool:
    return await conn.fetchval("SELECT pg_try_advisory_lock($1)", RELAY_LOCK)


async def release_relay_lock(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1)", RELAY_LOCK)


async def outbox_heads(pool: asyncpg.Pool) -> list:
    """The oldest outbox rows still to send: ids and record counts (rows kept after sending
    for broker replay, shared/replay.py, are not in the partial index this walks)."""
    return await pool.fetch(
        "SELECT id, record_count FROM outbox WHERE sent_to IS NULL ORDER BY id LIMIT 1000"
    )


async def outbox_packs(pool: asyncpg.Pool, ids: list[int]) -> list:
    return await pool.fetch(
        "SELECT records FROM outbox WHERE id = ANY($1::bigint[]) ORDER BY id", ids
    )


async def delete_outbox(pool: asyncpg.Pool, ids: list[int]) -> None:
    await pool.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", ids)


async def outbox_waiting(pool: asyncpg.Pool) -> tuple[int, float]:
    """Records not yet published, and the age in seconds of the oldest (0 when none)."""
    row = await pool.fetchrow(
        "SELECT coalesce(sum(record_count), 0) AS records,"
        " coalesce(extract(epoch FROM now() - min(created_at)), 0) AS age FROM outbox"
        " WHERE sent_to IS NULL"  # rows kept after sending (broker replay) are not waiting
    )
    return row["records"], float(row["age"])


async def outbox_backlog(pool: asyncpg.Pool) -> int:
    """Records still to send."""
    return await pool.fetchval(
        "SELECT coalesce(sum(record_count), 0) FROM outbox WHERE sent_to IS NULL"
    )


async def load_borders(conn: asyncpg.Connection, tenant_id: str) -> Borders:
    """The tenant's borders that have taken effect, each from its day."""
    rows = await conn.fetch(
        "SELECT version, rules::text AS rules, effective_on FROM tenant_rules"
        " WHERE tenant_id = $1 AND effective_on IS NOT NULL",
        tenant_id,
    )
    return Borders(
        Border(r["effective_on"], r["version"], Rules.model_validate_json(r["rules"])) for r in rows
    )


async def date_new_rules(conn: asyncpg.Connection, tenant_id: str, today: date) -> None:
    """New borders take effect today; for a tenant with nobody classified, from the beginning."""
    await conn.execute(
        "UPDATE tenant_rules SET effective_on = CASE WHEN EXISTS"
        " (SELECT 1 FROM customer_states WHERE tenant_id = $1) THEN $2::date ELSE $3::date END"
        " WHERE tenant_id = $1 AND effective_on IS NULL",
        tenant_id,
        today,
        date.min,
    )


async def tenant_ids(conn: asyncpg.Connection) -> list[str]:
    return [
        r["tenant_id"] for r in await conn.fetch("SELECT tenant_id FROM tenants ORDER BY tenant_id")
    ]


async def tenants_with_new_rules(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch(
        "SELECT tenant_id FROM tenants WHERE applied_rules_version < rules_version"
    )
    return [r["tenant_id"] for r in rows]


async def mark_rules_applied(conn: asyncpg.Connection, tenant_id: str, version: int) -> None:
    await conn.execute(
        "UPDATE tenants SET applied_rules_version = $2 WHERE tenant_id = $1"
        " AND applied_rules_version < $2",
        tenant_id,
        version,
    )


def _figure_fields(f: Figures | None, as_of: date) -> dict:
    if f is None:
        return _NO_FIGURES
    return {
        "purchase_count": f.purchase_count,
        "total_amount": str(f.total_amount),
        "first_purchase_on": f.first_purchase_on,
        "last_purchase_on": f.last_purchase_on,
        "tenure_days": (f.last_purchase_on - f.first_purchase_on).days,
        "lapse_days": max(0, (as_of - f.last_purchase_on).days),
    }


_NO_FIGURES = {
    "purchase_count": 0,
    "total_amount": "0",
    "first_purchase_on": None,
    "last_purchase_on": None,
    "tenure_days": None,
    "lapse_days": None,
}


def outbox_rows(tenant_id: str, customer_id: str, change: Change) -> list[tuple[str, str, bytes]]:
    """The customer-state (always) and segment-change (when the segment moved) of a change.

    Serialised from plain dicts: this is the hot path, and building two pydantic models per
    change cost more than the rest of the classification. The customer-state is the
    segment-change's JSON with ``before`` added, spliced in rather than serialised twice.
    tests/unit checks that every payload is exactly what ``CustomerState`` / ``SegmentChange``
    would have written.
    """
    key = f"{tenant_id}:{customer_id}"
    figures = change.figures
    common = orjson.dumps(
        {
            "schema_version": 2,
            "tenant_id": tenant_id,
            "scope": change.scope,
            "customer_id": customer_id,
            "seq": change.seq,
            "from_segment": change.before_segment,
            "to_segment": change.segment,
            "effective_on": change.effective_on,
            "cause": change.cause,
            **_figure_fields(figures, change.effective_on),
            "home_branch_id": figures.home_branch_id if figures else None,
            "rules_version": change.rules_version,
            "corrects_from": change.corrects_from,
            "supersedes_seq": None,
        }
    )
    before = None
    if change.before is not None or change.before_segment is not None:
        before = {
            "segment": change.before_segment,
            **_figure_fields(change.before, change.effective_on),
        }
    rows = [(CUSTOMER_STATES, key, b'%s,"before":%s}' % (common[:-1], orjson.dumps(before)))]
    if change.segment_changed:
        rows.append((SEGMENT_CHANGES, key, common))
    return rows
