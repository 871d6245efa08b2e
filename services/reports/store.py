"""The reports service's SQL: per-customer rows, portfolio aggregates, daily and monthly deltas,
the segment timeline and the monthly moves; the reads behind history, transitions, questions,
RFM and DM tracking.

The consumer reads once and writes once per batch, set-based (arrays through ``unnest``), however
many states it holds; reads of the portfolio and its history touch only the aggregate tables,
never ``report_customers``.

The consumer finds its customers' rows by primary key only, and must keep doing so as the tables
grow from empty. Without planner statistics (a fresh database; a server without autovacuum, like
this project's CI and benchmark machine) PostgreSQL rated a scan as cheap as the key lookups: a
join with the batch's keys, prepared while the table was small, stayed a hash join over every row,
and the timeline read walked ``report_timeline_day`` through all of a scope's entries, per
customer. Both grew with the table until the consumer fell behind the feed (docs/BENCHMARKS.md,
latency). So rows are locked by per-key ``LATERAL`` lookups (a locking subquery is never turned
into a join), updated by upserts on the primary key (nothing to plan), and the service keeps the
statistics of the tables it grows (``shared.pgstats``), which the timeline read needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from datetime import date
from decimal import Decimal
from operator import attrgetter

import asyncpg

from .domain import CustomerRow, Entry, Sums
from .history import accumulate, month_end, month_start

Key = tuple[str, str, str]  # tenant, scope, customer

# --- the consumer: one read and one write per batch ------------------------------------------------

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


# --- planner statistics ---------------------------------------------------------------------------

# The tables the consumer grows and reads by key: their statistics are kept by
# ``shared.pgstats.keep_statistics`` beside the consumer (servers without autovacuum).
GROWN_TABLES = ("report_customers", "report_timeline")


# --- reads ----------------------------------------------------------------------------------------


async def portfolio_counts(
    conn: asyncpg.Connection, tenant_id: str, scope: str, as_of: date
) -> dict[str, tuple[int, Decimal]]:
    """Customers and sales per segment as of a day: the live aggregate when nothing later has
    been recorded (the usual case), else the sum of the daily deltas up to that day: O(days ×
    segments), whatever the number of customers. (The history reads the monthly rollups; this
    path keeps to the daily table, which ``kizuna bench portfolio`` seeds on its own.)"""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        later = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM portfolio_daily_deltas"
            " WHERE tenant_id = $1 AND scope = $2 AND day > $3)",
            tenant_id,
            scope,
            as_of,
        )
        if later:
            rows = await conn.fetch(
                "SELECT segment, sum(customers) AS customers, sum(sales) AS sales"
                " FROM portfolio_daily_deltas WHERE tenant_id = $1 AND scope = $2 AND day <= $3"
                " GROUP BY segment",
                tenant_id,
                scope,
                as_of,
            )
            return _sums(rows)
        rows = await conn.fetch(
            "SELECT segment, customers, sales FROM portfolio_current"
            " WHERE tenant_id = $1 AND scope = $2",
            tenant_id,
            scope,
        )
    return {r["segment"]: (int(r["customers"]), r["sales"]) for r in rows}


def _sums(rows) -> dict[str, tuple[int, Decimal]]:
    return {r["segment"]: (int(r["customers"]), r["sales"]) for r in rows}


async def portfolio_at(
    conn: asyncpg.Connection, tenant_id: str, scope: str, ends: list[date], *, by_month: bool
) -> list[dict[str, tuple[int, Decimal]]]:
    """The portfolio at each of ``ends`` (ascending) from the rollups, never from customers.

    ``by_month``: the ends are month-ends (the last one may be earlier: today), so whole months
    come from ``portfolio_monthly_deltas`` and only the last month from the daily deltas. Else
    every day between the first and last end comes from the daily deltas. Call inside a
    repeatable-read transaction when the figures must agree with other reads.
    """
    if not ends:
        return []
    first, last = month_start(ends[0]), ends[-1]
    base = _sums(
        await conn.fetch(
            "SELECT segment, sum(customers) AS customers, sum(sales) AS sales"
            " FROM portfolio_monthly_deltas WHERE tenant_id = $1 AND scope = $2 AND month < $3"
            " GROUP BY segment",
            tenant_id,
            scope,
            first,
        )
    )
    daily_from = month_start(last) if by_month else first
    deltas: list[tuple[date, str, int, Decimal]] = []
    if by_month and daily_from > first:
        rows = await conn.fetch(
            "SELECT month, segment, customers, sales FROM portfolio_monthly_deltas"
            " WHERE tenant_id = $1 AND scope = $2 AND month >= $3 AND month < $4"
            " ORDER BY month, segment",
            tenant_id,
            scope,
            first,
            daily_from,
        )
        deltas += [(month_end(r["month"]), r["segment"], r["customers"], r["sales"]) for r in rows]
    rows = await conn.fetch(
        "SELECT day, segment, customers, sales FROM portfolio_daily_deltas"
        " WHERE tenant_id = $1 AND scope = $2 AND day >= $3 AND day <= $4 ORDER BY day, segment",
        tenant_id,
        scope,
        daily_from,
        last,
    )
    deltas += [(r["day"], r["segment"], r["customers"], r["sales"]) for r in rows]
    return accumulate(base, deltas, ends)


CUSTOMER_COLUMNS = (
    "customer_id, segment, purchase_count, total_amount, first_purchase_on, last_purchase_on,"
    " home_branch_id"
)
# Segment lists join the customer master data (CSV imports of 顧客データ) when there is any.
LIST_COLUMNS = (
    "r.customer_id, r.segment, r.purchase_count, r.total_amount, r.first_purchase_on,"
    " r.last_purchase_on, r.home_branch_id, c.name AS customer_name, c.kana, c.email, c.phone,"
    " c.postal_code, concat_ws(' ', c.address1, c.address2) AS address, c.mail_consent"
)
LIST_FROM = (
    "report_customers r LEFT JOIN customer_details c"
    " ON c.tenant_id = r.tenant_id AND c.customer_id = r.customer_id"
)


async def customer(conn: asyncpg.Connection, tenant_id: str, scope: str, customer_id: str):
    """One customer's row with their tenant's time zone (null for a tenant not yet seen), for
    today's lapse days: one round trip for the most polled read."""
    return await conn.fetchrow(
        f"SELECT {CUSTOMER_COLUMNS},"
        " (SELECT time_zone FROM tenants WHERE tenant_id = $1) AS time_zone"
        " FROM report_customers WHERE tenant_id = $1 AND scope = $2 AND customer_id = $3",
        tenant_id,
        scope,
        customer_id,
    )


async def segment_page(
    conn: asyncpg.Connection,
    tenant_id: str,
    scope: str,
    segment: str,
    after: tuple[Decimal, str] | None,
    limit: int,
) -> list:
    """One page of a segment list, most valuable first (total desc, then customer_id), after the
    keyset ``after`` (the previous page's last item)."""
    if after is None:
        return await conn.fetch(
            f"SELECT {LIST_COLUMNS} FROM {LIST_FROM}"
            " WHERE r.tenant_id = $1 AND r.scope = $2 AND r.segment = $3"
            " ORDER BY r.total_amount DESC, r.customer_id LIMIT $4",
            tenant_id,
            scope,
            segment,
            limit,
        )
    total, customer_id = after
    return await conn.fetch(
        f"SELECT {LIST_COLUMNS} FROM {LIST_FROM}"
        " WHERE r.tenant_id = $1 AND r.scope = $2 AND r.segment = $3"
        " AND r.total_amount <= $4 AND (r.total_amount < $4 OR r.customer_id > $5)"
        " ORDER BY r.total_amount DESC, r.customer_id LIMIT $6",
        tenant_id,
        scope,
        segment,
        total,
        customer_id,
        limit,
    )


async def scopes(conn: asyncpg.Connection, tenant_id: str) -> list[str]:
    """The scopes a tenant has portfolio numbers for: ``all`` first, then branches."""
    rows = await conn.fetch(
        "SELECT DISTINCT scope FROM portfolio_current WHERE tenant_id = $1", tenant_id
    )
    return sorted((r["scope"] for r in rows), key=lambda s: (s != "all", s))


async def applied_rules_version(conn: asyncpg.Connection, tenant_id: str) -> int:
    """The borders version the classifier has finished applying (0 before any)."""
    value = await conn.fetchval(
        "SELECT applied_rules_version FROM tenants WHERE tenant_id = $1", tenant_id
    )
    return value or 0


# --- history reads ----------------------------------------------------------------------------------


async def moves(
    conn: asyncpg.Connection, tenant_id: str, scope: str, first: date, last: date
) -> list:
    """The stored monthly moves (both spans) of the months from ``first`` to ``last``."""
    return await conn.fetch(
        "SELECT span, month, from_segment, to_segment, customers, sales, buyers"
        " FROM report_moves WHERE tenant_id = $1 AND scope = $2 AND span = ANY($5::smallint[])"
        " AND month >= $3 AND month <= $4 AND (customers <> 0 OR sales <> 0 OR buyers <> 0)",
        tenant_id,
        scope,
        first,
        last,
        [1, 6],
    )


async def history_start(conn: asyncpg.Connection, tenant_id: str, scope: str) -> date | None:
    """The first month whose transitions are complete (databases that had reports before the
    timeline existed), or ``None``: complete from the beginning."""
    return await conn.fetchval(
        "SELECT complete_from FROM report_history_start WHERE tenant_id = $1 AND scope = $2",
        tenant_id,
        scope,
    )


# --- the owner's questions --------------------------------------------------------------------------

LATEST_ENTRIES = (
    "SELECT DISTINCT ON (customer_id) customer_id, segment, purchase_count, total_amount,"
    " first_purchase_on, last_purchase_on, NULL::text AS home_branch_id FROM report_timeline"
    " WHERE tenant_id = $1 AND scope = $2 AND effective_on >= $3 AND effective_on <= $4"
    " ORDER BY customer_id, seq DESC"
)


async def dormant(
    conn: asyncpg.Connection,
    tenant_id: str,
    scope: str,
    as_of: date,
    last_from: date,
    last_to: date,
    limit: int,
) -> tuple[int, list]:
    """Customers whose last purchase on ``as_of`` lies in [``last_from``, ``last_to``], most
    valuable first, and how many. Reads only timeline entries since ``last_from``: an entry in
    force on ``as_of`` with such a last purchase is dated on or after it (timelines are in date
    order, so the latest of those entries is the one in force)."""
    rows = await conn.fetch(
        f"SELECT *, count(*) OVER () AS n FROM ({LATEST_ENTRIES}) x"
        " WHERE segment IS NOT NULL AND last_purchase_on >= $3 AND last_purchase_on <= $5"
        " ORDER BY total_amount DESC, customer_id LIMIT $6",
        tenant_id,
        scope,
        last_from,
        as_of,
        last_to,
        limit,
    )
    return (rows[0]["n"] if rows else 0), rows


async def newcomers(
    conn: asyncpg.Connection, tenant_id: str, scope: str, first: date, last: date, as_of: date
) -> tuple[int, int]:
    """Of the customers whose first purchase lies in [``first``, ``last``] and who are in the
    portfolio on ``as_of``: how many, and how many have bought at least twice by then."""
    row = await conn.fetchrow(
        "SELECT count(*) AS n, count(*) FILTER (WHERE purchase_count >= 2) AS back"
        f" FROM ({LATEST_ENTRIES}) x"
        " WHERE segment IS NOT NULL AND first_purchase_on >= $3 AND first_purchase_on <= $5",
        tenant_id,
        scope,
        first,
        as_of,
        last,
    )
    return int(row["n"]), int(row["back"])


async def top_customers(conn: asyncpg.Connection, tenant_id: str, scope: str, limit: int) -> list:
    """The most valuable customers of a scope now (index ``report_customers_total``)."""
    return await conn.fetch(
        f"SELECT {CUSTOMER_COLUMNS} FROM report_customers"
        " WHERE tenant_id = $1 AND scope = $2 AND segment IS NOT NULL"
        " ORDER BY total_amount DESC, customer_id LIMIT $3",
        tenant_id,
        scope,
        limit,
    )


# --- RFM ----------------------------------------------------------------------------------------------


async def rfm_thresholds(conn: asyncpg.Connection, tenant_id: str) -> str | None:
    return await conn.fetchval(
        "SELECT thresholds::text FROM report_rfm_thresholds WHERE tenant_id = $1", tenant_id
    )


async def save_rfm_thresholds(conn: asyncpg.Connection, tenant_id: str, thresholds: str) -> None:
    await conn.execute(
        "INSERT INTO report_rfm_thresholds (tenant_id, thresholds) VALUES ($1, $2::jsonb)"
        " ON CONFLICT (tenant_id) DO UPDATE SET thresholds = EXCLUDED.thresholds,"
        " updated_at = now()",
        tenant_id,
        thresholds,
    )


async def rfm_cells(conn: asyncpg.Connection, tenant_id: str, scope: str, today: date, t) -> list:
    """Customers and sales per (R, F, M) rank cell, ranked in SQL by the same borders as
    ``analysis.r_rank``/``f_rank``/``m_rank``. One aggregate pass over the scope's customer rows:
    recency moves with every day and the borders are the tenant's, so there is nothing a
    maintained table could keep."""
    r, f, m = t.recency_days, t.frequency, t.monetary
    return await conn.fetch(
        "SELECT r, f, m, count(*) AS customers, sum(total_amount) AS sales FROM ("
        " SELECT CASE WHEN $3::date - last_purchase_on <= $4 THEN 5"
        "  WHEN $3::date - last_purchase_on <= $5 THEN 4 WHEN $3::date - last_purchase_on <= $6"
        "  THEN 3 WHEN $3::date - last_purchase_on <= $7 THEN 2 ELSE 1 END AS r,"
        " CASE WHEN purchase_count >= $11 THEN 5 WHEN purchase_count >= $10 THEN 4"
        "  WHEN purchase_count >= $9 THEN 3 WHEN purchase_count >= $8 THEN 2 ELSE 1 END AS f,"
        " CASE WHEN total_amount >= $15 THEN 5 WHEN total_amount >= $14 THEN 4"
        "  WHEN total_amount >= $13 THEN 3 WHEN total_amount >= $12 THEN 2 ELSE 1 END AS m,"
        " total_amount FROM report_customers"
        " WHERE tenant_id = $1 AND scope = $2 AND segment IS NOT NULL) x GROUP BY r, f, m",
        tenant_id,
        scope,
        today,
        *r,
        *f,
        *m,
    )


async def rfm_page(
    conn: asyncpg.Connection,
    tenant_id: str,
    scope: str,
    where: dict,
    after: tuple[Decimal, str] | None,
    limit: int,
) -> list:
    """A page of the customers in the rank ranges ``where`` (``analysis.rfm_filter``), most
    valuable first, after the keyset ``after``."""
    total, customer_id = after if after else (None, None)
    return await conn.fetch(
        f"SELECT {CUSTOMER_COLUMNS} FROM report_customers"
        " WHERE tenant_id = $1 AND scope = $2 AND segment IS NOT NULL"
        " AND ($3::date IS NULL OR last_purchase_on >= $3)"
        " AND ($4::date IS NULL OR last_purchase_on <= $4)"
        " AND ($5::int IS NULL OR purchase_count >= $5)"
        " AND ($6::int IS NULL OR purchase_count < $6)"
        " AND ($7::numeric IS NULL OR total_amount >= $7)"
        " AND ($8::numeric IS NULL OR total_amount < $8)"
        " AND ($9::numeric IS NULL OR total_amount < $9 OR (total_amount = $9 AND customer_id > $10))"
        " ORDER BY total_amount DESC, customer_id LIMIT $11",
        tenant_id,
        scope,
        where["last_from"],
        where["last_to"],
        where["count_from"],
        where["count_below"],
        where["total_from"],
        where["total_below"],
        total,
        customer_id,
        limit,
    )


# --- DM response tracking ------------------------------------------------------------------------------

DM_TABLE_COLUMNS = "table_id, name, scope, created_at"


async def create_dm_table(conn: asyncpg.Connection, tenant_id: str, name: str, scope: str):
    """A new named table, or ``None`` when the tenant already has one of that name."""
    return await conn.fetchrow(
        "INSERT INTO report_dm_tables (tenant_id, name, scope) VALUES ($1, $2, $3)"
        f" ON CONFLICT (tenant_id, name) DO NOTHING RETURNING {DM_TABLE_COLUMNS}",
        tenant_id,
        name,
        scope,
    )


async def dm_tables(conn: asyncpg.Connection, tenant_id: str) -> list:
    return await conn.fetch(
        f"SELECT {DM_TABLE_COLUMNS}, (SELECT count(DISTINCT month) FROM report_dm_entries e"
        "  WHERE e.tenant_id = t.tenant_id AND e.table_id = t.table_id) AS months"
        " FROM report_dm_tables t WHERE tenant_id = $1 ORDER BY created_at, table_id",
        tenant_id,
    )


async def dm_table(conn: asyncpg.Connection, tenant_id: str, table_id: int):
    return await conn.fetchrow(
        f"SELECT {DM_TABLE_COLUMNS} FROM report_dm_tables WHERE tenant_id = $1 AND table_id = $2",
        tenant_id,
        table_id,
    )


async def dm_entries(conn: asyncpg.Connection, tenant_id: str, table_id: int) -> list:
    return await conn.fetch(
        "SELECT month, segment, sent_on, segment_size, mailed, responses FROM report_dm_entries"
        " WHERE tenant_id = $1 AND table_id = $2 ORDER BY month, segment",
        tenant_id,
        table_id,
    )


async def put_dm_month(
    conn: asyncpg.Connection,
    tenant_id: str,
    table_id: int,
    month: date,
    sent_on: date,
    cells: list[tuple[str, int, int, int]],
) -> None:
    """Replace a month of a table: (segment, size, mailed, responses) per segment."""
    async with conn.transaction():
        await conn.execute(
            "DELETE FROM report_dm_entries WHERE tenant_id = $1 AND table_id = $2 AND month = $3",
            tenant_id,
            table_id,
            month,
        )
        await conn.executemany(
            "INSERT INTO report_dm_entries (tenant_id, table_id, month, segment, sent_on,"
            " segment_size, mailed, responses) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            [(tenant_id, table_id, month, s, sent_on, size, m, r) for s, size, m, r in cells],
        )


async def delete_dm(
    conn: asyncpg.Connection, tenant_id: str, table_id: int, month: date | None
) -> bool:
    """Delete a table (``month`` None) or one month of it; whether anything was there."""
    if month is None:
        status = await conn.execute(
            "DELETE FROM report_dm_tables WHERE tenant_id = $1 AND table_id = $2",
            tenant_id,
            table_id,
        )
    else:
        status = await conn.execute(
            "DELETE FROM report_dm_entries WHERE tenant_id = $1 AND table_id = $2 AND month = $3",
            tenant_id,
            table_id,
            month,
        )
    return not status.endswith(" 0")


async def top_products(
    conn: asyncpg.Connection,
    tenant_id: str,
    scope: str,
    customer_ids: list[str],
    per_customer: int = 3,
) -> dict[str, list[dict]]:
    """⑧ What each of these customers buys most: their sales' line items in the classifier's
    event store (customer states carry no line items), read through its view ``counted_sales``
    (015_views.sql, voided orders left out), by quantity. A customer whose purchases carried no
    lines has none."""
    rows = await conn.fetch(
        "SELECT c.customer_id, coalesce(l->>'sku', l->>'name') AS sku, max(l->>'name') AS name,"
        " sum(coalesce((l->>'quantity')::numeric, 1)) AS quantity,"
        " count(DISTINCT c.order_key) AS orders"
        " FROM counted_sales c CROSS JOIN LATERAL jsonb_array_elements(c.lines) l"
        " WHERE c.tenant_id = $1 AND c.customer_id = ANY($2::text[])"
        " AND ($3 = 'all' OR c.branch_id = $3)"
        " AND coalesce(l->>'sku', l->>'name') IS NOT NULL"
        " GROUP BY 1, 2 ORDER BY 1, quantity DESC, orders DESC, sku",
        tenant_id,
        customer_ids,
        scope,
    )
    out: dict[str, list[dict]] = {}
    for r in rows:
        items = out.setdefault(r["customer_id"], [])
        if len(items) < per_customer:
            items.append(
                {
                    "sku": r["sku"],
                    "name": r["name"],
                    "quantity": str(r["quantity"].normalize()),
                    "orders": r["orders"],
                }
            )
    return out
