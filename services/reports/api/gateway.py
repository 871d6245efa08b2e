"""The dashboard's way to the notifier (tasks, alerts, sequences, notification settings) and
to ingest (CSV imports): ``/notifier/v1/…`` and ``/ingest/v1/…`` on reports are forwarded as
they are, credentials included. The browser stays on one origin, so the session cookie and its
CSRF token work without CORS; each service still checks the caller itself."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from shared.access import allow
from shared.http import ApiError
from shared.settings import Settings

# Signed-in callers only (answered here, before a hop); the service behind checks the rest.
router = APIRouter(include_in_schema=False, dependencies=[allow()])

# What a caller's request carries that the service behind must see, and what of its answer the
# browser needs; nothing else crosses (no Host, no hop-by-hop headers).
REQUEST_HEADERS = (
    "authorization",
    "cookie",
    "x-csrf-token",
    "content-type",
    "content-length",
    "accept",
)
RESPONSE_HEADERS = ("content-type", "content-disposition", "set-cookie", "location")
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
TIMEOUT = httpx.Timeout(60, connect=5)


def _base(service: str, settings: Settings) -> str:
    if service == "notifier":
        return settings.notifier_url or f"http://{settings.host}:{settings.notifier_port}"
    return settings.ingest_url or f"http://{settings.host}:{settings.ingest_port}"


@asynccontextmanager
async def clients(settings: Settings) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """One client (a pool of keep-alive connections) per service behind the gateway, for the
    app's lifetime (reports' lifespan): a request reuses a connection instead of opening one."""
    async with (
        httpx.AsyncClient(base_url=_base("notifier", settings), timeout=TIMEOUT) as notifier,
        httpx.AsyncClient(base_url=_base("ingest", settings), timeout=TIMEOUT) as ingest,
    ):
        yield {"notifier": notifier, "ingest": ingest}


async def _forward(service: str, path: str, request: Request) -> StreamingResponse:
    if not path.startswith("v1/"):
        raise ApiError(404, "not_found", f"no {service} path {path!r}")
    client: httpx.AsyncClient = request.app.state.gateway[service]
    headers = {k: v for k, v in request.headers.items() if k.lower() in REQUEST_HEADERS}
    outgoing = client.build_request(
        request.method,
        "/" + path,
        params=request.query_params,
        headers=headers,
        content=request.stream() if request.method in ("POST", "PUT", "PATCH") else None,
    )
    try:
        answer = await client.send(outgoing, stream=True)
    except httpx.HTTPError as exc:
        raise ApiError(
            503, "service_unavailable", f"the {service} service does not answer: {exc}"
        ) from None

    return StreamingResponse(
        answer.aiter_raw(),
        status_code=answer.status_code,
        headers={k: v for k, v in answer.headers.items() if k.lower() in RESPONSE_HEADERS},
        background=BackgroundTask(answer.aclose),
    )


@router.api_route("/notifier/{path:path}", methods=METHODS)
async def to_notifier(path: str, request: Request) -> StreamingResponse:
    return await _forward("notifier", path, request)


@router.api_route("/ingest/{path:path}", methods=METHODS)
async def to_ingest(path: str, request: Request) -> StreamingResponse:
    return await _forward("ingest", path, request)
