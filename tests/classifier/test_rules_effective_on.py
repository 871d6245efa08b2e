"""Borders take effect on a day (migration 009, the clock): versions applied before the column
existed take the day they were stored; the clock dates a new version today, or from the
beginning for a tenant with nobody classified yet; the classifier reads them back in order."""

from __future__ import annotations

from datetime import UTC, date, datetime

import asyncpg
import pytest

from services.classifier import store
from services.classifier.clock import Clock
from shared.cpm import DEFAULT_RULES, Rules
from shared.db import migrate
from shared.settings import Settings
from shared.tenants import save_rules
from tests.helpers import scratch_database

pytestmark = pytest.mark.integration


async def test_applied_versions_take_the_day_they_were_stored(database_url):
    async with scratch_database(database_url, "rules", before="009") as url:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(
                "INSERT INTO tenants (tenant_id, time_zone, rules_version, applied_rules_version)"
                " VALUES ('t', 'Asia/Tokyo', 2, 1)"
            )
            # 2026-03-31 20:00 UTC is 2026-04-01 in Tokyo
            await conn.execute(
                "INSERT INTO tenant_rules (tenant_id, version, rules, created_at) VALUES"
                " ('t', 1, $1::jsonb, '2026-03-31T20:00:00Z'), ('t', 2, $1::jsonb, now())",
                Rules(lapse_days=300).model_dump_json(),
            )
            await migrate(url)
            rows = await conn.fetch(
                "SELECT version, effective_on FROM tenant_rules WHERE tenant_id = 't' ORDER BY 1"
            )
            assert [tuple(r) for r in rows] == [(1, date(2026, 4, 1)), (2, None)]
            borders = await store.load_borders(conn, "t")
            assert borders.on(date(2026, 3, 31)).rules == DEFAULT_RULES
            assert borders.on(date(2026, 4, 1)).rules.lapse_days == 300
        finally:
            await conn.close()


async def test_the_clock_dates_new_borders(pool, tenant):
    today = Settings(now=datetime(2026, 5, 10, 3, 0, tzinfo=UTC))
    async with pool.acquire() as conn:
        await save_rules(conn, tenant, Rules(lapse_days=200), "Asia/Tokyo")
    await Clock(today).apply_rules(pool)
    async with pool.acquire() as conn:
        # nobody classified yet: from the beginning
        assert (await store.load_borders(conn, tenant)).on(date(2000, 1, 1)).version == 1
        await conn.execute(
            "INSERT INTO customer_states (tenant_id, scope, customer_id, seq, segment,"
            " purchase_count, total_amount, clock_on, rules_version)"
            " VALUES ($1, 'all', 'C1', 1, NULL, 0, 0, '2026-05-01', 1)",
            tenant,
        )
        await save_rules(conn, tenant, Rules(lapse_days=100), "Asia/Tokyo")
    await Clock(today).apply_rules(pool)
    async with pool.acquire() as conn:
        borders = await store.load_borders(conn, tenant)
        assert (borders.on(date(2026, 5, 9)).version, borders.on(date(2026, 5, 10)).version) == (
            1,
            2,
        )
        assert (
            await conn.fetchval(
                "SELECT rules_version FROM customer_states WHERE tenant_id = $1", tenant
            )
            == 2
        )
