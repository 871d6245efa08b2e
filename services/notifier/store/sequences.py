"""Follow-up sequences per tenant and segment, and stopping their open steps."""

from __future__ import annotations

import json
from collections.abc import Iterable

import asyncpg

from ..domain.sequences import FollowupSequence, StopSequence


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
