"""The consumer's SQL: one read and one write per batch (rows, timelines, aggregates, moves)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from datetime import date
from operator import attrgetter

import asyncpg

from ..domain.portfolio import CustomerRow, Entry, Sums

Key = tuple[str, str, str]  # tenant, scope, customer
# Columns in the order of the dataclasses' fields: a result row builds one by position, and one
# ``attrgetter`` call gives a dataclass's values for writing.
ROW_FIELDS = tuple(f.name for f in fields(CustomerRow))
ENTRY_FIELDS = tuple(f.name for f in fields(Entry))


_TYPES = {
    "seq": "bigint",
    "segment": "text",
    "purchase_count": "int",
    "total_amount": "numeric",
    "first_purchase_on": "date",
    "last_purchase_on": "date",
    "home_branch_id": "text",
    "effective_on": "date",
    "prev_segment": "text",
    "prev_total_amount": "numeric",
    "prev_effective_on": "date",
}


ROW_TYPES = tuple(_TYPES[f] for f in ROW_FIELDS)
ENTRY_TYPES = tuple(_TYPES[f] for f in ENTRY_FIELDS)
ROW_COLUMNS = ", ".join(ROW_FIELDS)
ENTRY_COLUMNS = ", ".join(ENTRY_FIELDS)
KEY_TYPES = ("text", "text", "text")
_row_values = attrgetter(*ROW_FIELDS)
_entry_values = attrgetter(*ENTRY_FIELDS)
_by_seq = attrgetter("seq")


def _timeline_since(key: str, since: str, columns: str) -> str:
    """The timeline entries of the customer ``key`` (an alias with tenant_id, scope, customer_id)
    effective on or after ``since``, plus the one in force before it (the latest before that day:
    timelines are in date order): two ranges of the primary key."""
    match = (
        f"t.tenant_id = {key}.tenant_id AND t.scope = {key}.scope"
        f" AND t.customer_id = {key}.customer_id"
    )
    return (
        f"(SELECT {columns} FROM report_timeline t WHERE {match} AND t.effective_on >= {since}"
        " ORDER BY t.effective_on, t.seq)"
        f" UNION ALL (SELECT {columns} FROM report_timeline t WHERE {match}"
        f" AND t.effective_on < {since} ORDER BY t.effective_on DESC, t.seq DESC LIMIT 1)"
    )


async def lock_customers(
    conn: asyncpg.Connection, since: Mapping[Key, date]
) -> tuple[dict[Key, CustomerRow], dict[Key, list[Entry]]]:
    """Read and lock the stored rows of these customers, in key order (no deadlocks between
    instances during a rebalance), and read their timelines from their ``since`` day
    (``load_timelines``) in the same round trip. Customers without a row are left out of both.

    Each row is one primary-key lookup: a locking ``LATERAL`` subquery is never flattened into a
    join, so no plan can scan the table instead. The timeline ranges need planner statistics
    (``shared.pgstats``): without them PostgreSQL rated ``report_timeline_day`` as good as the
    primary key and walked all of a scope's entries of the day, per customer."""
    if not since:
        return {}, {}
    keys = sorted(since)
    tenants, scopes, customers = (list(c) for c in zip(*keys, strict=True))
    rows = await conn.fetch(
        "SELECT k.tenant_id, k.scope, k.customer_id,"
        + ", ".join(f" r.{f} AS r_{f}" for f in ROW_FIELDS)
        + ","
        + ", ".join(f" e.{f} AS e_{f}" for f in ENTRY_FIELDS)
        + " FROM unnest($1::text[], $2::text[], $3::text[], $4::date[])"
        " AS k(tenant_id, scope, customer_id, since)"
        " CROSS JOIN LATERAL (SELECT * FROM report_customers c WHERE c.tenant_id = k.tenant_id"
        " AND c.scope = k.scope AND c.customer_id = k.customer_id FOR UPDATE) r"
        f" LEFT JOIN LATERAL ({_timeline_since('k', 'k.since', ENTRY_COLUMNS)}) e ON true",
        tenants,
        scopes,
        customers,
        [since[k] for k in keys],
    )
    stored: dict[Key, CustomerRow] = {}
    timelines: dict[Key, list[Entry]] = {}
    entry_at = 3 + len(ROW_FIELDS)  # the key, the row's fields, then the entry's
    for r in rows:
        key = r[0:3]
        if key not in stored:
            stored[key], timelines[key] = CustomerRow(*r[3:entry_at]), []
        if r[entry_at] is not None:
            timelines[key].append(Entry(*r[entry_at:]))
    for entries in timelines.values():
        entries.sort(key=_by_seq)
    return stored, timelines


async def load_timelines(conn: asyncpg.Connection, since: Mapping[Key, date]) -> dict[Key, list]:
    """Per customer, the timeline entries effective on or after their ``since`` day, plus the one
    in force before it, in seq order. The customers' rows are locked by ``lock_customers``, so
    nobody else changes these timelines meanwhile."""
    if not since:
        return {}
    keys = sorted(since)
    tenants, scopes, customers = (list(c) for c in zip(*keys, strict=True))
    rows = await conn.fetch(
        "SELECT k.tenant_id, k.scope, k.customer_id, e.* FROM unnest($1::text[], $2::text[],"
        " $3::text[], $4::date[]) AS k(tenant_id, scope, customer_id, since)"
        f" CROSS JOIN LATERAL ({_timeline_since('k', 'k.since', ENTRY_COLUMNS)}) e",
        tenants,
        scopes,
        customers,
        [since[k] for k in keys],
    )
    out: dict[Key, list] = {k: [] for k in keys}
    for r in rows:
        out[r[0:3]].append(Entry(*r[3:]))
    for entries in out.values():
        entries.sort(key=_by_seq)
    return out


async def remove_entries(conn: asyncpg.Connection, gone: list[tuple[Key, Entry]]) -> None:
    """Delete the stored entries a correction withdrew, each by its whole key: as many as the
    corrected customers have entries from the correction's day on, never a scan (a join with
    the batch's keys would have the planner scan the table)."""
    if gone:
        await conn.executemany(
            "DELETE FROM report_timeline WHERE tenant_id = $1 AND scope = $2"
            " AND customer_id = $3 AND effective_on = $4 AND seq = $5",
            [
                (*key, e.effective_on, e.seq)
                for key, e in sorted(gone, key=lambda g: (g[0], g[1].seq))
            ],
        )


class _Params:
    """Positional parameters of one statement, each a column array for ``unnest``."""

    def __init__(self) -> None:
        self.values: list[list] = []

    def unnest(self, rows: list[tuple], types: tuple[str, ...]) -> str:
        columns = [list(c) for c in zip(*rows, strict=True)] or [[] for _ in types]
        first = len(self.values) + 1
        self.values += columns
        return "unnest(" + ", ".join(f"${first + i}::{t}[]" for i, t in enumerate(types)) + ")"


def _row_tuples(rows: Mapping[Key, CustomerRow]) -> list[tuple]:
    return [(*key, *_row_values(r)) for key, r in sorted(rows.items())]


_ADD = "SET customers = t.customers + EXCLUDED.customers, sales = t.sales + EXCLUDED.sales"


async def write_batch(
    conn: asyncpg.Connection,
    *,
    new_rows: Mapping[Key, CustomerRow],
    changed_rows: Mapping[Key, CustomerRow],
    sums: Sums,
    entries: list[tuple[Key, Entry]],
    moves: Mapping[tuple, list],
) -> None:
    """Everything a batch writes, as one statement of data-modifying ``WITH`` parts: customers
    seen for the first time, the changed rows locked by ``lock_customers``, the daily, monthly and
    current portfolio deltas, the new timeline entries and the monthly moves
    ((tenant, scope, span, month, from, to) → [customers, sales, buyers]).

    One statement instead of eight: on two shared cores every round trip waits for the CPU twice
    (here and in PostgreSQL), and those waits were most of a batch's time under the latency feed.

    New customers are inserted without ON CONFLICT on purpose: if another instance inserted the
    same customer meanwhile (a rebalance), the unique violation fails the batch, which is retried
    and then sees that row instead of counting the customer twice. Changed rows all exist and are
    locked; writing them as an upsert has each find its row by primary key, where
    ``UPDATE … FROM unnest`` is a join the planner may do by scanning the table."""
    p = _Params()
    new = p.unnest(_row_tuples(new_rows), KEY_TYPES + ROW_TYPES)
    changed = p.unnest(_row_tuples(changed_rows), KEY_TYPES + ROW_TYPES)
    delta = ("text", "text", "date", "text", "bigint", "numeric")
    daily = p.unnest([(*k, *v) for k, v in sums.daily.items()], delta)
    monthly = p.unnest([(*k, *v) for k, v in sums.monthly.items()], delta)
    current = p.unnest(
        [(*k, *v) for k, v in sums.current.items()], ("text", "text", "text", "bigint", "numeric")
    )
    timeline = p.unnest(
        [
            (*key, *_entry_values(e))
            for key, e in sorted(entries, key=lambda ke: (ke[0], ke[1].seq))
        ],
        KEY_TYPES + ENTRY_TYPES,
    )
    moved = p.unnest(
        [(*k, *v) for k, v in sorted(moves.items()) if any(v)],
        ("text", "text", "smallint", "date", "text", "text", "bigint", "numeric", "bigint"),
    )
    await conn.execute(
        "WITH new_customers AS ("
        f" INSERT INTO report_customers (tenant_id, scope, customer_id, {ROW_COLUMNS})"
        f" SELECT * FROM {new}),"
        " changed_customers AS ("
        f" INSERT INTO report_customers AS r (tenant_id, scope, customer_id, {ROW_COLUMNS})"
        f" SELECT * FROM {changed} ON CONFLICT (tenant_id, scope, customer_id) DO UPDATE SET "
        + ", ".join(f"{f} = EXCLUDED.{f}" for f in ROW_FIELDS)
        + ", updated_at = now()),"
        " daily AS ("
        " INSERT INTO portfolio_daily_deltas AS t (tenant_id, scope, day, segment, customers, sales)"
        f" SELECT * FROM {daily} ON CONFLICT (tenant_id, scope, day, segment) DO UPDATE {_ADD}),"
        " monthly AS ("
        " INSERT INTO portfolio_monthly_deltas AS t"
        " (tenant_id, scope, month, segment, customers, sales)"
        f" SELECT * FROM {monthly} ON CONFLICT (tenant_id, scope, month, segment) DO UPDATE {_ADD}),"
        " current AS ("
        " INSERT INTO portfolio_current AS t (tenant_id, scope, segment, customers, sales)"
        f" SELECT * FROM {current} ON CONFLICT (tenant_id, scope, segment) DO UPDATE {_ADD}),"
        " timeline AS ("
        f" INSERT INTO report_timeline (tenant_id, scope, customer_id, {ENTRY_COLUMNS})"
        f" SELECT * FROM {timeline})"
        " INSERT INTO report_moves AS t (tenant_id, scope, span, month, from_segment,"
        " to_segment, customers, sales, buyers)"
        f" SELECT * FROM {moved}"
        " ON CONFLICT (tenant_id, scope, span, month, from_segment, to_segment) DO UPDATE"
        f" {_ADD}, buyers = t.buyers + EXCLUDED.buyers",
        *p.values,
    )


# The tables the consumer grows and reads by key: their statistics are kept by
# ``shared.pgstats.keep_statistics`` beside the consumer (servers without autovacuum).
GROWN_TABLES = ("report_customers", "report_timeline")
