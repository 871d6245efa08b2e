"""Helpers for tests."""

from __future__ import annotations

import asyncio


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
