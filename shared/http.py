"""What every service's HTTP side shares: health, readiness, metrics, error shape, and the
dependencies handlers declare (``Pool``, ``TenantId``, ``AppSettings``): the lifespan owns the
pool, settings are read once at start-up, and a handler gets both as parameters."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated

import asyncpg
from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared import metrics
from shared.settings import Settings, get_settings

log = logging.getLogger("kizuna.http")


class ApiError(Exception):
    """An error with a status and a body ``{"error": {"code", "message", ...}}``."""

    def __init__(self, status: int, code: str, message: str, **details):
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


def error_body(code: str, message: str, **details) -> dict:
    return {"error": {"code": code, "message": message, **details}}


async def tenant_header(
    x_kizuna_tenant: Annotated[
        str | None, Header(description="Tenant until accounts exist")
    ] = None,
) -> str:
    # async: FastAPI runs a plain ``def`` dependency in its thread pool, a hand-off per request.
    return (x_kizuna_tenant or get_settings().default_tenant).strip()


async def get_pool(request: Request) -> asyncpg.Pool:
    """The service's pool, created by its lifespan (tests override this dependency)."""
    # async: FastAPI runs a plain ``def`` dependency in its thread pool, a hand-off per request.
    return request.app.state.pool


async def app_settings() -> Settings:
    return get_settings()


Pool = Annotated[asyncpg.Pool, Depends(get_pool)]
TenantId = Annotated[str, Depends(tenant_header)]
AppSettings = Annotated[Settings, Depends(app_settings)]


def install(
    app: FastAPI,
    ready: Callable[[], Awaitable[dict[str, bool]]],
    *,
    service: str,
    observe: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Add /healthz, /readyz, /metrics, the AsyncAPI document (/asyncapi for people,
    /asyncapi.json for tools) and the JSON error shape to a service's app. ``observe`` sets the
    service's gauges that are read at scrape time."""

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    async def readyz() -> Response:
        checks = await ready()
        status = 200 if all(checks.values()) else 503
        return JSONResponse({"ready": status == 200, "checks": checks}, status_code=status)

    @app.get("/metrics", tags=["ops"])
    async def metrics_endpoint() -> Response:
        # Readiness as a metric, so an alert can say which check of which service fails.
        for check, ok in (await ready()).items():
            metrics.READY.labels(service, check).set(1 if ok else 0)
        if observe is not None:
            try:
                await observe()
            except Exception:  # noqa: BLE001 - a scrape must not fail on a gauge it cannot read
                log.warning("%s: reading the scrape-time gauges failed", service, exc_info=True)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/asyncapi.json", tags=["ops"], summary="AsyncAPI document of the Kafka topics")
    async def asyncapi_json() -> JSONResponse:
        from shared.events import asyncapi  # faststream's generator: imported when asked

        return JSONResponse(asyncapi.document())

    @app.get("/asyncapi", tags=["ops"], summary="The Kafka topics, for people (AsyncAPI)")
    async def asyncapi_html() -> HTMLResponse:
        from shared.events import asyncapi

        return HTMLResponse(asyncapi.html())

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.code, exc.message, **exc.details), status_code=exc.status
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"field": ".".join(str(p) for p in e["loc"] if p != "body"), "reason": e["msg"]}
            for e in exc.errors()
        ]
        return JSONResponse(
            error_body("invalid_request", "the request is not valid", problems=problems),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body("http_error", str(exc.detail)), status_code=exc.status_code)


async def check_db(pool) -> bool:
    try:
        async with pool.acquire(timeout=2) as conn:
            await conn.fetchval("SELECT 1")
        return True
    except Exception:  # noqa: BLE001 - readiness reports any failure as not ready
        return False
