"""Follow-up tasks: opening, reactivating, cancelling, listing, marking done."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import asyncpg

from ..domain.followups import (
    LAPSED,
    SEQUENCE,
    NewTask,
    OpenFollowup,
    Reactivated,
    SortKey,
    Withdrawal,
)

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
    so a redelivered change never reopens a task that staff or a comeback closed. A lapse or
    segment entry that a correction withdrew and its corrected timeline makes again (same
    segment and step) takes its withdrawn task back with the new dates (``revive``) instead.
    Returns how many were new."""
    if not tasks:
        return 0
    # Sorted by key: concurrent batches (a rebalance overlap) then wait rather than deadlock.
    unique = {(t.tenant_id, t.dedupe_key): t for t in tasks}
    tasks = [unique[k] for k in sorted(unique)]
    await revive(conn, [t for t in tasks if t.reason in (LAPSED, SEQUENCE)])
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


async def revive(conn: asyncpg.Connection, tasks: Sequence[NewTask]) -> int:
    """Give withdrawn tasks back to the changes that make them again: per new lapse task or
    sequence step, the task of the same customer, reason, segment and step withdrawn by the
    latest correction up to the new change (``notifier_corrections``; the correction's own
    first message may be the one that makes it again) takes the new change's key, seq and
    dates; cancelled by the withdrawal, it is open again (done by staff: still done). A
    lapse's alert goes with it (key, seq, day; deliveries the withdrawal cancelled are queued
    again; what was sent is not sent again). Lapse tasks keep their due day (the day staff
    first saw them); sequence steps move with their entry. Returns how many were revived."""
    if not tasks:
        return 0
    seqs = [t.lapse_seq if t.reason == LAPSED else t.entry_seq for t in tasks]
    rows = await conn.fetch(
        "WITH t AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],"
        "   $5::smallint[], $6::bigint[], $7::text[], $8::date[], $9::date[], $10::numeric[],"
        "   $11::text[], $12::date[]) AS t(tenant_id, customer_id, reason, segment, step, seq,"
        "   dedupe_key, created_on, due_on, total_amount, note, last_purchase_on)),"
        " pick AS (SELECT DISTINCT ON (g.id) g.id, g.dedupe_key AS old_key, t.* FROM t"
        "   CROSS JOIN LATERAL (SELECT f.id, f.dedupe_key FROM followups f"
        "     WHERE f.tenant_id = t.tenant_id AND f.customer_id = t.customer_id"
        "       AND f.reason = t.reason AND f.segment = t.segment"
        "       AND f.step IS NOT DISTINCT FROM t.step"
        "       AND f.withdrawn_by = (SELECT max(c.seq) FROM notifier_corrections c"
        "         WHERE c.tenant_id = t.tenant_id AND c.customer_id = t.customer_id"
        "           AND c.seq <= t.seq)"
        "     ORDER BY coalesce(f.lapse_seq, f.entry_seq) DESC LIMIT 1) g"
        "   WHERE NOT EXISTS (SELECT 1 FROM followups x WHERE x.tenant_id = t.tenant_id"
        "     AND x.dedupe_key = t.dedupe_key)"
        "   ORDER BY g.id, t.seq)"
        " UPDATE followups f SET dedupe_key = pick.dedupe_key, withdrawn_by = NULL,"
        "   lapse_seq = CASE WHEN f.reason = 'lapsed' THEN pick.seq END,"
        "   entry_seq = CASE WHEN f.reason = 'sequence' THEN pick.seq END,"
        "   created_on = pick.created_on,"
        "   due_on = CASE WHEN f.reason = 'sequence' THEN pick.due_on ELSE f.due_on END,"
        "   total_amount = pick.total_amount, note = coalesce(pick.note, f.note),"
        "   last_purchase_on = pick.last_purchase_on,"
        "   status = CASE WHEN f.outcome = 'withdrawn' THEN 'open' ELSE f.status END,"
        "   done_on = CASE WHEN f.outcome = 'withdrawn' THEN NULL ELSE f.done_on END,"
        "   outcome = CASE WHEN f.outcome = 'withdrawn' THEN NULL ELSE f.outcome END,"
        "   updated_at = now()"
        " FROM pick WHERE f.id = pick.id"
        " RETURNING f.tenant_id, f.reason, pick.old_key, f.dedupe_key, pick.seq, f.created_on",
        [t.tenant_id for t in tasks],
        [t.customer_id for t in tasks],
        [t.reason for t in tasks],
        [t.segment for t in tasks],
        [t.step for t in tasks],
        seqs,
        [t.dedupe_key for t in tasks],
        [t.created_on for t in tasks],
        [t.due_on for t in tasks],
        [t.total_amount for t in tasks],
        [t.note for t in tasks],
        [t.last_purchase_on for t in tasks],
    )
    lapses = [r for r in rows if r["reason"] == LAPSED]
    if lapses:
        # The alert key is the task's key (``lapse_key``): the new change's key now, so its
        # redelivery finds the alert and raises none.
        await conn.execute(
            "WITH r AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[],"
            "   $5::date[]) AS r(tenant_id, old_key, new_key, seq, on_)),"
            " moved AS (UPDATE alerts a SET alert_key = r.new_key, seq = r.seq,"
            "   effective_on = r.on_, status = 'raised'"
            "   FROM r WHERE a.tenant_id = r.tenant_id AND a.alert_key = r.old_key"
            "   AND NOT EXISTS (SELECT 1 FROM alerts x WHERE x.tenant_id = r.tenant_id"
            "     AND x.alert_key = r.new_key) RETURNING a.id)"
            " UPDATE alert_deliveries d SET status = 'pending', updated_at = now()"
            " FROM moved WHERE d.alert_id = moved.id AND d.status = 'cancelled'",
            [r["tenant_id"] for r in lapses],
            [r["old_key"] for r in lapses],
            [r["dedupe_key"] for r in lapses],
            [r["seq"] for r in lapses],
            [r["created_on"] for r in lapses],
        )
    return len(rows)


async def withdraw(conn: asyncpg.Connection, withdrawals: Sequence[Withdrawal]) -> int:
    """Apply corrections of customers' chain-wide timelines (``Withdrawal``), each once (a
    correction is recorded by its seq; a redelivered one withdraws nothing again). What the
    changes it withdraws had closed is opened again; what they had made is withdrawn: open
    lapse tasks and sequence steps cancelled (outcome ``withdrawn``; done by staff: kept, but
    marked, so the corrected timeline does not make them twice), comebacks no longer counted,
    lapse alerts withdrawn with their unsent deliveries. Cost: the customer's tasks, alerts
    and comebacks. Returns how many open tasks were cancelled."""
    if not withdrawals:
        return 0
    unique = {(w.tenant_id, w.customer_id, w.seq): w for w in withdrawals}
    keys = sorted(unique)
    recorded = await conn.fetch(
        "INSERT INTO notifier_corrections (tenant_id, customer_id, seq, corrects_from, since_seq)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::date[], $5::bigint[])"
        " ON CONFLICT DO NOTHING RETURNING tenant_id, customer_id, seq",
        [k[0] for k in keys],
        [k[1] for k in keys],
        [k[2] for k in keys],
        [unique[k].since_day for k in keys],
        [unique[k].since_seq for k in keys],
    )
    fresh = [unique[(r["tenant_id"], r["customer_id"], r["seq"])] for r in recorded]
    if not fresh:
        return 0
    w = (
        "w AS (SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::date[],"
        " $5::bigint[], $6::date[]) AS w(tenant_id, customer_id, seq, since_day, since_seq, on_))"
    )
    args = (
        [x.tenant_id for x in fresh],
        [x.customer_id for x in fresh],
        [x.seq for x in fresh],
        [x.since_day for x in fresh],
        [x.since_seq for x in fresh],
        [x.on for x in fresh],
    )
    mine = "f.tenant_id = w.tenant_id AND f.customer_id = w.customer_id"
    # What withdrawn changes closed (a comeback, new borders, a move that stopped a sequence)
    # is open again; a reopened lapse's deliveries the comeback cancelled are queued again.
    await conn.execute(
        f"WITH {w}, hit AS (SELECT DISTINCT f.id FROM followups f JOIN w ON {mine}"
        "   WHERE f.reason IN ('lapsed', 'sequence')"
        "     AND f.outcome IN ('comeback', 'reclassified', 'left_segment')"
        "     AND coalesce(f.closed_by_seq, 0) >= w.since_seq"
        "     AND coalesce(f.closed_by_seq, 0) < w.seq AND f.done_on >= w.since_day),"
        " reopened AS (UPDATE followups f SET status = 'open', outcome = NULL, done_on = NULL,"
        "   closed_by_seq = NULL, updated_at = now() FROM hit WHERE f.id = hit.id"
        "   RETURNING f.tenant_id, f.dedupe_key)"
        " UPDATE alert_deliveries d SET status = 'pending', updated_at = now()"
        " FROM alerts a, reopened r WHERE a.tenant_id = r.tenant_id AND a.alert_key = r.dedupe_key"
        "   AND a.status = 'raised' AND d.alert_id = a.id AND d.status = 'cancelled'",
        *args,
    )
    # What withdrawn changes made: their lapse tasks and sequence steps.
    cancelled = await conn.fetch(
        f"WITH {w}, hit AS (SELECT DISTINCT ON (f.id) f.id, w.seq, w.on_, f.status = 'open' AS open"
        f"   FROM followups f JOIN w ON {mine}"
        "   WHERE f.reason IN ('lapsed', 'sequence') AND f.created_on >= w.since_day"
        "     AND coalesce(f.lapse_seq, f.entry_seq) >= w.since_seq"
        "     AND coalesce(f.lapse_seq, f.entry_seq) < w.seq"
        "   ORDER BY f.id, w.seq DESC)"
        " UPDATE followups f SET withdrawn_by = hit.seq,"
        "   status = CASE WHEN hit.open THEN 'cancelled' ELSE f.status END,"
        "   outcome = CASE WHEN hit.open THEN 'withdrawn' ELSE f.outcome END,"
        "   done_on = CASE WHEN hit.open THEN hit.on_ ELSE f.done_on END, updated_at = now()"
        " FROM hit WHERE f.id = hit.id RETURNING hit.open",
        *args,
    )
    # Their comebacks are not counted; their lapse alerts withdrawn, unsent deliveries with them.
    await conn.execute(
        f"WITH {w} DELETE FROM comebacks f USING w WHERE {mine}"
        "   AND f.seq >= w.since_seq AND f.seq < w.seq AND f.came_back_on >= w.since_day",
        *args,
    )
    await conn.execute(
        f"WITH {w}, gone AS (UPDATE alerts f SET status = 'withdrawn' FROM w WHERE {mine}"
        "   AND f.kind = 'lapsed' AND f.seq >= w.since_seq AND f.seq < w.seq"
        "   AND f.effective_on >= w.since_day RETURNING f.id)"
        " UPDATE alert_deliveries d SET status = 'cancelled', updated_at = now()"
        " FROM gone WHERE d.alert_id = gone.id AND d.status = 'pending'",
        *args,
    )
    return sum(1 for r in cancelled if r["open"])


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
        "   SELECT DISTINCT ON (f.id) f.id, m.on_, m.outcome, m.seq FROM followups f"
        "   JOIN m ON f.tenant_id = m.tenant_id AND f.customer_id = m.customer_id AND f.lapse_seq < m.seq"
        "   WHERE f.status = 'open' AND f.reason = 'lapsed'"
        "   ORDER BY f.id, m.seq)"
        " UPDATE followups f SET status = 'done', outcome = hit.outcome, done_on = hit.on_,"
        " closed_by_seq = hit.seq, updated_at = now() FROM hit WHERE f.id = hit.id",
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
        "     AND f.status <> 'cancelled' AND f.withdrawn_by IS NULL"
        "     ORDER BY f.lapse_seq DESC LIMIT 1),"
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
    branches: Sequence[str] | None = None,
) -> Followup | None:
    """Staff did the follow-up, with what came of it and a note. Idempotent: a closed task is
    returned as it is. ``None`` when the tenant has no such task (among ``branches``' tasks,
    when given)."""
    row = await conn.fetchrow(
        "UPDATE followups SET status = 'done', outcome = 'done', done_on = $3,"
        " staff_outcome = $4, staff_note = $5, updated_at = now()"
        " WHERE tenant_id = $1 AND id = $2 AND status = 'open'"
        f" AND ($6::text[] IS NULL OR branch_id = ANY($6)) RETURNING {ITEM_COLUMNS}",
        tenant_id,
        followup_id,
        on,
        staff_outcome,
        staff_note,
        None if branches is None else list(branches),
    )
    if row is None:
        row = await conn.fetchrow(
            f"SELECT {ITEM_COLUMNS} FROM followups WHERE tenant_id = $1 AND id = $2"
            " AND ($3::text[] IS NULL OR branch_id = ANY($3))",
            tenant_id,
            followup_id,
            None if branches is None else list(branches),
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
