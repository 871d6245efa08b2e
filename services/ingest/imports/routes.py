"""CSV imports over HTTP.

- ``POST /v1/imports/sales`` and ``POST /v1/imports/customers`` — the file as the raw body
  (``Content-Type: text/csv``, any encoding) or as a multipart upload (``-F file=@sales.csv``).
  Query (or form) parameters: ``branch`` (for a file without a branch column), ``map``
  (``COLUMN=field``, repeatable), ``dry_run`` (answer with the preview, import nothing),
  ``resume`` (an import id), ``file_name`` (for a raw body). 202 with the import (``id``,
  ``status``, counts) as soon as the header is mapped and the import has started in the
  background; 422 ``mapping_error`` naming the missing column and the closest header; 503 when
  the broker is unreachable (sales). The same file again, while an import of it is unfinished,
  resumes that import after its checkpoint (``started: "resumed"``).
- ``GET /v1/imports/{id}`` — progress (rows read, accepted, rejected, rows/s, ETA, status) and
  the first rejected rows; ``GET /v1/imports/{id}/rejections?format=csv|json`` — every rejected
  row with line, column, value and reason; ``GET /v1/imports`` — the tenant's recent imports;
  ``POST /v1/imports/{id}/cancel`` — stop a running import (resumable).

The import runs in this process (:class:`ImportRunner`), on a database connection that holds
the import's advisory lock; progress and checkpoint live in PostgreSQL (runner.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import asyncpg
import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.datastructures import UploadFile

from shared import access, http
from shared.access import TenantId
from shared.http import Pool

from . import store, views
from .headers import MappingError
from .preview import preview
from .runner import ImportRequest, ImportRunner, remove_file

log = logging.getLogger("kizuna.ingest.imports")
# Imports are the chain's: a file can hold any branch, so a key of some branches may not import.
router = APIRouter(
    prefix="/v1/imports",
    tags=["imports"],
    dependencies=[access.allow(access.Permission.INGEST, chain_only=True)],
)

UPLOAD_DIR = Path(tempfile.gettempdir()) / "kizuna-imports"
PREVIEW_ROWS = 10
INLINE_REJECTIONS = 100
PAGE = 5000


def sweep_spool(max_age: float = 86400) -> None:
    """Delete uploads left behind by a process that died (never one another process may still
    be reading: only files untouched for ``max_age`` seconds)."""
    with contextlib.suppress(OSError):
        for path in UPLOAD_DIR.glob("*.upload"):
            with contextlib.suppress(OSError):
                if time.time() - path.stat().st_mtime > max_age:
                    path.unlink()


@dataclass
class Upload:
    path: Path
    sha256: str
    size: int
    file_name: str | None
    fields: dict[str, list[str]] = field(default_factory=dict)


def _new_spool() -> Path:
    UPLOAD_DIR.mkdir(parents=True, exist_ok=True)
    return UPLOAD_DIR / f"{uuid.uuid4().hex}.upload"


async def receive(request: Request) -> Upload:
    """Spool the uploaded file to disk, computing its sha256 on the way."""
    content_type = request.headers.get("content-type", "")
    path = _new_spool()
    digest, size = hashlib.sha256(), 0
    try:
        if content_type.startswith("multipart/form-data"):
            return await _receive_multipart(request, path)
        out = await asyncio.to_thread(open, path, "wb")
        try:
            buffer = bytearray()
            async for chunk in request.stream():
                size += len(chunk)  # at most KIZUNA_MAX_UPLOAD_BYTES (http.BodyLimit)
                digest.update(chunk)
                buffer += chunk
                if len(buffer) >= 1 << 20:  # disk writes off the event loop, a MiB at a time
                    await asyncio.to_thread(out.write, bytes(buffer))
                    buffer.clear()
            await asyncio.to_thread(out.write, bytes(buffer))
        finally:
            await asyncio.to_thread(out.close)
        return Upload(path, digest.hexdigest(), size, None)
    except BaseException:
        remove_file(path)
        raise


async def _receive_multipart(request: Request, path: Path) -> Upload:
    try:
        form = await request.form(max_files=1, max_fields=20)
    except AssertionError as exc:  # python-multipart is not installed
        raise http.ApiError(
            415,
            "multipart_unsupported",
            "multipart uploads need python-multipart on the server; send the file as the "
            "request body instead (Content-Type: text/csv)",
        ) from exc
    try:
        files = [(k, v) for k, v in form.multi_items() if isinstance(v, UploadFile)]
        if not files:
            raise http.ApiError(
                422, "no_file", "the multipart upload has no file part (-F file=@sales.csv)"
            )
        _, upload = next(((k, v) for k, v in files if k == "file"), files[0])
        fields: dict[str, list[str]] = {}
        for k, v in form.multi_items():
            if isinstance(v, str):
                fields.setdefault(k, []).append(v)
        sha256, size = await asyncio.to_thread(_copy, upload.file, path)
        return Upload(path, sha256, size, upload.filename, fields)
    finally:
        await form.close()


def _copy(source, path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    source.seek(0)
    with open(path, "wb") as out:
        while chunk := source.read(1 << 20):
            size += len(chunk)
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest(), size


def mapping_error(exc: MappingError) -> http.ApiError:
    return http.ApiError(
        422,
        "mapping_error",
        str(exc),
        field=exc.field,
        suggestion=exc.suggestion,
        columns=list(exc.columns),
    )


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


@router.post("/{kind}", status_code=202)
async def post_import(
    kind: Literal["sales", "customers"],
    request: Request,
    tenant_id: TenantId,
    branch: Annotated[str | None, Query(description="for a file without a branch column")] = None,
    mapping: Annotated[
        list[str], Query(alias="map", description="COLUMN=field, repeatable; '-' ignores")
    ] = [],  # noqa: B006 - FastAPI copies query defaults
    dry_run: Annotated[bool, Query(description="preview only: detect, map, first rows")] = False,
    resume: Annotated[int | None, Query(description="the id of an import to resume")] = None,
    file_name: Annotated[str | None, Query(description="the file's name (raw body)")] = None,
):
    """Import a CSV file (see the module's docstring)."""
    upload = await receive(request)
    owned = False
    try:
        if upload.size == 0:
            raise http.ApiError(422, "empty_file", "the request has no file: send the CSV file")
        f = upload.fields
        branch = branch or (f.get("branch") or [None])[0]
        mapping = mapping or f.get("map", [])
        dry_run = dry_run or _truthy((f.get("dry_run") or [None])[0])
        if resume is None and f.get("resume"):
            try:
                resume = int(f["resume"][0])
            except ValueError:
                raise http.ApiError(422, "invalid_request", "resume must be an import id") from None
        name = file_name or upload.file_name
        if dry_run:
            p = await asyncio.to_thread(
                preview,
                upload.path,
                PREVIEW_ROWS,
                kind=kind,
                tenant=tenant_id,
                branch=branch,
                mapping_overrides=mapping or None,
            )
            return JSONResponse(
                {**views.preview_dict(p, name), "file_sha256": upload.sha256}, status_code=200
            )
        runner: ImportRunner = request.app.state.imports
        if kind == "sales":
            await runner.publisher.partitions()  # 503 now rather than a failed import
        job = ImportRequest(
            kind, tenant_id, branch, tuple(mapping), file_name=name, resume_id=resume
        )
        try:
            row, started = await runner.start(upload.path, job, upload.sha256, upload.size)
        except MappingError as exc:
            raise mapping_error(exc) from exc
        except store.ImportConflict as exc:
            raise http.ApiError(exc.status, exc.code, str(exc)) from exc
        owned = True
        return JSONResponse(
            {**views.import_view(row), "started": started, **_links(row["id"])},
            status_code=202,
        )
    finally:
        if not owned:
            remove_file(upload.path)


def _links(import_id: int) -> dict[str, str]:
    return {
        "self": f"/v1/imports/{import_id}",
        "rejections_url": f"/v1/imports/{import_id}/rejections?format=csv",
    }


async def _import_or_404(pool: asyncpg.Pool, tenant_id: str, import_id: int) -> dict[str, Any]:
    row = await store.get_import(pool, tenant_id, import_id)
    if row is None:
        raise http.ApiError(404, "not_found", f"no import {import_id} for this tenant")
    return row


@router.get("")
async def list_imports(
    pool: Pool, tenant_id: TenantId, limit: Annotated[int, Query(ge=1, le=200)] = 50
):
    """The tenant's most recent imports, newest first."""
    rows = await store.list_imports(pool, tenant_id, limit)
    return {"items": [views.import_view(r) for r in rows]}


@router.get("/{import_id}")
async def get_import(import_id: int, pool: Pool, tenant_id: TenantId):
    """Progress: rows read, accepted, rejected, rows/s, ETA, status; the first rejected rows."""
    row = await _import_or_404(pool, tenant_id, import_id)
    rejections = await store.rejections(pool, import_id, limit=INLINE_REJECTIONS)
    return {**views.import_view(row), "rejections": rejections, **_links(import_id)}


@router.get("/{import_id}/rejections")
async def get_rejections(
    import_id: int,
    pool: Pool,
    tenant_id: TenantId,
    format: Annotated[Literal["csv", "json"], Query()] = "csv",  # noqa: A002 - the API's name
):
    """Every rejected row: line, column, value, reason (CSV: one line per problem, UTF-8 with
    a BOM so that Excel shows Japanese; JSON: one item per row with all its problems)."""
    await _import_or_404(pool, tenant_id, import_id)

    async def pages():
        after = 0
        while True:
            page = await store.rejections(pool, import_id, after_line=after, limit=PAGE)
            if not page:
                return
            yield page
            after = page[-1]["line"]

    if format == "json":

        async def body():
            yield b'{"import_id": %d, "rejections": [' % import_id
            first = True
            async for page in pages():
                for item in page:
                    yield (b"" if first else b",") + orjson.dumps(item)
                    first = False
            yield b"]}"

        return StreamingResponse(body(), media_type="application/json")

    async def csv_body():
        yield "\ufeff".encode() + views.rejections_csv([], header=True).encode()
        async for page in pages():
            yield views.rejections_csv(page, header=False).encode()

    return StreamingResponse(
        csv_body(),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="import-{import_id}-rejections.csv"'
        },
    )


@router.post("/{import_id}/cancel")
async def cancel_import(import_id: int, request: Request, pool: Pool, tenant_id: TenantId):
    """Stop a running import; what was acknowledged stays, and importing the same file again
    resumes after the checkpoint."""
    row = await _import_or_404(pool, tenant_id, import_id)
    if not await request.app.state.imports.cancel(import_id):
        if row["status"] == "running":
            raise http.ApiError(
                409, "running_elsewhere", f"import {import_id} runs in another ingest process"
            )
        raise http.ApiError(409, "not_running", f"import {import_id} is {row['status']}")
    return views.import_view(await _import_or_404(pool, tenant_id, import_id))
