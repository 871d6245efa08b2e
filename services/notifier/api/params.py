"""What the notifier's routers share: today in the tenant's zone."""

from __future__ import annotations

from datetime import date

import asyncpg

from shared.settings import Settings, today_in

from .. import store


async def tenant_today(conn: asyncpg.Connection, tenant_id: str, settings: Settings) -> date:
    zones = await store.time_zones(conn, [tenant_id], settings.default_time_zone)
    return today_in(zones[tenant_id], settings)
