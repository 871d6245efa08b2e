"""The notifier's SQL: follow-up tasks, comebacks, alerts and their deliveries, notification
settings, follow-up sequences, and the at-risk scan's reads of the classifier's tables.

Writes are set-based (one statement per kind of action and batch) and idempotent: tasks are
unique by (tenant, dedupe_key), alerts by (tenant, alert_key), deliveries by their
deterministic id, comebacks by (tenant, customer, seq), and closing only touches open tasks,
so a redelivered batch changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

import asyncpg

from .domain import (
    DEFAULT_NOTIFICATION_SETTINGS,
    LAPSED,
    SEQUENCE,
    AtRiskCandidate,
    FollowupSequence,
    NewAlert,
    NewTask,
    NotificationSettings,
    OpenFollowup,
    Reactivated,
    SortKey,
    StopSequence,
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


# --- Notification settings and follow-up sequences -------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredSettings:
    settings: NotificationSettings
    webhook_secret: str | None
    version: int  # 0: never set, the defaults


async def load_settings(conn: asyncpg.Connection, tenant_id: str) -> StoredSettings:
    row = await conn.fetchrow(
        "SELECT settings::text AS settings, webhook_secret, version FROM notification_settings"
        " WHERE tenant_id = $1",
        tenant_id,
    )
    if row is None:
        return StoredSettings(DEFAULT_NOTIFICATION_SETTINGS, None, 0)
    return StoredSettings(
        NotificationSettings.model_validate_json(row["settings"]),
        row["webhook_secret"],
        row["version"],
    )


async def tenant_settings(
    conn: asyncpg.Connection, tenant_ids: Iterable[str]
) -> dict[str, NotificationSettings]:
    """Each tenant's settings; tenants that never set any get the defaults."""
    ids = sorted(set(tenant_ids))
    rows = await conn.fetch(
        "SELECT tenant_id, settings::text AS settings FROM notification_settings"
        " WHERE tenant_id = ANY($1::text[])",
        ids,
    )
    known = {r["tenant_id"]: NotificationSettings.model_validate_json(r["settings"]) for r in rows}
    return {t: known.get(t, DEFAULT_NOTIFICATION_SETTINGS) for t in ids}


async def save_settings(
    conn: asyncpg.Connection,
    tenant_id: str,
    settings: NotificationSettings,
    webhook_secret: str | None,
) -> StoredSettings:
    """Replace the tenant's settings; ``webhook_secret`` None keeps the stored secret."""
    row = await conn.fetchrow(
        "INSERT INTO notification_settings (tenant_id, settings, webhook_secret)"
        " VALUES ($1, $2::jsonb, $3)"
        " ON CONFLICT (tenant_id) DO UPDATE SET settings = EXCLUDED.settings,"
        "   webhook_secret = coalesce(EXCLUDED.webhook_secret, notification_settings.webhook_secret),"
        "   version = notification_settings.version + 1, updated_at = now()"
        " RETURNING webhook_secret, version",
        tenant_id,
        settings.model_dump_json(),
        webhook_secret,
    )
    return StoredSettings(settings, row["webhook_secret"], row["version"])


async def tenant_sequences(
    conn: asyncpg.Connection, tenant_ids: Iterable[str]
) -> dict[tuple[str, str], FollowupSequence]:
    rows = await conn.fetch(
        "SELECT tenant_id, segment, sequence::text AS sequence FROM followup_sequences"
        " WHERE tenant_id = ANY($1::text[])",
        sorted(set(tenant_ids)),
    )
    return {
        (r["tenant_id"], r["segment"]): FollowupSequence.model_validate_json(r["sequence"])
        for r in rows
    }


async def list_sequences(conn: asyncpg.Connection, tenant_id: str) -> list[dict]:
    rows = await conn.fetch(
        "SELECT segment, sequence::text AS sequence, version, updated_at FROM followup_sequences"
        " WHERE tenant_id = $1 ORDER BY segment",
        tenant_id,
    )
    return [
        {
            "segment": r["segment"],
            "version": r["version"],
            "updated_at": r["updated_at"],
            **json.loads(r["sequence"]),
        }
        for r in rows
    ]


async def save_sequence(
    conn: asyncpg.Connection, tenant_id: str, segment: str, sequence: FollowupSequence
) -> int:
    """Store the sequence for entries from now on; tasks already scheduled stay as they are."""
    return await conn.fetchval(
        "INSERT INTO followup_sequences (tenant_id, segment, sequence) VALUES ($1, $2, $3::jsonb)"
        " ON CONFLICT (tenant_id, segment) DO UPDATE SET sequence = EXCLUDED.sequence,"
        "   version = followup_sequences.version + 1, updated_at = now()"
        " RETURNING version",
        tenant_id,
        segment,
        sequence.model_dump_json(),
    )


async def delete_sequence(conn: asyncpg.Connection, tenant_id: str, segment: str) -> bool:
    result = await conn.execute(
        "DELETE FROM followup_sequences WHERE tenant_id = $1 AND segment = $2", tenant_id, segment
    )
    return result != "DELETE 0"


async def stop_sequences(conn: asyncpg.Connection, stops: list[StopSequence]) -> int:
    """Cancel the open steps each move ends (``StopSequence``). Keyed by seq, not arrival:
    steps of an entry after the move are never touched. Returns how many were cancelled."""
    if not stops:
        return 0
    rows = await conn.fetch(
        "WITH s AS (SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[],"
        "   $5::date[]) AS s(tenant_id, customer_id, seq, segment, on_)),"
        " hit AS ("
        "   SELECT DISTINCT ON (f.id) f.id, s.on_, s.seq"
        "   FROM followups f JOIN s ON f.tenant_id = s.tenant_id AND f.customer_id = s.customer_id"
        "   WHERE f.status = 'open' AND f.reason = 'sequence' AND f.entry_seq < s.seq"
        "     AND f.segment IS DISTINCT FROM s.segment AND f.due_on > s.on_"
        "   ORDER BY f.id, s.seq)"
        " UPDATE followups f SET status = 'cancelled', outcome = 'left_segment',"
        "   done_on = hit.on_, closed_by_seq = hit.seq, updated_at = now()"
        " FROM hit WHERE f.id = hit.id RETURNING f.id",
        [s.tenant_id for s in stops],
        [s.customer_id for s in stops],
        [s.seq for s in stops],
        [s.segment for s in stops],
        [s.on for s in stops],
    )
    return len(rows)


async def customer_names(
    conn: asyncpg.Connection, tenant_id: str, customer_ids: Iterable[str]
) -> dict[str, str]:
    """Customers' names for templates, from the customer master data (`kizuna import
    customers`); a customer without one is absent, and templates show the id instead."""
    rows = await conn.fetch(
        "SELECT customer_id, name FROM customer_details"
        " WHERE tenant_id = $1 AND customer_id = ANY($2::text[])"
        " AND name IS NOT NULL AND name <> ''",
        tenant_id,
        list(customer_ids),
    )
    return {r["customer_id"]: r["name"] for r in rows}


# --- Alerts and deliveries ---------------------------------------------------------------------------


async def raise_alerts(conn: asyncpg.Connection, alerts: Sequence[NewAlert]) -> int:
    """Record alerts and their deliveries, in the caller's transaction. An alert already
    recorded (redelivery, a rescan) is left alone and gets no deliveries: one alert per lapse
    or silence episode, whatever arrives twice. Returns how many were new."""
    if not alerts:
        return 0
    unique = {(a.tenant_id, a.alert_key): a for a in alerts}
    alerts = [unique[k] for k in sorted(unique)]
    rows = await conn.fetch(
        "INSERT INTO alerts (tenant_id, alert_key, kind, customer_id, branch_id, segment, priority,"
        " total_amount, last_purchase_on, effective_on, seq, mode, subject, body, details, raised_at)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],"
        " $6::text[], $7::smallint[], $8::numeric[], $9::date[], $10::date[], $11::bigint[],"
        " $12::text[], $13::text[], $14::text[], $15::jsonb[], $16::timestamptz[])"
        " ON CONFLICT (tenant_id, alert_key) DO NOTHING RETURNING id, tenant_id, alert_key",
        [a.tenant_id for a in alerts],
        [a.alert_key for a in alerts],
        [a.kind for a in alerts],
        [a.customer_id for a in alerts],
        [a.branch_id for a in alerts],
        [a.segment for a in alerts],
        [a.priority for a in alerts],
        [a.total_amount for a in alerts],
        [a.last_purchase_on for a in alerts],
        [a.effective_on for a in alerts],
        [a.seq for a in alerts],
        [a.mode for a in alerts],
        [a.subject for a in alerts],
        [a.body for a in alerts],
        [json.dumps(a.details, default=str) for a in alerts],
        [a.raised_at for a in alerts],
    )
    new = {(r["tenant_id"], r["alert_key"]): r["id"] for r in rows}
    deliveries = [
        (new[(a.tenant_id, a.alert_key)], a, d)
        for a in alerts
        if (a.tenant_id, a.alert_key) in new
        for d in a.deliveries
    ]
    if deliveries:
        await conn.execute(
            "INSERT INTO alert_deliveries (id, tenant_id, alert_id, kind, channel, target,"
            " branch_id, mode, priority, total_amount, subject, body, digest_due_at)"
            " SELECT d.id, d.tenant_id, d.alert_id, 'alert', d.channel, d.target, d.branch_id,"
            "   d.mode, d.priority, d.total_amount, d.subject, d.body, d.digest_due_at"
            " FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[],"
            "   $6::text[], $7::text[], $8::smallint[], $9::numeric[], $10::text[], $11::text[],"
            "   $12::timestamptz[]) AS d(id, tenant_id, alert_id, channel, target, branch_id, mode,"
            "   priority, total_amount, subject, body, digest_due_at)"
            " ON CONFLICT (id) DO NOTHING",
            [d.id for _, _, d in deliveries],
            [a.tenant_id for _, a, _ in deliveries],
            [alert_id for alert_id, _, _ in deliveries],
            [d.channel for _, _, d in deliveries],
            [d.target for _, _, d in deliveries],
            [a.branch_id for _, a, _ in deliveries],
            [d.mode for _, _, d in deliveries],
            [a.priority for _, a, _ in deliveries],
            [a.total_amount for _, a, _ in deliveries],
            [d.subject for _, _, d in deliveries],
            [d.body for _, _, d in deliveries],
            [d.digest_due_at for _, _, d in deliveries],
        )
    return len(new)


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery leased to this worker for one try."""

    id: str
    tenant_id: str
    kind: str
    channel: str
    target: str
    subject: str | None
    body: str
    attempts: int
    priority: int
    total_amount: Decimal
    created_at: datetime


async def claim_deliveries(
    conn: asyncpg.Connection, limit: int, lease_seconds: float
) -> list[Claimed]:
    """Lease due deliveries, most valuable first. The lease (moving ``next_attempt_at`` past
    the longest send) keeps other workers off while this one tries; if this one dies, the
    lease runs out and another sends again, with the same id."""
    rows = await conn.fetch(
        "UPDATE alert_deliveries d SET next_attempt_at = now() + make_interval(secs => $2),"
        "   updated_at = now()"
        " FROM (SELECT id FROM alert_deliveries"
        "   WHERE status = 'pending' AND mode = 'immediate' AND next_attempt_at <= now()"
        "   ORDER BY priority, total_amount DESC, id LIMIT $1 FOR UPDATE SKIP LOCKED) due"
        " WHERE d.id = due.id"
        " RETURNING d.id, d.tenant_id, d.kind, d.channel, d.target, d.subject, d.body, d.attempts,"
        "   d.priority, d.total_amount, d.created_at",
        limit,
        lease_seconds,
    )
    claimed = [Claimed(**dict(r)) for r in rows]
    return sorted(claimed, key=lambda c: (c.priority, -c.total_amount, c.id))


async def webhook_secrets(conn: asyncpg.Connection, tenant_ids: Iterable[str]) -> dict[str, str]:
    rows = await conn.fetch(
        "SELECT tenant_id, webhook_secret FROM notification_settings"
        " WHERE tenant_id = ANY($1::text[]) AND webhook_secret IS NOT NULL",
        sorted(set(tenant_ids)),
    )
    return {r["tenant_id"]: r["webhook_secret"] for r in rows}


async def record_sent(conn: asyncpg.Connection, delivery_id: str, attempts: int) -> None:
    """The receiver accepted it. Whatever happened to the row meanwhile, it was sent."""
    await conn.execute(
        "UPDATE alert_deliveries SET status = 'sent', attempts = $2, sent_at = now(),"
        " last_error = NULL, updated_at = now() WHERE id = $1",
        delivery_id,
        attempts,
    )


async def record_failure(
    conn: asyncpg.Connection,
    delivery_id: str,
    *,
    attempts: int,
    status: str,
    error: str,
    retry_in: float,
) -> None:
    """A failed try: ``pending`` again after ``retry_in`` seconds, or ``dead`` (the dead-letter
    record: attempts and the last error stay on the row). A delivery cancelled meanwhile stays
    cancelled."""
    await conn.execute(
        "UPDATE alert_deliveries SET status = $3, attempts = $2, last_error = $4,"
        " next_attempt_at = now() + make_interval(secs => $5), updated_at = now()"
        " WHERE id = $1 AND status = 'pending'",
        delivery_id,
        attempts,
        status,
        error[:2000],
        retry_in,
    )


@dataclass(frozen=True, slots=True)
class DigestMember:
    id: str
    tenant_id: str
    target: str
    branch_id: str | None
    priority: int
    total_amount: Decimal
    subject: str
    last_purchase_on: date | None
    digest_due_at: datetime


async def due_digest_members(
    conn: asyncpg.Connection, now: datetime, limit: int
) -> list[DigestMember]:
    """Digest members whose morning has come, locked for this transaction, most valuable first
    within each tenant and target."""
    rows = await conn.fetch(
        "SELECT d.id, d.tenant_id, d.target, d.branch_id, d.priority, d.total_amount,"
        "   d.subject, a.last_purchase_on, d.digest_due_at"
        " FROM alert_deliveries d JOIN alerts a ON a.id = d.alert_id"
        " WHERE d.status = 'pending' AND d.mode = 'digest' AND d.digest_due_at <= $1"
        " ORDER BY d.tenant_id, d.target, d.branch_id, d.priority, d.total_amount DESC, d.id"
        " LIMIT $2 FOR UPDATE OF d SKIP LOCKED",
        now,
        limit,
    )
    return [DigestMember(**dict(r)) for r in rows]


async def create_digest(
    conn: asyncpg.Connection,
    *,
    digest_id: str,
    members: Sequence[DigestMember],
    subject: str,
    body: str,
) -> None:
    """One digest e-mail row (sent like any delivery) and its members marked as carried by it,
    in one transaction: a resend of the digest is the same message."""
    first = members[0]
    await conn.execute(
        "INSERT INTO alert_deliveries (id, tenant_id, kind, channel, target, branch_id, mode,"
        " priority, total_amount, subject, body)"
        " VALUES ($1, $2, 'digest', 'email', $3, $4, 'immediate', $5, $6, $7, $8)"
        " ON CONFLICT (id) DO NOTHING",
        digest_id,
        first.tenant_id,
        first.target,
        first.branch_id,
        min(m.priority for m in members),
        max(m.total_amount for m in members),
        subject,
        body,
    )
    await conn.execute(
        "UPDATE alert_deliveries SET status = 'digested', digest_id = $2, updated_at = now()"
        " WHERE id = ANY($1::text[])",
        [m.id for m in members],
        digest_id,
    )


async def delivery_backlog(conn: asyncpg.Connection) -> int:
    return await conn.fetchval(
        "SELECT count(*) FROM alert_deliveries WHERE status = 'pending' AND mode = 'immediate'"
    )


DELIVERY_COLUMNS = (
    "d.id, d.kind, d.channel, d.target, d.branch_id, d.mode, d.status, d.attempts, d.last_error,"
    " d.subject, d.created_at, d.sent_at, d.next_attempt_at, d.digest_id, a.customer_id,"
    " a.kind AS alert_kind"
)


async def list_deliveries(
    conn: asyncpg.Connection, tenant_id: str, status: str | None, limit: int
) -> list[dict]:
    rows = await conn.fetch(
        f"SELECT {DELIVERY_COLUMNS} FROM alert_deliveries d LEFT JOIN alerts a ON a.id = d.alert_id"
        " WHERE d.tenant_id = $1 AND ($2::text IS NULL OR d.status = $2)"
        " ORDER BY d.created_at DESC, d.id LIMIT $3",
        tenant_id,
        status,
        limit,
    )
    return [dict(r) for r in rows]


async def retry_delivery(conn: asyncpg.Connection, tenant_id: str, delivery_id: str) -> dict | None:
    """Queue a dead delivery again (same id, so a receiver that got it still drops it)."""
    await conn.execute(
        "UPDATE alert_deliveries SET status = 'pending', attempts = 0, next_attempt_at = now(),"
        " updated_at = now() WHERE tenant_id = $1 AND id = $2 AND status = 'dead'",
        tenant_id,
        delivery_id,
    )
    row = await conn.fetchrow(
        f"SELECT {DELIVERY_COLUMNS} FROM alert_deliveries d LEFT JOIN alerts a ON a.id = d.alert_id"
        " WHERE d.tenant_id = $1 AND d.id = $2",
        tenant_id,
        delivery_id,
    )
    return dict(row) if row else None


async def list_alerts(
    conn: asyncpg.Connection,
    tenant_id: str,
    *,
    branch_id: str | None,
    kind: str | None,
    since: date | None,
    limit: int,
) -> list[dict]:
    """Alerts most valuable first, each with its deliveries' channel and status."""
    rows = await conn.fetch(
        "SELECT a.id, a.kind, a.customer_id, a.branch_id, a.segment, a.total_amount,"
        "   a.last_purchase_on, a.effective_on, a.mode, a.status, a.subject, a.raised_at,"
        "   coalesce((SELECT json_agg(json_build_object('id', d.id, 'channel', d.channel,"
        "     'status', d.status, 'attempts', d.attempts) ORDER BY d.channel, d.id)"
        "     FROM alert_deliveries d WHERE d.alert_id = a.id), '[]')::text AS deliveries"
        " FROM alerts a WHERE a.tenant_id = $1"
        "   AND ($2::text IS NULL OR a.branch_id = $2) AND ($3::text IS NULL OR a.kind = $3)"
        "   AND ($4::date IS NULL OR a.effective_on >= $4)"
        " ORDER BY a.priority, a.total_amount DESC, a.id LIMIT $5",
        tenant_id,
        branch_id,
        kind,
        since,
        limit,
    )
    return [
        dict(r)
        | {"total_amount": str(r["total_amount"]), "deliveries": json.loads(r["deliveries"])}
        for r in rows
    ]


# --- Comebacks: follow-up work showing up as results --------------------------------------------------


async def comeback_counts(
    conn: asyncpg.Connection, tenant_id: str, branch_id: str | None, start: date, end: date
) -> dict:
    """Comebacks from ``start`` to ``end`` (inclusive): in all, after a follow-up task, after
    staff had done it; per segment they came back from and per day. A comeback recorded before
    its branch was stored takes its task's branch."""
    where = (
        " FROM comebacks c LEFT JOIN followups f ON f.id = c.followup_id"
        " WHERE c.tenant_id = $1 AND c.came_back_on BETWEEN $2 AND $3"
        "   AND ($4::text IS NULL OR coalesce(c.branch_id, f.branch_id) = $4)"
    )
    args = (tenant_id, start, end, branch_id)
    totals = await conn.fetchrow(
        "SELECT count(*) AS comebacks, count(f.id) AS after_followup,"
        " count(*) FILTER (WHERE f.outcome = 'done') AS after_contact" + where,
        *args,
    )
    segments = await conn.fetch(
        "SELECT coalesce(c.from_segment, f.segment) AS segment, count(*) AS comebacks"
        + where
        + " GROUP BY 1 ORDER BY 2 DESC, 1",
        *args,
    )
    days = await conn.fetch(
        "SELECT c.came_back_on AS day, count(*) AS comebacks" + where + " GROUP BY 1 ORDER BY 1",
        *args,
    )
    return {
        **dict(totals),
        "by_segment": [dict(r) for r in segments],
        "by_day": [{"date": r["day"], "comebacks": r["comebacks"]} for r in days],
    }


# --- At risk: reads of the classifier's tables (see ``at_risk_candidates``) ---------------------


async def tenants(conn: asyncpg.Connection) -> list[tuple[str, str]]:
    rows = await conn.fetch("SELECT tenant_id, time_zone FROM tenants ORDER BY tenant_id")
    return [(r["tenant_id"], r["time_zone"]) for r in rows]


async def at_risk_candidates(
    conn: asyncpg.Connection,
    tenant_id: str,
    *,
    segments: Sequence[str],
    silent_since: date,
    today: date,
    after: str,
    limit: int,
) -> list[AtRiskCandidate]:
    """One page (by customer id, after ``after``) of active customers of ``segments`` silent
    since ``silent_since`` or longer and not yet warned about this silence, with their purchase
    days: one per order (sales sharing an order_id are one order, dated by the earliest),
    voided orders left out, as ``shared.cpm.compute_figures`` counts them.

    Why the notifier reads the classifier's state here, through its views
    ``chain_customer_states`` and ``counted_sales`` (015_views.sql), instead of consuming a
    topic: both services share the database; the silence looked for is the *absence* of events,
    so no event carries it; and a customer's rhythm (the median gap between their purchase days)
    needs their whole purchase history, which the classifier already keeps. A topic would only
    copy that table. Should the services ever get databases of their own, this query (and
    ``close_at_risk``) is what a read model must replace."""
    rows = await conn.fetch(
        "SELECT s.customer_id, s.segment, s.home_branch_id, s.total_amount, s.last_purchase_on,"
        "   s.lapse_due_on,"
        # A purchase day is the day of an order's earliest sale; counted_sales leaves voided
        # orders out (the rule of compute_figures, held to it by a test).
        "   ARRAY(SELECT DISTINCT o.on_ FROM ("
        "     SELECT min(c.occurred_on) AS on_ FROM counted_sales c"
        "     WHERE c.tenant_id = s.tenant_id AND c.customer_id = s.customer_id"
        "     GROUP BY c.order_key) o"
        "   WHERE o.on_ <= $4 ORDER BY o.on_) AS order_dates"
        " FROM chain_customer_states s"
        " WHERE s.tenant_id = $1 AND s.customer_id > $5"
        "   AND s.segment = ANY($2::text[]) AND s.last_purchase_on <= $3"
        "   AND NOT EXISTS (SELECT 1 FROM followups f WHERE f.tenant_id = $1"
        "     AND f.dedupe_key = 'at_risk:' || s.customer_id || ':'"
        "       || to_char(s.last_purchase_on, 'YYYY-MM-DD'))"
        " ORDER BY s.customer_id LIMIT $6",
        tenant_id,
        list(segments),
        silent_since,
        today,
        after,
        limit,
    )
    return [
        AtRiskCandidate(
            tenant_id=tenant_id,
            customer_id=r["customer_id"],
            segment=r["segment"],
            branch_id=r["home_branch_id"],
            total_amount=r["total_amount"],
            last_purchase_on=r["last_purchase_on"],
            lapse_due_on=r["lapse_due_on"],
            order_dates=tuple(r["order_dates"]),
        )
        for r in rows
    ]


async def close_at_risk(conn: asyncpg.Connection, tenant_id: str, on: date) -> int:
    """Close open at-risk tasks whose silence ended: the customer bought again, lapsed (the
    lapse task takes over) or left the portfolio."""
    result = await conn.execute(
        "UPDATE followups f SET status = 'done', done_on = $2, updated_at = now(),"
        "   outcome = CASE WHEN s.last_purchase_on > f.last_purchase_on THEN 'bought'"
        "     WHEN s.segment LIKE '%\\_lapsed' THEN 'lapsed' ELSE 'left' END"
        " FROM chain_customer_states s"
        " WHERE f.tenant_id = $1 AND f.reason = 'at_risk' AND f.status = 'open'"
        "   AND s.tenant_id = f.tenant_id AND s.customer_id = f.customer_id"
        "   AND (s.last_purchase_on > f.last_purchase_on OR s.segment IS NULL"
        "     OR s.segment NOT LIKE '%\\_active')",
        tenant_id,
        on,
    )
    return int(result.split()[-1])
