"""The ingest service: ``POST /v1/purchases`` (one event, ``{"events": [...]}`` or NDJSON) and
the CSV imports (``/v1/imports``, services/ingest/imports/).

This module is the wiring: the producer, the database pool and the import runner.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager, suppress

from fastapi import FastAPI

from shared import access, http, replay
from shared.db import create_pool, resolve_database_url
from shared.settings import get_settings

from . import purchases
from .imports import routes as imports
from .imports.runner import ImportRunner, PurchasePublisher
from .purchases import Publisher

log = logging.getLogger("kizuna.ingest")


@asynccontextmanager
async def lifespan(app: FastAPI):
    settings = get_settings()
    # The imports' progress and checkpoints, and (broker replay on) the accepted events until
    # they are stored. min_size=0: ingest starts while the database is down; readiness says so.
    database_url, embedded_db = settings.database_url, None
    if not database_url:
        database_url, embedded_db = await resolve_database_url(settings)
    app.state.pool = await create_pool(database_url, min_size=0, max_size=8)
    keep = None
    if settings.broker_replay:

        async def keep(rows, broker, marks):
            await replay.keep_sent(app.state.pool, rows, broker, marks)

    app.state.publisher = Publisher(
        settings.kafka_bootstrap_servers, settings.topic_partitions, keep
    )
    with suppress(http.ApiError):
        await app.state.publisher.get()
    await asyncio.to_thread(imports.sweep_spool)
    app.state.imports = ImportRunner(
        app.state.pool,
        PurchasePublisher(app.state.publisher.get, app.state.publisher.reset, keep),
    )
    try:
        yield
    finally:
        await app.state.imports.close()  # interrupted imports resume on the next upload
        await app.state.publisher.close()
        await app.state.pool.close()
        del embedded_db


app = FastAPI(
    title="Kizuna ingest",
    description="Send sales, returns and voids from POS and order systems.",
    lifespan=lifespan,
    dependencies=[access.GUARD],
)


async def _ready() -> dict[str, bool]:
    try:
        await app.state.publisher.get()
        broker = True
    except http.ApiError:
        broker = False
    return {"broker": broker, "database": await http.check_db(app.state.pool)}


app.include_router(purchases.router)
app.include_router(imports.router)


http.install(app, _ready, service="ingest", uploads=(imports.router.prefix,))
