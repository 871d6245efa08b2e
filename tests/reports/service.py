"""The reports service as its tests run it: the consumer group of the in-process consumer
(tests/reports/conftest.py), the day its clock is pinned to, publishing customer states and
waiting until they are processed."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date

from shared.events import CUSTOMER_STATES
from tests.helpers import committed_past, keyed

TODAY = date(2025, 6, 30)
GROUP = f"kizuna-reports-test-{uuid.uuid4().hex[:8]}"


async def publish(producer, items) -> list:
    """Publish states (or raw (key, bytes) pairs); returns the broker's record metadata."""
    futures = [await producer.send(CUSTOMER_STATES, key=k, value=v) for k, v in map(keyed, items)]
    return list(await asyncio.gather(*futures))


async def processed(service_pool, sent) -> None:
    """Wait until the consumer's stored offsets are past every published record."""
    await committed_past(
        service_pool,
        GROUP,
        CUSTOMER_STATES,
        sent,
        what="the reports consumer to process the published states",
    )
