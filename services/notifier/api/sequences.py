"""``/v1/sequences``: follow-up sequences per segment."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body
from pydantic import ValidationError

from shared.access import Permission, TenantId, allow
from shared.cpm import SEGMENTS
from shared.http import ApiError, Pool

from .. import store
from ..domain.sequences import FollowupSequence
from .params import _problems

router = APIRouter()


SEQUENCE_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": FollowupSequence.model_json_schema()}},
    }
}


def _segment(segment: str) -> str:
    if segment not in SEGMENTS:
        raise ApiError(404, "unknown_segment", f"no segment {segment!r}", segments=list(SEGMENTS))
    return segment


@router.get("/v1/sequences", tags=["sequences"], dependencies=[allow(Permission.REPORTS)])
async def list_sequences(pool: Pool, tenant_id: TenantId) -> dict:
    async with pool.acquire() as conn:
        return {"items": await store.list_sequences(conn, tenant_id)}


@router.get("/v1/sequences/{segment}", tags=["sequences"], dependencies=[allow(Permission.REPORTS)])
async def get_sequence(segment: str, pool: Pool, tenant_id: TenantId) -> dict:
    """The steps scheduled when a customer enters ``segment`` (chain-wide)."""
    _segment(segment)
    async with pool.acquire() as conn:
        found = [s for s in await store.list_sequences(conn, tenant_id) if s["segment"] == segment]
    if not found:
        raise ApiError(404, "not_found", f"no sequence for {segment}", segment=segment)
    return found[0]


@router.put(
    "/v1/sequences/{segment}",
    tags=["sequences"],
    openapi_extra=SEQUENCE_BODY,
    dependencies=[allow(Permission.SETTINGS, chain_only=True)],
)
async def put_sequence(
    segment: str, pool: Pool, tenant_id: TenantId, payload: Annotated[Any, Body()] = None
) -> dict:
    """Define the steps for customers entering ``segment`` from now on: each step due
    ``offset_days`` after the entry, by post / email / phone / fax, with a template of the
    customer's fields. A customer who moves to another segment stops the sequence (open steps
    not yet due are cancelled). Tasks already scheduled are left as they are."""
    _segment(segment)
    try:
        sequence = FollowupSequence.model_validate(payload)
    except ValidationError as exc:
        raise ApiError(
            422, "invalid_sequence", "the sequence is not valid", problems=_problems(exc)
        ) from None
    async with pool.acquire() as conn:
        version = await store.save_sequence(conn, tenant_id, segment, sequence)
    return {"segment": segment, "version": version, **sequence.model_dump(mode="json")}


@router.delete(
    "/v1/sequences/{segment}",
    status_code=204,
    tags=["sequences"],
    dependencies=[allow(Permission.SETTINGS, chain_only=True)],
)
async def delete_sequence(segment: str, pool: Pool, tenant_id: TenantId) -> None:
    """No new steps for entries from now on (scheduled ones stay, and still stop on a move)."""
    _segment(segment)
    async with pool.acquire() as conn:
        if not await store.delete_sequence(conn, tenant_id, segment):
            raise ApiError(404, "not_found", f"no sequence for {segment}", segment=segment)
