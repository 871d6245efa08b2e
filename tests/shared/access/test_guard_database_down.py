"""Credentials that cannot be checked because the database is down answer 503 (retry later),
not 500: a restarting PostgreSQL drops pooled connections mid-query."""

from __future__ import annotations

import asyncpg
import pytest
from starlette.requests import Request

from shared.access.guard import _lookup
from shared.http import ApiError


class _DownPool:
    def __init__(self, exc: BaseException):
        self.exc = exc

    def acquire(self):
        raise self.exc


def _request(headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "GET", "path": "/v1/portfolio", "headers": raw})


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError("connection refused"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.AdminShutdownError("terminating connection"),
        asyncpg.InterfaceError("pool is closing"),
    ],
    ids=lambda e: type(e).__name__,
)
@pytest.mark.parametrize(
    "headers",
    [{"Authorization": "Bearer some-key"}, {"Cookie": "kizuna_session=token"}],
    ids=["key", "session"],
)
async def test_a_database_that_is_down_answers_503(exc, headers):
    with pytest.raises(ApiError) as raised:
        await _lookup(_request(headers), _DownPool(exc))
    assert raised.value.status == 503
