"""Helpers for tests."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest

from shared.db import _with_database, database_name, migrate


async def wait_for(predicate, timeout: float = 30, interval: float = 0.1, what: str = "condition"):
    """Wait until ``await predicate()`` is truthy; no fixed sleeps in tests."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


@asynccontextmanager
async def scratch_database(
    server_url: str, label: str, before: str | None = None
) -> AsyncIterator[str]:
    """A database of its own on the test server, dropped afterwards: migrated fully, or only up
    to the migration file ``before`` (a database as an older release left it)."""
    url = _with_database(server_url, f"kizuna_{label}_{uuid.uuid4().hex[:8]}")
    await migrate(url, before=before)
    try:
        yield url
    finally:
        admin = await asyncpg.connect(_with_database(server_url, "postgres"))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database_name(url)}" WITH (FORCE)')
        finally:
            await admin.close()


def unavailable(reason: str):
    """Skip where a tool cannot be had; under CI (root, registries reachable) that is a failure:
    `make test` installs it (deploy/install-test-tools.sh)."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must have it)")
    pytest.skip(reason)
