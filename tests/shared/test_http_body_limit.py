"""Request bodies over their limit get 413 while they stream in: never read whole."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI, Request
from pydantic import BaseModel

from shared import http
from shared.settings import get_settings

CHUNK = 64 << 10


class Item(BaseModel):
    name: str


def small_app() -> FastAPI:
    app = FastAPI()

    @app.post("/raw")
    async def raw(request: Request) -> dict:
        return {"size": len(await request.body())}

    @app.post("/model")
    async def model(item: Item) -> dict:
        return {"name": item.name}

    @app.post("/v1/imports/sales")
    async def upload(request: Request) -> dict:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
        return {"size": size}

    async def ready():
        return {}

    http.install(app, ready, service="test", uploads=("/v1/imports",))
    return app


@pytest.fixture
def limits(monkeypatch):
    monkeypatch.setenv("KIZUNA_MAX_BODY_BYTES", str(256 << 10))
    monkeypatch.setenv("KIZUNA_MAX_UPLOAD_BYTES", str(1 << 20))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


class Feed:
    """A chunked body (no Content-Length) that counts how much of it was pulled."""

    def __init__(self, chunks: int):
        self.chunks, self.pulled = chunks, 0

    async def __aiter__(self):
        for _ in range(self.chunks):
            self.pulled += 1
            yield b"x" * CHUNK


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://kizuna")


@pytest.mark.parametrize("path", ["/raw", "/model"])
async def test_a_streamed_body_is_refused_once_it_passes_the_limit(limits, path):
    feed = Feed(chunks=1000)  # 64 MB offered
    async with client(small_app()) as c:
        response = await c.post(path, content=feed, headers={"content-type": "application/json"})
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "body_too_large"
    assert error["limit_bytes"] == 256 << 10
    assert path in error["message"] and "256 KiB" in error["message"]
    # refused at the chunk that passed 256 KiB, not after the whole body
    assert feed.pulled == 256 // 64 + 1


async def test_a_declared_length_over_the_limit_is_refused_before_reading(limits):
    async with client(small_app()) as c:
        response = await c.post("/raw", content=b"x" * ((256 << 10) + 1))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"


async def test_bodies_within_the_limits_pass_and_uploads_have_the_larger_one(limits):
    async with client(small_app()) as c:
        assert (await c.post("/raw", content=b"x" * (256 << 10))).json() == {"size": 256 << 10}
        upload = await c.post("/v1/imports/sales", content=Feed(chunks=16))  # 1 MiB
        assert upload.json() == {"size": 1 << 20}
        too_big = await c.post("/v1/imports/sales", content=Feed(chunks=17))
        assert too_big.status_code == 413
        assert "1 MiB" in too_big.json()["error"]["message"]


async def test_ingest_refuses_a_huge_purchase_body_unread():
    from services.ingest.app import app  # the real service, its limit from the settings

    limit = get_settings().max_body_bytes
    feed = Feed(chunks=limit // CHUNK * 4)
    async with client(app) as c:
        response = await c.post(
            "/v1/purchases", content=feed, headers={"content-type": "application/x-ndjson"}
        )
    assert response.status_code == 413
    assert feed.pulled == limit // CHUNK + 1
