"""The reports service as its tests run it: the consumer group of the in-process consumer
(tests/reports/conftest.py), the day its clock is pinned to, publishing customer states and
waiting until they are processed."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date

from shared.events import CUSTOMER_STATES, CustomerState, message_key
from tests.helpers import wait_for

TODAY = date(2025, 6, 30)
GROUP = f"kizuna-reports-test-{uuid.uuid4().hex[:8]}"


async def publish(producer, items) -> list:
    """Publish states (or raw (key, bytes) pairs); returns the broker's record metadata."""
    futures = []
    for item in items:
        if isinstance(item, CustomerState):
            key, value = (
                message_key(item.tenant_id, item.customer_id),
                item.model_dump_json().encode(),
            )
        else:
            key, value = item
        futures.append(await producer.send(CUSTOMER_STATES, key=key, value=value))
    return list(await asyncio.gather(*futures))


async def processed(service_pool, sent) -> None:
    """Wait until the consumer's stored offsets are past every published record."""
    need: dict[int, int] = {}
    for md in sent:
        need[md.partition] = max(need.get(md.partition, -1), md.offset)

    async def done():
        rows = await service_pool.fetch(
            "SELECT partition, next_offset FROM consumer_offsets WHERE group_id = $1 AND topic = $2",
            GROUP,
            CUSTOMER_STATES,
        )
        stored = {r["partition"]: r["next_offset"] for r in rows}
        return all(stored.get(p, 0) > offset for p, offset in need.items())

    await wait_for(done, timeout=30, what="the reports consumer to process the published states")
