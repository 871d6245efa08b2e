"""A request that meets PostgreSQL restarting gets 503 with a clear code, not a 500: nothing was
done, and the caller should ask again (ingest's feeders resend on 503)."""

from __future__ import annotations

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from shared import http


@pytest.mark.parametrize(
    "failure",
    [
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        ConnectionRefusedError(111, "Connect call failed"),
    ],
    ids=["starting-up", "connection-closed", "refused"],
)
async def test_database_trouble_is_503_database_unavailable(failure):
    app = FastAPI()

    @app.get("/thing")
    async def thing():
        raise failure

    async def ready():
        return {}

    http.install(app, ready, service="test")
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://kizuna") as c:
        response = await c.get("/thing")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "database_unavailable"
    assert response.headers["retry-after"] == "1"
