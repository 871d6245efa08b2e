"""The reports service: consumes customer states into the portfolio and its history and serves
them over HTTP: the portfolio (now and as of a day), its daily and monthly history, monthly
transition tables, segment lists (JSON, CSV), the owner's questions, RFM, an LTV projection, DM
response tables, the tenant's borders and the dashboard at ``/``. Endpoints and definitions:
services/reports/README.md."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from shared import access, http
from shared.access import privacy, session
from shared.access.headers import SecurityHeaders
from shared.consumer import PgOffsetConsumer
from shared.db import create_pool
from shared.events import CUSTOMER_STATES
from shared.kafka import ensure_topics
from shared.pgstats import keep_statistics
from shared.service import supervised
from shared.settings import get_settings

from . import store
from .api import dashboard as dashboard_api
from .api import dm, gateway, history, ltv, people, portfolio, questions, rfm, rules, segments
from .consumer import GROUP, SERVICE, on_customer_states

log = logging.getLogger("kizuna.reports")
STATIC = Path(__file__).parent / "static"
# Transactions per fetched batch, over disjoint partitions (so disjoint customers): while one
# waits for PostgreSQL, the other folds its states. Under the latency feed at 2,000 ev/s one at a
# time fell behind (5,000 states unread after 30 s); two kept up. The aggregate rows both touch
# are upserted in one global order (table, then key), so they wait for each other, never deadlock.
PARALLEL = 2


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    pool = await create_pool(settings.database_url, max_size=8)
    app.state.pool, app.state.consumer, app.state.tasks = pool, None, []
    stop = asyncio.Event()
    if settings.kafka_bootstrap_servers:
        await ensure_topics(settings.kafka_bootstrap_servers, settings.topic_partitions)
        consumer = PgOffsetConsumer(
            service=SERVICE,
            bootstrap=settings.kafka_bootstrap_servers,
            group_id=GROUP,
            topics=[CUSTOMER_STATES],
            pool=pool,
            handle=on_customer_states,
            batch_size=settings.consumer_batch_size,
            session_timeout_ms=settings.session_timeout_ms,
            parallel=PARALLEL,
        )
        await consumer.start()
        app.state.consumer = consumer
        app.state.tasks = [
            supervised(consumer.run(stop), "consume", stop),
            supervised(keep_statistics(pool, stop, store.GROWN_TABLES), "statistics", stop),
        ]
    else:
        # `kizuna serve reports` may run read-only on a database another stack filled.
        log.warning("no KAFKA_BOOTSTRAP_SERVERS: serving the stored portfolio without consuming")
    try:
        async with gateway.clients(settings) as app.state.gateway:
            yield
    finally:
        stop.set()
        await asyncio.gather(*app.state.tasks, return_exceptions=True)
        if app.state.consumer is not None:
            await app.state.consumer.stop()
        await pool.close()


app = FastAPI(
    title="Kizuna reports",
    description="顧客ポートフォリオ: the live portfolio, segment lists and the dashboard.",
    lifespan=lifespan,
    dependencies=[access.GUARD],
)


app.add_middleware(SecurityHeaders)


app.include_router(session.router)


app.include_router(privacy.router)


async def _ready() -> dict[str, bool]:
    state = app.state
    checks = {"database": await http.check_db(state.pool)}
    if state.consumer is not None:
        checks["consumer"] = state.consumer.healthy and not any(t.done() for t in state.tasks)
    return checks


http.install(app, _ready, service=SERVICE)


app.include_router(dashboard_api.router)


app.include_router(gateway.router)
app.include_router(portfolio.router)
app.include_router(history.router)
app.include_router(segments.router)
app.include_router(questions.router)
app.include_router(rfm.router)
app.include_router(ltv.router)
app.include_router(dm.router)
app.include_router(rules.router)


app.include_router(people.router)


@app.get("/", include_in_schema=False)
async def dashboard() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")


@app.get("/login", include_in_schema=False)
async def login_page() -> FileResponse:
    return FileResponse(STATIC / "login.html", media_type="text/html; charset=utf-8")


app.mount("/static", StaticFiles(directory=STATIC), name="static")
