"""Customers' names for texts, from ingest's view ``customer_details``."""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg


async def customer_names(
    conn: asyncpg.Connection, tenant_id: str, customer_ids: Iterable[str]
) -> dict[str, str]:
    """Customers' names for templates, from the customer master data (`kizuna import
    customers`); a customer without one is absent, and templates show the id instead."""
    rows = await conn.fetch(
        "SELECT customer_id, name FROM customer_details"
        " WHERE tenant_id = $1 AND customer_id = ANY($2::text[])"
        " AND name IS NOT NULL AND name <> ''",
        tenant_id,
        list(customer_ids),
    )
    return {r["customer_id"]: r["name"] for r in rows}
