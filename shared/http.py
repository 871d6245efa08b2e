"""What every service's HTTP side shares: health, readiness, metrics, error shape (one handler
for invalid requests: a handler declares its body as a pydantic model), and the dependencies
handlers declare (``Pool``, ``AppSettings``): the lifespan owns the pool, settings are read once
at start-up, and a handler gets both as parameters. Who is asking (``Caller``, ``TenantId``):
shared/access."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Annotated, Any

import asyncpg
import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared import metrics
from shared.settings import Settings, get_settings

log = logging.getLogger("kizuna.http")


class ApiError(Exception):
    """An error with a status and a body ``{"error": {"code", "message", ...}}``."""

    def __init__(self, status: int, code: str, message: str, headers=None, **details):
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details
        self.headers = headers


def error_body(code: str, message: str, **details) -> dict:
    return {"error": {"code": code, "message": message, **details}}


async def get_pool(request: Request) -> asyncpg.Pool:
    """The service's pool, created by its lifespan (tests override this dependency)."""
    # async: FastAPI runs a plain ``def`` dependency in its thread pool, a hand-off per request.
    return request.app.state.pool


async def app_settings() -> Settings:
    return get_settings()


Pool = Annotated[asyncpg.Pool, Depends(get_pool)]
AppSettings = Annotated[Settings, Depends(app_settings)]


def _size(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n:,} bytes"


class BodyTooLarge(StarletteHTTPException):
    """A request body passed its limit while it streamed in (413)."""

    def __init__(self, limit: int, path: str):
        self.limit, self.path = limit, path
        super().__init__(413, f"the request body is larger than {_size(limit)}")

    def body(self) -> dict:
        return error_body(
            "body_too_large",
            f"the request body to {self.path} is larger than {_size(self.limit)}; "
            "nothing of it was accepted",
            limit_bytes=self.limit,
        )


class BodyLimit:
    """ASGI middleware: refuses a request body larger than its limit with 413.

    A declared ``Content-Length`` over the limit is refused before anything is read; a body
    without one (chunked) is counted as it streams and refused as soon as it passes the limit:
    the handler's next read raises :class:`BodyTooLarge`, so no handler ever holds more than the
    limit. Paths under an ``uploads`` prefix (CSV files) have the larger ``upload_limit``."""

    def __init__(
        self, app, limit: int, upload_limit: int | None = None, uploads: Sequence[str] = ()
    ):
        self.app, self.limit = app, limit
        self.upload_limit = upload_limit or limit
        self.uploads = tuple(uploads)

    def limit_for(self, path: str) -> int:
        return self.upload_limit if path.startswith(self.uploads) and self.uploads else self.limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        limit = self.limit_for(path)
        declared = next((v for k, v in scope.get("headers", ()) if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _send_too_large(send, BodyTooLarge(limit, path))
            return
        received = 0
        started = False

        async def counted_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit, path)
            return message

        async def watched_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge as exc:  # raised where no exception handler saw it
            if started:
                raise
            await _send_too_large(send, exc)


async def _send_too_large(send, exc: BodyTooLarge) -> None:
    body = orjson.dumps(exc.body())
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            # the rest of the body is not read: the connection cannot carry another request
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def problems(errors: Iterable[Mapping[str, Any]], fields: Iterable[str] = ()) -> list[dict]:
    """Validation errors as ``{"field", "reason"}``: the field's path (without the ``body``
    FastAPI puts first, so a template's ``body`` field is still named), pydantic's reason without its "Value error, " prefix. An error of the
    whole body (fields that contradict each other) is attributed to the field of ``fields`` its
    message names first (on a tie the longer name: lapse_days_by_tier, not lapse_days)."""
    fields = list(fields)
    out = []
    for error in errors:
        loc = [str(p) for p in error["loc"]]
        loc = loc[1:] if loc[:1] == ["body"] else loc  # a field named body keeps its name
        reason = error["msg"].removeprefix("Value error, ")
        if not loc:
            named = [(reason.find(f), f) for f in fields if f in reason]
            loc = [min(named, key=lambda n: (n[0], -len(n[1])))[1]] if named else []
        out.append({"field": ".".join(loc) or "body", "reason": reason})
    return out


def _body_fields(request: Request) -> list[str]:
    """The field names of the route's body model, if it has one."""
    route = request.scope.get("route")
    field = getattr(route, "body_field", None)
    model = getattr(getattr(field, "field_info", None), "annotation", None)
    args = getattr(model, "__args__", None)  # Model | None
    for candidate in (model, *(args or ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return list(candidate.model_fields)
    return []


def install(
    app: FastAPI,
    ready: Callable[[], Awaitable[dict[str, bool]]],
    *,
    service: str,
    observe: Callable[[], Awaitable[None]] | None = None,
    uploads: Sequence[str] = (),
) -> None:
    """Add /healthz, /readyz, /metrics, the AsyncAPI document (/asyncapi for people,
    /asyncapi.json for tools), the JSON error shape and the body limits (413, see
    :class:`BodyLimit`; ``uploads`` are the path prefixes that take files) to a service's app.
    ``observe`` sets the service's gauges that are read at scrape time."""
    settings = get_settings()
    app.add_middleware(
        BodyLimit,
        limit=settings.max_body_bytes,
        upload_limit=settings.max_upload_bytes,
        uploads=uploads,
    )

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

    # PostgreSQL restarting or unreachable: nothing was done, and asking again later is right.
    for unavailable in (
        asyncpg.PostgresConnectionError,
        asyncpg.CannotConnectNowError,
        asyncpg.InterfaceError,
        ConnectionError,
    ):

        @app.exception_handler(unavailable)
        async def _database_unavailable(_: Request, exc: Exception) -> JSONResponse:
            return JSONResponse(
                error_body(
                    "database_unavailable",
                    "the database cannot be reached just now; nothing was done. Try again.",
                    cause=str(exc) or type(exc).__name__,
                ),
                status_code=503,
                headers={"retry-after": "1"},
            )

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.code, exc.message, **exc.details),
            status_code=exc.status,
            headers=exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            error_body(
                "invalid_request",
                "the request is not valid",
                problems=problems(exc.errors(), _body_fields(request)),
            ),
            status_code=422,
        )

    @app.exception_handler(BodyTooLarge)
    async def _too_large(_: Request, exc: BodyTooLarge) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=413, headers={"connection": "close"})

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
