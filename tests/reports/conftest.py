"""The reports service's fixtures, shared by its test modules: its consumer run in-process on
the module's pool (one consumer group for all of them, tests/reports/service.py) and the HTTP
API over ASGI."""

from __future__ import annotations

import asyncio

import pytest

from services.reports.app import app
from services.reports.consumer import SERVICE, on_customer_states
from shared.events import CUSTOMER_STATES
from shared.settings import get_settings
from tests.helpers import asgi_client, consuming
from tests.reports.service import GROUP, TODAY


@pytest.fixture(scope="module")
async def consumer(broker, service_pool):
    """The reports consumer for the whole module (a group join takes ~3 s), once assigned."""
    async with consuming(
        service_pool,
        broker.bootstrap,
        CUSTOMER_STATES,
        on_customer_states,
        service=SERVICE,
        group=GROUP,
        session_timeout_ms=get_settings().session_timeout_ms,
    ) as running:
        await asyncio.wait_for(running.consumer.assigned_once.wait(), 30)
        yield running.consumer, running.task


@pytest.fixture
async def client(service_pool, consumer, monkeypatch):
    """The reports app over ASGI with the module's pool and consumer, the clock pinned."""
    monkeypatch.setenv("KIZUNA_NOW", f"{TODAY.isoformat()}T12:00:00+09:00")
    get_settings.cache_clear()
    app.state.pool = service_pool
    app.state.consumer, task = consumer
    app.state.tasks = [task]
    async with asgi_client(app, "http://reports") as c:
        yield c
    get_settings.cache_clear()
