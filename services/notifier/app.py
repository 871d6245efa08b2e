"""The notifier service: consumes segment changes into follow-up tasks, alerts, sequence steps
and comebacks; delivers alerts by e-mail and webhook; warns early about customers whose silence
is already long for them; serves the staff's task list. (services/notifier/README.md)

    GET  /v1/followups?status=open|done|cancelled&scope=all|{branch_id}&due=today&reason=&limit=&cursor=
    POST /v1/followups/{id}/done
    GET  /v1/notifications/settings          PUT /v1/notifications/settings
    GET  /v1/notifications/deliveries?status=pending|sent|dead|cancelled|digested
    POST /v1/notifications/deliveries/{id}/retry
    GET  /v1/alerts?scope=&kind=lapsed|at_risk&since=&limit=
    GET  /v1/sequences                        GET|PUT|DELETE /v1/sequences/{segment}
    GET  /v1/comebacks?scope=&from=YYYY-MM-DD&to=YYYY-MM-DD
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI

from shared import access, http
from shared.consumer import PgOffsetConsumer
from shared.db import create_pool
from shared.events import SEGMENT_CHANGES
from shared.kafka import ensure_topics
from shared.service import supervised
from shared.settings import Settings, get_settings

from .api import comebacks, followups, notifications, sequences
from .consumer import SERVICE, Notifier
from .workers import AtRiskScanner, DeliveryWorker

log = logging.getLogger("kizuna.notifier")
GROUP = "kizuna-notifier"


def build_consumer(pool: asyncpg.Pool, settings: Settings) -> PgOffsetConsumer:
    """The notifier's consumer group member (also what the integration tests run)."""
    return PgOffsetConsumer(
        service=SERVICE,
        bootstrap=settings.kafka_bootstrap_servers,
        group_id=GROUP,
        topics=[SEGMENT_CHANGES],
        pool=pool,
        handle=Notifier(settings).handle,
        batch_size=settings.consumer_batch_size,
        session_timeout_ms=settings.session_timeout_ms,
    )


@asynccontextmanager
async def lifespan(app: FastAPI):
    settings = get_settings()
    pool = await create_pool(settings.database_url, max_size=6)
    await ensure_topics(settings.kafka_bootstrap_servers, settings.topic_partitions)
    consumer = build_consumer(pool, settings)
    await consumer.start()
    worker, scanner = DeliveryWorker(pool, settings), AtRiskScanner(pool, settings)
    stop = asyncio.Event()
    tasks = [
        supervised(consumer.run(stop), "consume", stop),
        supervised(worker.run(stop), "deliver", stop),
        supervised(scanner.run(stop), "at-risk scan", stop),
    ]
    app.state.pool, app.state.consumer, app.state.tasks = pool, consumer, tasks
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await worker.close()
        await consumer.stop()
        await pool.close()


app = FastAPI(title="Kizuna notifier", lifespan=lifespan, dependencies=[access.GUARD])
app.include_router(followups.router)
app.include_router(notifications.router)
app.include_router(sequences.router)
app.include_router(comebacks.router)


async def _ready() -> dict[str, bool]:
    state = app.state
    consumer = getattr(state, "consumer", None)
    tasks = getattr(state, "tasks", [])
    return {
        "database": await http.check_db(state.pool) if hasattr(state, "pool") else False,
        "consumer": bool(consumer and consumer.healthy),
        "workers": bool(tasks) and not any(t.done() for t in tasks),
    }


http.install(app, _ready, service=SERVICE)
