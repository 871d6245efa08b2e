"""The notifier's fixtures, shared by its test modules: the service's pool, its consumer run
in-process, a producer to publish segment changes and wait until they are processed, the HTTP
API over ASGI, and ``apply`` for feeding changes straight to the pipeline."""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from services.notifier.app import GROUP, app, build_consumer
from services.notifier.consumer import Notifier
from shared.events import SEGMENT_CHANGES, SegmentChange, message_key
from shared.http import get_pool
from shared.kafka import new_producer
from shared.settings import get_settings
from tests.helpers import RunningConsumer, wait_for
from tests.notifier.changes import change


@pytest.fixture(scope="module")
def settings():
    """The service's settings; a short session: the embedded broker makes a joining member wait
    about half of it, and a rejoin after a restart for about the whole of it. A module may
    override this fixture (the delivery tests add their SMTP server)."""
    return get_settings().model_copy(update={"session_timeout_ms": 2000})


@pytest.fixture(scope="module")
async def service_pool(database_url, broker):
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=6)
    yield pool
    await pool.close()


@pytest.fixture(scope="module")
async def service(service_pool, settings):
    """The notifier's consumer, consuming ``kizuna.segment-changes.v1`` as the service does."""
    running = RunningConsumer(lambda: build_consumer(service_pool, settings))
    await running.start()
    yield running
    await running.stop()


@pytest.fixture(scope="module")
async def producer(broker):
    p = new_producer(broker.bootstrap)
    await p.start()
    yield p
    await p.stop()


@pytest.fixture
async def client(service_pool, tenant, auth):
    """The notifier's HTTP API as ``tenant`` (an admin key of it)."""
    app.dependency_overrides[get_pool] = lambda: service_pool
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://notifier",
        headers=auth,
    ) as c:
        yield c
    app.dependency_overrides.pop(get_pool, None)


@pytest.fixture
async def apply(service_pool):
    """Changes applied by the pipeline in one transaction, without the broker."""

    async def run(*changes, notifier=None):
        notifier = notifier or Notifier(get_settings())
        async with service_pool.acquire() as conn, conn.transaction():
            return await notifier.apply(conn, list(changes))

    return run


def _noop() -> SegmentChange:
    """A change that asks nothing of the notifier (tenant drain has no sequences)."""
    return change(
        "drain", "noop", 1, "first_active", "fledgling_active", "purchase", home_branch_id=None
    )


@pytest.fixture
def publish(producer, service, service_pool):
    """Publish changes (or raw bytes) keyed ``tenant:customer``; then wait until the consumer
    has committed past every one of them, so a test asserts on finished work, not on time.
    ``drain``: first a change that asks nothing into every partition, so that whatever other
    modules published on the shared broker is behind the consumer too."""

    async def run(*items: SegmentChange | tuple[bytes, bytes], drain: bool = False) -> None:
        last: dict[int, int] = {}
        if drain:
            for partition in sorted(await producer.partitions_for(SEGMENT_CHANGES)):
                sent = await producer.send_and_wait(
                    SEGMENT_CHANGES, _noop().model_dump_json().encode(), partition=partition
                )
                last[sent.partition] = sent.offset
        for item in items:
            if isinstance(item, SegmentChange):
                key, value = (
                    message_key(item.tenant_id, item.customer_id),
                    item.model_dump_json().encode(),
                )
            else:
                key, value = item
            sent = await producer.send_and_wait(SEGMENT_CHANGES, value, key=key)
            last[sent.partition] = max(last.get(sent.partition, -1), sent.offset)

        async def processed() -> bool:
            rows = await service_pool.fetch(
                "SELECT partition, next_offset FROM consumer_offsets"
                " WHERE group_id = $1 AND topic = $2",
                GROUP,
                SEGMENT_CHANGES,
            )
            done = {r["partition"]: r["next_offset"] for r in rows}
            return all(done.get(p, 0) > offset for p, offset in last.items())

        await wait_for(processed, timeout=60, what="the notifier to process what was published")

    return run
