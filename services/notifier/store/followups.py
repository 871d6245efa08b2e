"""Follow-up tasks: opening, reactivating, cancelling, listing, marking done."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import asyncpg

from ..domain.followups import CancelFollowup, NewTask, OpenFollowup, Reactivated, SortKey

ITEM_COLUMNS = (
    "id, customer_id, branch_id, segment, reason, status, outcome, created_on, due_on, done_on,"
    " total_amount, priority, channel, note, step, last_purchase_on, staff_outcome, staff_note"
)


@dataclass(frozen=True, slots=True)
class Followup:
    id: int
    customer_id: str
    branch_id: str | None
    segment: str
    reason: str
    status: str
    outcome: str | None
    created_on: date
    due_on: date
    done_on: date | None
    total_amount: Decimal
    priority: int
    channel: str | None = None
    note: str | None = None
    step: int | None = None
    last_purchase_on: date | None = None
    staff_outcome: str | None = None
    staff_note: str | None = None

    @property
    def sort_key(self) -> SortKey:
        return SortKey(self.priority, self.total_amount, self.id)


def _followup(row) -> Followup:
    return Followup(**dict(row))


async def time_zones(
    conn: asyncpg.Connection, tenant_ids: Iterable[str], default: str
) -> dict[str, str]:
    """Each tenant's zone (the classifier registers tenants; unknown ones use the default)."""
    ids = sorted(set(tenant_ids))
    rows = await conn.fetch(
        "SELECT tenant_id, time_zone FROM tenants WHERE tenant_id = ANY($1::text[])", ids
    )
    known = {r["tenant_id"]: r["time_zone"] for r in rows}
    return {t: known.get(t, default) for t in ids}


async def open_followups(conn: asyncpg.Connection, tasks: list[OpenFollowup]) -> int:
    """Insert lapse tasks; see ``open_tasks``."""
    return await open_tasks(conn, [t.task() for t in tasks])


async def open_tasks(conn: asyncpg.Connection, tasks: Sequence[NewTask]) -> int:
    """Insert new tasks; a task already recorded for that cause (in any status) is left alone,
    so a redelivered change never reopens a task that staff or a comeback closed. Returns how
    many were new."""
    if not tasks:
        return 0
    # Sorted by key: concurrent batches (a rebalance overlap) then wait rather than deadlock.
    unique = {(t.tenant_id, t.dedupe_key): t for t in tasks}
    tasks = [unique[k] for k in sorted(unique)]
    inserted = await conn.fetch(
        "INSERT INTO followups (tenant_id, customer_id, branch_id, segment, reason, priority,"
        " lapse_seq, created_on, due_on, total_amount, dedupe_key, entry_seq, step, channel, note,"
        " last_purchase_on)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],"
        " $6::smallint[], $7::bigint[], $8::date[], $9::date[], $10::numeric[], $11::text[],"
        " $12::bigint[], $13::smallint[], $14::text[], $15::text[], $16::date[])"
        " ON CONFLICT (tenant_id, dedupe_key) DO NOTHING RETURNING id",
        [t.tenant_id for t in tasks],
        [t.customer_id for t in tasks],
        [t.branch_id for t in tasks],
        [t.segment for t in tasks],
        [t.reason for t in tasks],
        [t.priority for t in tasks],
        [t.lapse_seq for t in tasks],
        [t.created_on for t in tasks],
        [t.due_on for t in tasks],
        [t.total_amount for t in tasks],
        [t.dedupe_key for t in tasks],
        [t.entry_seq for t in tasks],
        [t.step for t in tasks],
        [t.channel for t in tasks],
        [t.note for t in tasks],
        [t.last_purchase_on for t in tasks],
    )
    return len(inserted)


async def cancel_followups(conn: asyncpg.Connection, cancels: list[CancelFollowup]) -> int:
    """Cancel the still-open tasks of premature lapses (a task staff already closed stays)."""
    if not cancels:
        return 0
    result = await conn.execute(
        "UPDATE followups f SET status = 'cancelled', outcome = 'superseded', done_on = c.on_,"
        " updated_at = now()"
        " FROM unnest($1::text[], $2::text[], $3::date[]) AS c(tenant_id, dedupe_key, on_)"
        " WHERE f.tenant_id = c.tenant_id AND f.dedupe_key = c.dedupe_key AND f.status = 'open'",
        [c.tenant_id for c in cancels],
        [c.dedupe_key for c in cancels],
        [c.on for c in cancels],
    )
    # The lapse never was: its alert is withdrawn and what was not sent yet is not sent.
    await conn.execute(
        "WITH w AS (UPDATE alerts a SET status = 'withdrawn'"
        "   FROM unnest($1::text[], $2::text[]) AS c(tenant_id, alert_key)"
        "   WHERE a.tenant_id = c.tenant_id AND a.alert_key = c.alert_key RETURNING a.id)"
        " UPDATE alert_deliveries d SET status = 'cancelled', updated_at = now()"
        " FROM w WHERE d.alert_id = w.id AND d.status = 'pending'",
        [c.tenant_id for c in cancels],
        [c.dedupe_key for c in cancels],
    )
    return int(result.split()[-1])


async def reactivate(conn: asyncpg.Connection, moves: list[Reactivated]) -> int:
    """Close the open lapse tasks each reactivation ends and count the comebacks. A task closes
    with the first reactivation after its lapse (by seq), so a batch holding lapse, comeback and
    a second lapse of one customer leaves the second task open. Returns new comebacks."""
    if not moves:
        return 0
    await conn.execute(
        "WITH m AS (SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::date[], $5::text[])"
        "   AS m(tenant_id, customer_id, seq, on_, outcome)),"
        " hit AS ("
        "   SELECT DISTINCT ON (f.id) f.id, m.on_, m.outcome FROM followups f"
        "   JOIN m ON f.tenant_id = m.tenant_id AND f.customer_id = m.customer_id AND f.lapse_seq < m.seq"
        "   WHERE f.status = 'open' AND f.reason = 'lapsed'"
        "   ORDER BY f.id, m.seq)"
        " UPDATE followups f SET status = 'done', outcome = hit.outcome, done_on = hit.on_,"
        " updated_at = now() FROM hit WHERE f.id = hit.id",
        [m.tenant_id for m in moves],
        [m.customer_id for m in moves],
        [m.seq for m in moves],
        [m.on for m in moves],
        [m.outcome for m in moves],
    )
    # Deliveries of the ended lapse's alert that have not gone out yet (a morning digest, a
    # webhook still retrying) would only tell staff about someone who is back: not sent.
    await conn.execute(
        "UPDATE alert_deliveries d SET status = 'cancelled', updated_at = now()"
        " FROM alerts a, unnest($1::text[], $2::text[], $3::bigint[]) AS m(tenant_id, customer_id, seq)"
        " WHERE d.alert_id = a.id AND d.status = 'pending' AND a.kind = 'lapsed'"
        "   AND a.tenant_id = m.tenant_id AND a.customer_id = m.customer_id AND a.seq < m.seq",
        [m.tenant_id for m in moves],
        [m.customer_id for m in moves],
        [m.seq for m in moves],
    )
    comebacks = [m for m in moves if m.comeback]
    if not comebacks:
        return 0
    # followup_id: the task of the lapse this comeback ended, whoever closed it (staff may
    # have called before the customer came back; that is what follow-up work is for).
    inserted = await conn.fetch(
        "INSERT INTO comebacks (tenant_id, customer_id, seq, segment, came_back_on, followup_id,"
        " branch_id, from_segment)"
        " SELECT m.tenant_id, m.customer_id, m.seq, m.segment, m.on_,"
        "   (SELECT f.id FROM followups f WHERE f.tenant_id = m.tenant_id"
        "     AND f.customer_id = m.customer_id AND f.reason = 'lapsed' AND f.lapse_seq < m.seq"
        "     AND f.status <> 'cancelled' ORDER BY f.lapse_seq DESC LIMIT 1),"
        "   m.branch_id, m.from_segment"
        " FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::date[], $6::text[],"
        "   $7::text[]) AS m(tenant_id, customer_id, seq, segment, on_, branch_id, from_segment)"
        " ON CONFLICT (tenant_id, customer_id, seq) DO NOTHING RETURNING seq",
        [m.tenant_id for m in comebacks],
        [m.customer_id for m in comebacks],
        [m.seq for m in comebacks],
        [m.segment for m in comebacks],
        [m.on for m in comebacks],
        [m.branch_id for m in comebacks],
        [m.from_segment for m in comebacks],
    )
    return len(inserted)


async def list_followups(
    conn: asyncpg.Connection,
    tenant_id: str,
    *,
    status: str,
    branch_id: str | None,
    due_by: date | None,
    after: SortKey | None,
    limit: int,
    reason: str | None = None,
) -> list[Followup]:
    """One page of tasks, most valuable first (priority, total descending, id)."""
    rows = await conn.fetch(
        f"SELECT {ITEM_COLUMNS} FROM followups"
        " WHERE tenant_id = $1 AND status = $2"
        " AND ($3::text IS NULL OR branch_id = $3)"
        " AND ($4::date IS NULL OR due_on <= $4)"
        # Keyset paging; written out because total sorts descending while the others ascend.
        " AND ($5::smallint IS NULL OR priority > $5"
        "   OR (priority = $5 AND (total_amount < $6 OR (total_amount = $6 AND id > $7))))"
        " AND ($9::text IS NULL OR reason = $9)"
        " ORDER BY priority, total_amount DESC, id LIMIT $8",
        tenant_id,
        status,
        branch_id,
        due_by,
        after.priority if after else None,
        after.total_amount if after else None,
        after.id if after else None,
        limit,
        reason,
    )
    return [_followup(r) for r in rows]


async def mark_done(
    conn: asyncpg.Connection,
    tenant_id: str,
    followup_id: int,
    on: date,
    staff_outcome: str | None = None,
    staff_note: str | None = None,
) -> Followup | None:
    """Staff did the follow-up, with what came of it and a note. Idempotent: a closed task is
    returned as it is. ``None`` when the tenant has no such task."""
    row = await conn.fetchrow(
        "UPDATE followups SET status = 'done', outcome = 'done', done_on = $3,"
        " staff_outcome = $4, staff_note = $5, updated_at = now()"
        f" WHERE tenant_id = $1 AND id = $2 AND status = 'open' RETURNING {ITEM_COLUMNS}",
        tenant_id,
        followup_id,
        on,
        staff_outcome,
        staff_note,
    )
    if row is None:
        row = await conn.fetchrow(
            f"SELECT {ITEM_COLUMNS} FROM followups WHERE tenant_id = $1 AND id = $2",
            tenant_id,
            followup_id,
        )
    return _followup(row) if row else None


async def customer_followups(
    conn: asyncpg.Connection, tenant_id: str, customer_id: str
) -> list[Followup]:
    """All tasks of one customer, oldest first (for the dashboard and tests)."""
    rows = await conn.fetch(
        f"SELECT {ITEM_COLUMNS} FROM followups WHERE tenant_id = $1 AND customer_id = $2 ORDER BY id",
        tenant_id,
        customer_id,
    )
    return [_followup(r) for r in rows]


async def customer_comebacks(
    conn: asyncpg.Connection, tenant_id: str, customer_id: str
) -> list[dict]:
    rows = await conn.fetch(
        "SELECT seq, segment, came_back_on, followup_id FROM comebacks"
        " WHERE tenant_id = $1 AND customer_id = $2 ORDER BY seq",
        tenant_id,
        customer_id,
    )
    return [dict(r) for r in rows]
