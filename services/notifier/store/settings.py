"""Notification settings per tenant."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import asyncpg

from ..domain.settings import DEFAULT_NOTIFICATION_SETTINGS, NotificationSettings


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
