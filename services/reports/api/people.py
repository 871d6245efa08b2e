"""People and API keys of the caller's tenant, for the owners' page of the dashboard: what
`kizuna users|keys` do on the command line, over HTTP. A new person's password and a new key
are shown once, in the answer that creates them (only their hashes are stored)."""

from __future__ import annotations

import secrets
from typing import Annotated, Literal

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from shared.access import Caller, Permission, allow
from shared.access import store as access_store
from shared.access.principal import KEY_ROLES, PERSON_ROLES
from shared.http import ApiError, AppSettings, Pool

router = APIRouter(tags=["people"], dependencies=[allow(Permission.PEOPLE, chain_only=True)])
Branches = list[Annotated[str, Field(min_length=1, max_length=100)]]


class NewPerson(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(min_length=3, max_length=320)
    role: Literal[PERSON_ROLES]  # type: ignore[valid-type]
    branches: Branches = []


class PersonChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal[PERSON_ROLES] | None = None  # type: ignore[valid-type]
    branches: Branches | None = None
    enabled: bool | None = None


class NewKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal[KEY_ROLES]  # type: ignore[valid-type]
    branches: Branches = []
    name: str | None = Field(None, max_length=200)


def _refused(exc: access_store.AccessError) -> ApiError:
    return ApiError(422, "refused", str(exc))


def _person(row: dict) -> dict:
    return {
        "email": row["email"],
        "role": row["role"],
        "branches": list(row["branches"]),
        "created_at": row["created_at"].isoformat() if row.get("created_at") else None,
        "disabled_at": row["disabled_at"].isoformat() if row.get("disabled_at") else None,
    }


@router.get("/v1/people")
async def list_people(who: Caller, pool: Pool) -> dict:
    async with pool.acquire() as conn:
        return {"items": [_person(r) for r in await access_store.list_people(conn, who.tenant_id)]}


@router.post("/v1/people", status_code=201)
async def create_person(who: Caller, pool: Pool, settings: AppSettings, new: NewPerson) -> dict:
    """A new login: ``{"email", "role", "branches"}``; the answer holds its first password,
    shown this once."""
    password = secrets.token_urlsafe(12)
    async with pool.acquire() as conn:
        try:
            await access_store.create_person(
                conn,
                who.tenant_id,
                new.email,
                new.role,
                password,
                new.branches,
                settings.default_time_zone,
            )
        except access_store.AccessError as exc:
            raise _refused(exc) from None
    return {"email": new.email, "role": new.role, "branches": new.branches, "password": password}


@router.patch("/v1/people/{email}")
async def change_person(email: str, who: Caller, pool: Pool, change: PersonChange) -> dict:
    """Change a person's role, branches, or whether they may log in (``enabled``); their
    sessions end. 404 for an e-mail that is not the tenant's."""
    async with pool.acquire() as conn:
        mine = {p["email"].lower() for p in await access_store.list_people(conn, who.tenant_id)}
        if email.strip().lower() not in mine:
            raise ApiError(404, "not_found", f"nobody with the e-mail {email}")
        if email.strip().lower() == who.subject.lower() and change.enabled is False:
            raise ApiError(409, "own_login", "you cannot disable your own login")
        row = await access_store.update_person(
            conn, email, role=change.role, branches=change.branches, enabled=change.enabled
        )
    return _person(row)


def _key(row: dict) -> dict:
    return {
        "key_id": row["key_id"],
        "name": row["name"],
        "role": row["role"],
        "branches": list(row["branches"]),
        "created_at": row["created_at"].isoformat(),
        "last_used_at": row["last_used_at"].isoformat() if row["last_used_at"] else None,
        "revoked_at": row["revoked_at"].isoformat() if row["revoked_at"] else None,
    }


@router.get("/v1/keys")
async def list_keys(who: Caller, pool: Pool) -> dict:
    async with pool.acquire() as conn:
        return {"items": [_key(r) for r in await access_store.list_keys(conn, who.tenant_id)]}


@router.post("/v1/keys", status_code=201)
async def create_key(who: Caller, pool: Pool, settings: AppSettings, new: NewKey) -> dict:
    """A new API key ``{"role", "branches", "name"}``; the key itself is in this answer only."""
    async with pool.acquire() as conn:
        try:
            made = await access_store.create_key(
                conn,
                who.tenant_id,
                new.role,
                new.branches,
                new.name,
                settings.default_time_zone,
            )
        except access_store.AccessError as exc:
            raise _refused(exc) from None
    return {"key_id": made.key_id, "key": made.key}


@router.delete("/v1/keys/{key_id}", status_code=204, response_model=None)
async def revoke_key(key_id: str, who: Caller, pool: Pool) -> Response:
    async with pool.acquire() as conn:
        mine = {k["key_id"] for k in await access_store.list_keys(conn, who.tenant_id)}
        if key_id not in mine:
            raise ApiError(404, "not_found", f"no key {key_id}")
        await access_store.revoke_key(conn, key_id)
    return Response(status_code=204)
