"""Tenants: time zone and versioned CPM borders (storage)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from shared.cpm import DEFAULT_RULES, Rules


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    time_zone: str
    rules_version: int
    rules: Rules


async def ensure_tenants(conn: asyncpg.Connection, tenant_ids, time_zone: str) -> None:
    await conn.execute(
        "INSERT INTO tenants (tenant_id, time_zone) SELECT t, $2 FROM unnest($1::text[]) t"
        " ON CONFLICT (tenant_id) DO NOTHING",
        sorted(set(tenant_ids)),
        time_zone,
    )


async def load_tenant(conn: asyncpg.Connection, tenant_id: str, default_zone: str) -> Tenant:
    row = await conn.fetchrow(
        "SELECT t.time_zone, t.rules_version, r.rules::text AS rules FROM tenants t"
        " LEFT JOIN tenant_rules r ON r.tenant_id = t.tenant_id AND r.version = t.rules_version"
        " WHERE t.tenant_id = $1",
        tenant_id,
    )
    if row is None:
        return Tenant(tenant_id, default_zone, 0, DEFAULT_RULES)
    rules = Rules.model_validate_json(row["rules"]) if row["rules"] else DEFAULT_RULES
    return Tenant(tenant_id, row["time_zone"], row["rules_version"], rules)


async def save_rules(
    conn: asyncpg.Connection, tenant_id: str, rules: Rules, default_zone: str
) -> int:
    """Store a new version of a tenant's borders; the classifier re-classifies on seeing it."""
    async with conn.transaction():
        await ensure_tenants(conn, [tenant_id], default_zone)
        version = await conn.fetchval(
            "UPDATE tenants SET rules_version = rules_version + 1 WHERE tenant_id = $1"
            " RETURNING rules_version",
            tenant_id,
        )
        await conn.execute(
            "INSERT INTO tenant_rules (tenant_id, version, rules) VALUES ($1, $2, $3::jsonb)",
            tenant_id,
            version,
            rules.model_dump_json(),
        )
    return version
