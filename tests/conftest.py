"""Test fixtures: a real Kafka-protocol broker (Tansu, started here on a free port) and a real
PostgreSQL (the local server when it answers, else an embedded one), one fresh database per run.

Services under test read their configuration from the environment, so the fixtures set
``DATABASE_URL`` and ``KAFKA_BOOTSTRAP_SERVERS`` for the whole session.
"""

from __future__ import annotations

import os
import uuid

import asyncpg
import pytest

from shared import service
from shared.db import resolve_database_url
from shared.embedded import EmbeddedBroker
from shared.kafka import ensure_topics, new_producer
from shared.settings import Settings, get_settings
from tests.helpers import TMP, api_key, free_port, scratch_database

service.exit_on_failure = False  # services run in-process here: fail the test, not pytest


@pytest.fixture(scope="session")
async def database_url():
    """A fresh, migrated database for this test run, dropped afterwards."""
    TMP.mkdir(parents=True, exist_ok=True)
    base = Settings(data_dir=TMP, database_url=os.environ.get("DATABASE_URL"))
    server_url, embedded = await resolve_database_url(base)
    async with scratch_database(server_url, "test") as url:
        os.environ["DATABASE_URL"] = url
        get_settings.cache_clear()
        yield url
    del embedded


@pytest.fixture(scope="session")
async def broker():
    """The embedded broker over TCP, with Kizuna's topics created."""
    TMP.mkdir(parents=True, exist_ok=True)
    b = EmbeddedBroker(free_port(), log_file=TMP / "tansu.log")
    await b.start()
    os.environ["KAFKA_BOOTSTRAP_SERVERS"] = b.bootstrap
    get_settings.cache_clear()
    await ensure_topics(b.bootstrap, 4)
    yield b
    b.stop()


@pytest.fixture
async def pool(database_url):
    p = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    yield p
    await p.close()


@pytest.fixture(scope="module")
async def service_pool(database_url, broker):
    """A service's pool for a module, as its lifespan opens one: the module's consumer and HTTP
    app share it."""
    p = await asyncpg.create_pool(database_url, min_size=1, max_size=6)
    yield p
    await p.close()


@pytest.fixture(scope="module")
async def producer(broker):
    """A producer on the test broker for a module."""
    p = new_producer(broker.bootstrap)
    await p.start()
    yield p
    await p.stop()


@pytest.fixture
def tenant() -> str:
    """A tenant of its own per test: tests share one database without seeing each other."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def auth(database_url, tenant) -> dict[str, str]:
    """An admin API key of the test's tenant, as request headers (tests/helpers.py has keys of
    other roles and branches, and logins)."""
    return await api_key(database_url, tenant)
