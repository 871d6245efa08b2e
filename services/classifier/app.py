"""The classifier service: consumes purchases in batches, sweeps the lapse clock, applies new
borders, relays the outbox. HTTP only for health, readiness and metrics."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager, suppress

from fastapi import FastAPI

from shared import access, http
from shared.consumer import PgOffsetConsumer
from shared.db import create_pool
from shared.events import PURCHASES
from shared.kafka import ensure_topics
from shared.pgstats import keep_statistics
from shared.service import supervised
from shared.settings import get_settings

from . import metrics, store
from .clock import Clock, clock_loop
from .consumer import SERVICE, Classifier
from .relay import Relay
from .store import GROWN_TABLES

log = logging.getLogger("kizuna.classifier")
GROUP = "kizuna-classifier"


@asynccontextmanager
async def lifespan(app: FastAPI):
    settings = get_settings()
    pool = await create_pool(settings.database_url, max_size=6)
    await ensure_topics(settings.kafka_bootstrap_servers, settings.topic_partitions)
    classifier = Classifier(settings)
    relay = Relay(
        pool,
        settings.kafka_bootstrap_servers,
        settings.relay_batch_size,
        keep_until_consumed=bool(settings.broker_replay),
    )

    consumer = PgOffsetConsumer(
        service=SERVICE,
        bootstrap=settings.kafka_bootstrap_servers,
        group_id=GROUP,
        topics=[PURCHASES],
        pool=pool,
        handle=classifier.handle,
        # Wake the relay once the batch's outbox rows are committed: woken inside the
        # transaction it found nothing yet and napped, up to 200 ms on every change's path.
        committed=relay.wake.set,
        batch_size=settings.classifier_batch_size,
        session_timeout_ms=settings.session_timeout_ms,
        parallel=settings.classifier_parallel,
    )
    await consumer.start()
    stop = asyncio.Event()
    tasks = [
        supervised(consumer.run(stop), "consume", stop),
        supervised(relay.run(stop), "relay", stop),
        supervised(
            clock_loop(
                Clock(settings),
                pool,
                relay,
                consumer,
                stop,
                settings.sweep_interval_seconds,
                settings.sweep_max_backlog,
            ),
            "clock",
            stop,
        ),
        # Key lookups by customer need statistics; a server without autovacuum never makes them.
        supervised(keep_statistics(pool, stop, GROWN_TABLES), "statistics", stop),
    ]
    app.state.consumer, app.state.relay, app.state.pool = consumer, relay, pool
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await consumer.stop()
        with suppress(Exception):
            await relay.drain(timeout=30)
        await pool.close()


app = FastAPI(title="Kizuna classifier", lifespan=lifespan, dependencies=[access.GUARD])


async def _ready() -> dict[str, bool]:
    state = app.state
    return {
        "database": await http.check_db(state.pool),
        "consumer": state.consumer.healthy,
        "relay": state.relay.healthy,
    }


async def _observe() -> None:
    """The outbox gauges, read from the table at scrape time: they keep rising while the relay
    is stuck, which is when they matter."""
    records, age = await store.outbox_waiting(app.state.pool)
    metrics.OUTBOX_BACKLOG.set(records)
    metrics.OUTBOX_AGE.set(age)


http.install(app, _ready, service=SERVICE, observe=_observe)
