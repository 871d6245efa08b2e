"""Accounts and access in PostgreSQL: tenants' people and keys, sessions, failed logins and the
audit log (tables: shared/migrations/011_access.sql). All the SQL of shared/access is here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from shared.tenants import ensure_tenants

from . import credentials
from .principal import KEY_ROLES, PERSON_ROLES, Principal

MIN_PASSWORD = 10


class AccessError(ValueError):
    """A request about accounts that cannot be done (unknown person, bad role, …)."""


@dataclass(frozen=True)
class NewKey:
    key_id: str
    key: str  # shown once, never stored


def _branches(branches) -> list[str]:
    cleaned = sorted({b.strip() for b in branches or () if b and b.strip()})
    if "all" in cleaned:
        raise AccessError("'all' is not a branch: leave --branch out for the whole chain")
    return cleaned


def _principal_of_person(row) -> Principal:
    return Principal(
        tenant_id=row["tenant_id"],
        kind="person",
        role=row["role"],
        branches=tuple(row["branches"]),
        subject=row["email"],
        person_id=row["person_id"],
    )


# --- keys ----------------------------------------------------------------------------------------


async def create_key(
    conn: asyncpg.Connection,
    tenant_id: str,
    role: str,
    branches=(),
    name: str | None = None,
    time_zone: str = "Asia/Tokyo",
) -> NewKey:
    """A new key for the tenant (created when new); the key itself is returned once."""
    if role not in KEY_ROLES:
        raise AccessError(f"a key's role is one of {', '.join(KEY_ROLES)}, not {role!r}")
    if not tenant_id.strip():
        raise AccessError("the tenant must not be empty")
    key, key_id = credentials.new_key(), credentials.new_key_id()
    async with conn.transaction():
        await ensure_tenants(conn, [tenant_id], time_zone)
        await conn.execute(
            "INSERT INTO api_keys (key_id, tenant_id, name, role, branches, key_hash)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            key_id,
            tenant_id,
            name or f"{role} key",
            role,
            _branches(branches),
            credentials.digest(key),
        )
    return NewKey(key_id, key)


async def key_principal(conn, key: str) -> Principal | None:
    row = await conn.fetchrow(
        "SELECT key_id, tenant_id, name, role, branches FROM api_keys"
        " WHERE key_hash = $1 AND revoked_at IS NULL",
        credentials.digest(key),
    )
    if row is None:
        return None
    return Principal(
        tenant_id=row["tenant_id"],
        kind="key",
        role=row["role"],
        branches=tuple(row["branches"]),
        subject=row["key_id"],
        name=row["name"],
    )


async def touch_keys(conn, key_ids, at: datetime) -> None:
    await conn.execute(
        "UPDATE api_keys SET last_used_at = $2 WHERE key_id = ANY($1::text[])"
        " AND (last_used_at IS NULL OR last_used_at < $2)",
        list(key_ids),
        at,
    )


async def list_keys(conn, tenant_id: str) -> list[dict]:
    rows = await conn.fetch(
        "SELECT key_id, name, role, branches, created_at, last_used_at, revoked_at"
        " FROM api_keys WHERE tenant_id = $1 ORDER BY created_at, key_id",
        tenant_id,
    )
    return [dict(r) for r in rows]


async def revoke_key(conn, key_id: str) -> bool:
    """True when the key existed (revoking twice is harmless)."""
    row = await conn.fetchrow(
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE key_id = $1"
        " RETURNING key_id",
        key_id,
    )
    return row is not None


# --- people --------------------------------------------------------------------------------------


def _check_person(role: str | None, password: str | None) -> None:
    if role is not None and role not in PERSON_ROLES:
        raise AccessError(f"a person's role is one of {', '.join(PERSON_ROLES)}, not {role!r}")
    if password is not None and len(password) < MIN_PASSWORD:
        raise AccessError(f"the password must have at least {MIN_PASSWORD} characters")


async def create_person(
    conn: asyncpg.Connection,
    tenant_id: str,
    email: str,
    role: str,
    password: str,
    branches=(),
    time_zone: str = "Asia/Tokyo",
) -> int:
    email = email.strip()
    if "@" not in email:
        raise AccessError(f"{email!r} is not an e-mail address")
    _check_person(role, password)
    password_hash = credentials.hash_password(password)
    async with conn.transaction():
        await ensure_tenants(conn, [tenant_id], time_zone)
        try:
            return await conn.fetchval(
                "INSERT INTO people (tenant_id, email, role, branches, password_hash)"
                " VALUES ($1, $2, $3, $4, $5) RETURNING person_id",
                tenant_id,
                email,
                role,
                _branches(branches),
                password_hash,
            )
        except asyncpg.UniqueViolationError:
            raise AccessError(f"{email} already has an account") from None


async def update_person(
    conn: asyncpg.Connection,
    email: str,
    *,
    role: str | None = None,
    branches=None,
    password: str | None = None,
    enabled: bool | None = None,
) -> dict:
    """Change a person's role, branches, password or whether they may log in. A change of
    role, branches or password, or disabling, ends their sessions: they log in again."""
    _check_person(role, password)
    async with conn.transaction():
        row = await conn.fetchrow(
            "UPDATE people SET role = coalesce($2, role),"
            " branches = coalesce($3, branches),"
            " password_hash = coalesce($4, password_hash),"
            " disabled_at = CASE WHEN $5::boolean IS NULL THEN disabled_at"
            "   WHEN $5 THEN NULL ELSE coalesce(disabled_at, now()) END,"
            " updated_at = now()"
            " WHERE lower(email) = lower($1)"
            " RETURNING person_id, tenant_id, email, role, branches, disabled_at",
            email.strip(),
            role,
            None if branches is None else _branches(branches),
            None if password is None else credentials.hash_password(password),
            enabled,
        )
        if row is None:
            raise AccessError(f"nobody has the e-mail {email}")
        await conn.execute("DELETE FROM sessions WHERE person_id = $1", row["person_id"])
    return dict(row)


async def list_people(conn, tenant_id: str) -> list[dict]:
    rows = await conn.fetch(
        "SELECT email, role, branches, created_at, disabled_at FROM people"
        " WHERE tenant_id = $1 ORDER BY lower(email)",
        tenant_id,
    )
    return [dict(r) for r in rows]


# --- logins and sessions -------------------------------------------------------------------------


async def person_for_login(conn, email: str):
    """The enabled person with this e-mail (with their password hash), or None."""
    return await conn.fetchrow(
        "SELECT person_id, tenant_id, email, role, branches, password_hash FROM people"
        " WHERE lower(email) = lower($1) AND disabled_at IS NULL",
        email.strip(),
    )


async def recent_failures(conn, subjects: list[str], since: datetime) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT subject, count(*) AS n FROM login_failures"
        " WHERE subject = ANY($1::text[]) AND failed_at > $2 GROUP BY subject",
        subjects,
        since,
    )
    return {r["subject"]: r["n"] for r in rows}


async def record_failure(conn, subjects: list[str], at: datetime) -> None:
    await conn.execute(
        "INSERT INTO login_failures (subject, failed_at) SELECT s, $2 FROM unnest($1::text[]) s",
        subjects,
        at,
    )


async def clear_failures(conn, subject: str, before: datetime) -> None:
    await conn.execute(
        "DELETE FROM login_failures WHERE subject = $1 OR failed_at < $2", subject, before
    )


async def open_session(
    conn, person_id: int, now: datetime, lifetime: timedelta, address: str | None
) -> str:
    token = credentials.new_session_token()
    await conn.execute(
        "INSERT INTO sessions (token_hash, person_id, created_at, expires_at, address)"
        " VALUES ($1, $2, $3, $4, $5)",
        credentials.digest(token),
        person_id,
        now,
        now + lifetime,
        address,
    )
    # Expired sessions of everyone go as new ones come: no sweeper needed.
    await conn.execute("DELETE FROM sessions WHERE expires_at < $1", now)
    return token


async def session_principal(conn, token: str, now: datetime) -> Principal | None:
    row = await conn.fetchrow(
        "SELECT p.person_id, p.tenant_id, p.email, p.role, p.branches FROM sessions s"
        " JOIN people p USING (person_id)"
        " WHERE s.token_hash = $1 AND s.expires_at > $2 AND p.disabled_at IS NULL",
        credentials.digest(token),
        now,
    )
    return None if row is None else _principal_of_person(row)


async def close_session(conn, token: str) -> None:
    await conn.execute("DELETE FROM sessions WHERE token_hash = $1", credentials.digest(token))


# --- audit ---------------------------------------------------------------------------------------


async def audit(
    conn,
    principal: Principal,
    action: str,
    subject: str,
    rows: int | None = None,
    format: str | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO audit_log (tenant_id, actor, action, subject, rows, format)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        principal.tenant_id,
        principal.actor,
        action,
        subject,
        rows,
        format,
    )


async def audit_page(conn, tenant_id: str, before: int | None, limit: int) -> list[dict]:
    rows = await conn.fetch(
        "SELECT id, at, actor, action, subject, rows, format FROM audit_log"
        " WHERE tenant_id = $1 AND ($2::bigint IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
        tenant_id,
        before,
        limit,
    )
    return [dict(r) for r in rows]


# --- erasure -------------------------------------------------------------------------------------


async def erase_customer(conn: asyncpg.Connection, tenant_id: str, customer_id: str) -> dict:
    """Remove a customer's personal data (an erasure request): the master data row, and the
    rendered texts of their alerts and alert deliveries (which may quote name and address).
    Purchases and figures stay under the customer code. Returns what was erased, by kind."""
    master = await conn.execute(
        "DELETE FROM customers WHERE tenant_id = $1 AND customer_id = $2", tenant_id, customer_id
    )
    alerts = await conn.fetch(
        "UPDATE alerts SET subject = '', body = '', details = '{}'"
        " WHERE tenant_id = $1 AND customer_id = $2 AND (subject <> '' OR body <> '')"
        " RETURNING id",
        tenant_id,
        customer_id,
    )
    deliveries = await conn.execute(
        "UPDATE alert_deliveries SET subject = NULL, body = '(erased on request)',"
        " status = CASE WHEN status IN ('pending', 'dead') THEN 'cancelled' ELSE status END,"
        " updated_at = now()"
        " WHERE alert_id = ANY($1::bigint[]) AND body <> '(erased on request)'",
        [a["id"] for a in alerts],
    )
    return {
        "master_data": int(master.split()[-1]),
        "alerts": len(alerts),
        "alert_deliveries": int(deliveries.split()[-1]),
    }
