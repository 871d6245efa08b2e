"""Templates greet customers by the name from the customer master data (CSV import)."""

import pytest

from services.notifier import store

pytestmark = pytest.mark.integration


async def test_names_come_from_the_customer_master(pool, tenant):
    await pool.execute(
        "INSERT INTO customers (tenant_id, customer_id, name) VALUES ($1, 'C1', '山田 花子'), ($1, 'C2', '')",
        tenant,
    )
    async with pool.acquire() as conn:
        names = await store.customer_names(conn, tenant, ["C1", "C2", "C3"])
    assert names == {"C1": "山田 花子"}  # no name, or no master row: the template shows the id
