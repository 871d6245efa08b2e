"""``/v1/sequences``: follow-up sequences per segment."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from shared.access import Permission, TenantId, allow
from shared.cpm import SEGMENTS
from shared.http import ApiError, Pool

from .. import store
from ..domain.sequences import FollowupSequence

router = APIRouter()


async def _segment(segment: str) -> str:
    """The path's segment; 404 for one that does not exist (before the body is looked at)."""
    if segment not in SEGMENTS:
        raise ApiError(404, "unknown_segment", f"no segment {segment!r}", segments=list(SEGMENTS))
    return segment


Segment = Annotated[str, Depends(_segment)]


@router.get("/v1/sequences", tags=["sequences"], dependencies=[allow(Permission.REPORTS)])
async def list_sequences(pool: Pool, tenant_id: TenantId) -> dict:
    async with pool.acquire() as conn:
        return {"items": await store.list_sequences(conn, tenant_id)}


@router.get("/v1/sequences/{segment}", tags=["sequences"], dependencies=[allow(Permission.REPORTS)])
async def get_sequence(segment: Segment, pool: Pool, tenant_id: TenantId) -> dict:
    """The steps scheduled when a customer enters ``segment`` (chain-wide)."""
    async with pool.acquire() as conn:
        found = [s for s in await store.list_sequences(conn, tenant_id) if s["segment"] == segment]
    if not found:
        raise ApiError(404, "not_found", f"no sequence for {segment}", segment=segment)
    return found[0]


@router.put(
    "/v1/sequences/{segment}",
    tags=["sequences"],
    dependencies=[allow(Permission.SETTINGS, chain_only=True)],
)
async def put_sequence(
    segment: Segment, pool: Pool, tenant_id: TenantId, sequence: FollowupSequence
) -> dict:
    """Define the steps for customers entering ``segment`` from now on: each step due
    ``offset_days`` after the entry, by post / email / phone / fax, with a template of the
    customer's fields. A customer who moves to another segment stops the sequence (open steps
    not yet due are cancelled). Tasks already scheduled are left as they are."""
    async with pool.acquire() as conn:
        version = await store.save_sequence(conn, tenant_id, segment, sequence)
    return {"segment": segment, "version": version, **sequence.model_dump(mode="json")}


@router.delete(
    "/v1/sequences/{segment}",
    status_code=204,
    tags=["sequences"],
    dependencies=[allow(Permission.SETTINGS, chain_only=True)],
)
async def delete_sequence(segment: Segment, pool: Pool, tenant_id: TenantId) -> None:
    """No new steps for entries from now on (scheduled ones stay, and still stop on a move)."""
    async with pool.acquire() as conn:
        if not await store.delete_sequence(conn, tenant_id, segment):
            raise ApiError(404, "not_found", f"no sequence for {segment}", segment=segment)
