"""``/v1/rules``: the tenant's borders, versioned."""

from __future__ import annotations

from fastapi import APIRouter

from shared.access import Permission, TenantId, allow
from shared.cpm import Rules
from shared.http import AppSettings, Pool
from shared.tenants import load_tenant, save_rules

from .. import store

router = APIRouter()


@router.get("/v1/rules", tags=["rules"], dependencies=[allow(Permission.REPORTS)])
async def get_rules(pool: Pool, tenant_id: TenantId, settings: AppSettings) -> dict:
    """The tenant's current borders (the published defaults, version 0, until set)."""
    async with pool.acquire() as conn:
        tenant = await load_tenant(conn, tenant_id, settings.default_time_zone)
        applied = await store.applied_rules_version(conn, tenant_id)
    return {
        "version": tenant.rules_version,
        "applied_version": applied,
        "rules": tenant.rules.model_dump(mode="json"),
    }


@router.put(
    "/v1/rules",
    tags=["rules"],
    dependencies=[allow(Permission.SETTINGS, chain_only=True)],
)
async def put_rules(pool: Pool, tenant_id: TenantId, settings: AppSettings, rules: Rules) -> dict:
    """Store a new version of the borders; the classifier re-classifies every customer."""
    async with pool.acquire() as conn:
        version = await save_rules(conn, tenant_id, rules, settings.default_time_zone)
    return {"version": version, "rules": rules.model_dump(mode="json")}
