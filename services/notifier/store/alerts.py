"""Alerts and deliveries: raising, claiming, recording sends and failures, digests, lists."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

import asyncpg

from ..domain.alerts import NewAlert


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
