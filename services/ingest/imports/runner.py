"""CSV import: a sales file becomes purchase events on ``kizuna.purchases.v1``, a customer file
rows of the ``customers`` table; both with every rejected row recorded (line, column, value,
reason) and with progress and a checkpoint in PostgreSQL (``imports``).

Reading is dialect.py, headers.py, cells.py, reader.py, sales.py and customers.py (pure,
streaming). This module is the orchestration; the SQL is in store.py; the HTTP routes in
routes.py; the command line client in services/cli/imports.py.

A sales file goes in two phases, so that its history reaches the classifier as it would have
streamed live — each customer's events in date order, whatever the order of the file's rows (the
classifier replays a customer's events day by day with the lapse clock caught up; events older
than a customer's clock would only be folded in at that clock's date):

1. *read*: the file is parsed in a worker thread, and each batch (``BATCH_ROWS``) of accepted
   rows is copied (COPY) into the import's staging table in PostgreSQL, in one transaction with
   the batch's rejected rows and the checkpoint (the last data line of the batch and the
   counts). No row is held in memory beyond its batch, whatever the size of the file.
2. *publish*: the staged rows are published ``ORDER BY occurred_at, line`` (a keyset page of
   ``BATCH_ROWS`` at a time, the next page read while the broker acknowledges this one), one
   produce round per page; after the broker acknowledged a page, the checkpoint is the number
   published and the sort key of the last one. Then the staging table is dropped.

Why nothing is dropped or doubled:

- Every row up to the read checkpoint is staged or recorded as rejected, exactly once (same
  transaction); an interrupted read is resumed by reading the file from the start again (the
  event ids need the whole file: see below) and staging only the rows after the checkpoint.
- Every staged row up to the publish checkpoint is acknowledged by the broker; a resumed
  publish goes on after it. At most the page in flight is published twice, which is harmless:
  the sales reader's event ids are stable and the classifier's event store ignores an id it
  has seen.
  The staging table is unlogged (the file can rebuild it): if a database crash emptied it, the
  resumed import finds fewer rows than it counted and reads the file again from the start.
- Importing the same file again publishes the same event ids: nothing changes downstream.
- Customer rows are upserted in the same transaction as the checkpoint: exactly once.

Events are placed on partitions as Kafka's default partitioner does (murmur2 of the key
``tenant:customer``, like ingest's producer and a Java client), so a customer's imported and
live events share a partition and the classifier's partition-parallel batches stay disjoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import asyncpg
import orjson
from aiokafka.errors import KafkaError

from shared import replay
from shared.events import PURCHASES, PurchaseEvent
from shared.http import ApiError
from shared.publisher import Partitioner, RecordPublisher

from .. import metrics
from . import store
from .customers import CustomerRow, read_customers
from .reader import Rejection
from .sales import SaleRow, read_sales

log = logging.getLogger("kizuna.importer")

Kind = Literal["sales", "customers"]
KINDS: tuple[Kind, ...] = ("sales", "customers")
BATCH_ROWS = 5000  # rows per produce/acknowledge round and per checkpoint
SKIP_ROWS = 50_000  # rows passed over per read while resuming (keeps progress moving)
PUBLISH_TRIES = 5  # a batch the broker did not acknowledge is retried, then the import fails
PUBLISH_TIMEOUT = 30.0
RETRY_BACKOFF = 0.5


class ImportFailed(Exception):
    """The import stopped before the end (recorded as ``failed``; run it again to resume)."""


# --------------------------------------------------------------------------------------------
# What to import


def options_of(branch: str | None, mapping: Iterable[str] = ()) -> dict[str, Any]:
    """The options the event ids depend on, in one canonical form (stored with the import; a
    file is resumed only with the same options)."""
    options: dict[str, Any] = {}
    if branch and branch.strip():
        options["branch"] = branch.strip()
    mapping = [m for m in mapping if m]
    if mapping:
        options["map"] = list(mapping)
    return options


@dataclass(frozen=True)
class ImportRequest:
    kind: Kind
    tenant: str
    branch: str | None = None
    mapping: tuple[str, ...] = ()
    file_name: str | None = None
    resume_id: int | None = None

    @property
    def options(self) -> dict[str, Any]:
        return options_of(self.branch, self.mapping)


def open_reader(path: str | os.PathLike, kind: Kind, tenant: str, options: dict[str, Any]):
    """A reader (sales.py, customers.py) with the header mapped; raises ``MappingError``."""
    read = read_sales if kind == "sales" else read_customers
    return read(
        path, tenant=tenant, branch=options.get("branch"), mapping_overrides=options.get("map")
    )


def file_digest(path: str | os.PathLike) -> tuple[str, int]:
    """(sha256 hex, size): what recognises the same file on a later import."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def customer_columns(fields: Iterable[str], branch_given: bool) -> list[str]:
    """The customer columns a file has (a re-import leaves the others as they are)."""
    fields = set(fields)
    sources = {
        "name": {"name", "family_name", "given_name"},
        "kana": {"kana", "family_kana", "given_kana"},
        "company": {"company"},
        "postal_code": {"postal_code"},
        "address1": {"prefecture", "city", "address1"},
        "address2": {"address2", "address3"},
        "phone": {"phone"},
        "fax": {"fax"},
        "email": {"email"},
        "mail_consent": {"mail_consent"},
        "branch_id": {"branch"},
    }
    columns = [c for c, src in sources.items() if fields & src]
    if branch_given and "branch_id" not in columns:
        columns.append("branch_id")
    return columns


# --------------------------------------------------------------------------------------------
# Reading in batches (runs in a worker thread: parsing is CPU work)


@dataclass
class Batch:
    items: list[Any]
    rejections: list[Rejection]
    last_line: int  # the last data line taken (0 when only skipped rows were read)
    processed: int  # rows taken (not skipped)
    rows: int  # the reader's counters, from the start of the file
    accepted: int
    rejected: int
    bytes_read: int
    done: bool
    payload: bytes = b""  # sales: the items as one binary COPY stream, made by the reading thread


def take(
    results: Iterator[Any],
    reader: Any,
    limit: int,
    skip_to: int,
    prepare: Callable[[Any], Any],
    check: Callable[[Any], None] | None = None,
) -> Batch:
    """The next ``limit`` rows after line ``skip_to`` (rows on or before it were done by an
    earlier run: read, because the event ids count identical rows from the top of the file,
    but not taken). Accepted rows go through ``prepare``; ``check`` sees the first of them."""
    items: list[Any] = []
    rejections: list[Rejection] = []
    last_line = taken = skipped = 0
    first = None
    done = True
    for result in results:
        if result.line <= skip_to:
            skipped += 1
            if skipped >= SKIP_ROWS:
                done = False
                break
            continue
        last_line = result.line
        if result.ok:
            if first is None:
                first = result
            items.append(prepare(result))
        else:
            rejections.append(result)
        taken += 1
        if taken >= limit:
            done = False
            break
    if check is not None and first is not None:
        check(first)
    return Batch(
        items,
        rejections,
        last_line,
        taken,
        reader.rows,
        reader.accepted,
        reader.rejected,
        reader.bytes_read,
        done,
    )


# PostgreSQL's binary COPY format: the staging table's rows are built by the reading thread, so
# the server does the least work (no text to parse) and the event loop only streams bytes.
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, no header extension
COPY_TRAILER = b"\xff\xff"
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_staged_head = struct.Struct(">hiqiqi").pack  # 4 fields; occurred_at, line; customer's length
_length = struct.Struct(">i").pack


@functools.lru_cache(maxsize=1 << 16)  # a file's timestamps repeat: each converted once
def _pg_micros(occurred_at: str) -> int:
    """An ISO 8601 time with offset as PostgreSQL's timestamptz: µs since 2000-01-01 UTC."""
    delta = datetime.fromisoformat(occurred_at) - _PG_EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def stage_record(row: SaleRow) -> bytes:
    """SaleRow → its row of the staging table in binary COPY format: occurred_at (the sort
    key), line, customer, the event as JSON."""
    customer = row.customer.encode()
    value = row.json or orjson.dumps(row.event)
    head = _staged_head(4, 8, _pg_micros(row.occurred_at), 8, row.line, len(customer))
    return b"".join((head, customer, _length(len(value)), value))


def staged_rows(rows: Iterable[bytes]) -> bytes:
    """Rows of :func:`stage_record` as one binary COPY stream."""
    return b"".join((COPY_HEADER, *rows, COPY_TRAILER))


def publish_records(
    tenant: str, partition_of: Callable[[bytes], int]
) -> Callable[[Sequence[Sequence[Any]]], list[tuple[int, bytes, bytes]]]:
    """Staged rows (``occurred_at, line, customer_id, event``) → (partition, key, value) ready
    to append to a record batch; the key is ``tenant:customer`` like ingest's."""
    prefix = f"{tenant}:"
    placed: dict[str, tuple[int, bytes]] = {}  # customer → (partition, key)

    def prepare(rows: Sequence[Sequence[Any]]) -> list[tuple[int, bytes, bytes]]:
        out = []
        for _, _, customer, event in rows:
            where = placed.get(customer)
            if where is None:
                if len(placed) >= 1_000_000:
                    placed.clear()
                key = (prefix + customer).encode()
                where = placed[customer] = (partition_of(key), key)
            out.append((where[0], where[1], event))
        return out

    return prepare


def check_sale(row: SaleRow) -> None:
    """The contract, checked on the first event of each batch: the sales reader builds events
    that ingest would accept; if that ever breaks, fail the import loudly rather than feed the
    classifier's dead-letter topic a whole file."""
    try:
        PurchaseEvent.model_validate(row.event)
    except ValueError as exc:
        raise ImportFailed(
            f"line {row.line}: the reader built an event the contract rejects ({exc}); "
            "please report this with the file's header and that line"
        ) from exc


# --------------------------------------------------------------------------------------------
# Publishing


class PurchasePublisher:
    """Publishes prepared records to ``kizuna.purchases.v1`` through a ``RecordPublisher`` (record
    batches of its own per partition on a faststream broker's producer) and waits until the broker
    acknowledged all of them (``acks=all``). The placement is Kafka's (see
    :class:`Partitioner`)."""

    def __init__(
        self,
        get_producer: Callable[[], Awaitable[RecordPublisher]],
        reset: Callable[[], Awaitable[None]] | None = None,
        keep: Callable[..., Awaitable[None]] | None = None,
    ):
        self._get = get_producer
        self._reset = reset
        # With broker replay on: (rows, broker, marks) recorded before a batch counts as
        # published, so an embedded broker that dies cannot take it along (shared/replay.py).
        self._keep = keep
        self._watch = replay.BrokerWatch()

    @classmethod
    def for_producer(cls, producer: RecordPublisher) -> PurchasePublisher:
        async def get():
            return producer

        return cls(get)

    async def partitions(self) -> list[int]:
        producer = await self._get()
        return sorted(await producer.partitions_for(PURCHASES))

    async def publish(self, records: Sequence[tuple[int, bytes, bytes]]) -> None:
        producer = await self._get()
        if self._keep and self._watch.last is None:
            await self._watch.current(producer.client)
        before = self._watch.last
        batches = await producer.publish((PURCHASES, p, k, v) for p, k, v in records)
        if self._keep:
            broker = await self._watch.confirm(producer.client, before)
            marks = replay.marks_of(batches)
            await self._keep([(PURCHASES, k, v) for _, k, v in records], broker, marks)

    async def reset(self) -> None:
        if self._reset is not None:
            await self._reset()


RETRYABLE = (KafkaError, OSError, TimeoutError, ApiError)


async def publish_acknowledged(
    publisher: PurchasePublisher, records: Sequence[tuple], tries: int = PUBLISH_TRIES
) -> None:
    """Publish one batch until the broker acknowledged it; a few tries with back-off."""
    for attempt in range(1, tries + 1):
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT):
                await publisher.publish(records)
            return
        except RETRYABLE as exc:
            with contextlib.suppress(Exception):
                await publisher.reset()
            reason = str(exc) or type(exc).__name__
            if attempt >= tries:
                raise ImportFailed(
                    f"the broker did not acknowledge a batch after {tries} tries ({reason}); "
                    "everything before it is safe: import the file again to resume"
                ) from exc
            wait = RETRY_BACKOFF * 2 ** (attempt - 1)
            log.warning("import: batch not acknowledged (%s); retrying in %.1fs", reason, wait)
            await asyncio.sleep(wait)


# --------------------------------------------------------------------------------------------
# Progress


class Rate:
    """Rows per second over the last ``window`` seconds, and the time left from the bytes
    still to read (rows per file are unknown until the end; bytes are known from the start)."""

    def __init__(
        self,
        total_bytes: int | None,
        window: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.total_bytes = total_bytes
        self.window = window
        self.clock = clock
        self.started = clock()
        self.processed = 0
        self.samples: deque[tuple[float, int, int]] = deque([(self.started, 0, 0)])

    def update(self, processed: int, bytes_read: int) -> tuple[float | None, float | None]:
        """Add ``processed`` rows; returns (rows/s, seconds left) — ``None`` while unknown."""
        now = self.clock()
        self.processed += processed
        self.samples.append((now, self.processed, bytes_read))
        while len(self.samples) > 2 and self.samples[1][0] <= now - self.window:
            self.samples.popleft()
        t0, rows0, bytes0 = self.samples[0]
        elapsed = now - t0
        if elapsed <= 0:
            return None, None
        rows_per_second = (self.processed - rows0) / elapsed
        eta = None
        byte_rate = (bytes_read - bytes0) / elapsed
        if self.total_bytes is not None and byte_rate > 0:
            eta = max(0.0, (self.total_bytes - bytes_read) / byte_rate)
        return round(rows_per_second, 1), None if eta is None else round(eta, 1)

    def overall(self) -> float | None:
        elapsed = self.clock() - self.started
        return round(self.processed / elapsed, 1) if elapsed > 0 else None


# --------------------------------------------------------------------------------------------
# Running an import


async def claim_import(
    conn: asyncpg.Connection,
    path: str | os.PathLike,
    request: ImportRequest,
    sha256: str,
    size: int,
) -> tuple[store.Claim, Any]:
    """Map the file's header (``MappingError`` before anything is recorded) and open its import
    on ``conn``: a new one, or the unfinished one to resume. Returns the claim and the reader
    (``None`` when another runner holds the import: follow that one instead)."""
    options = request.options
    if request.resume_id is not None and not options:
        previous = await store.get_import(conn, request.tenant, request.resume_id)
        if previous is not None:
            options = previous["options"]  # --resume ID alone: the options it ran with
    reader = await asyncio.to_thread(open_reader, path, request.kind, request.tenant, options)
    try:
        with contextlib.suppress(asyncpg.PostgresError):  # housekeeping; never stops an import
            await store.drop_stale_staging(conn)
        claim = await store.claim(
            conn,
            tenant_id=request.tenant,
            kind=request.kind,
            file_name=request.file_name,
            sha256=sha256,
            size=size,
            options=options,
            resume_id=request.resume_id,
        )
    except BaseException:
        reader.close()
        raise
    if claim.busy:
        reader.close()
        return claim, None
    return claim, reader


async def run_import(
    conn: asyncpg.Connection,
    claim: store.Claim,
    reader: Any,
    *,
    publisher: PurchasePublisher | None = None,
    batch_rows: int = BATCH_ROWS,
    tries: int = PUBLISH_TRIES,
    on_progress: Callable[[store.Checkpoint], None] | None = None,
) -> dict[str, Any]:
    """Run a claimed import to its end on ``conn`` (which holds the import's lock) and return
    the final ``imports`` row. Raises :class:`ImportFailed` (recorded as ``failed``) when the
    broker does not acknowledge a batch; cancellation is recorded as ``interrupted``. Either
    way the checkpoint stands and the next import of the file resumes after it.

    Sales go in two phases: *read* stages every accepted row (see :func:`_read`), *publish*
    sends them in date order (see :func:`_publish`); a customer file is read and stored in
    one."""
    row = claim.row
    import_id, tenant, kind = row["id"], row["tenant_id"], row["kind"]
    notes: list[str] = []
    try:
        mapping = reader.mapping
        await store.describe_file(
            conn,
            import_id,
            encoding=reader.encoding,
            delimiter=reader.dialect.delimiter_name,
            mapping=mapping.describe(),
            notes=list(mapping.notes),
        )
        started = time.monotonic()
        if kind == "sales":
            if publisher is None:
                raise ValueError("a sales import needs a publisher")
            partitions = await publisher.partitions()  # the broker answers before we read
            if claim.resumed:
                staged = await store.staged_count(conn, import_id)
                if staged != row["accepted"]:
                    log.warning(
                        "import %s: %s of %s staged rows are there; reading the file again",
                        import_id,
                        staged or 0,
                        row["accepted"],
                    )
                    notes.append(
                        "the rows staged by the interrupted run were gone (database restart): "
                        "the file was read again from the start"
                    )
                    row = await store.restart(conn, import_id)
            else:
                await store.create_staging(conn, import_id)
            handled = 0
            if row["phase"] == "read":
                handled = await _read(conn, row, reader, batch_rows, on_progress)
                await store.start_publishing(conn, import_id)
            sent = await _publish(
                conn,
                row,
                publish_records(tenant, Partitioner(partitions)),
                publisher,
                batch_rows,
                tries,
                on_progress,
            )
            handled = handled or sent
        else:
            handled = await _read(conn, row, reader, batch_rows, on_progress)
        elapsed = time.monotonic() - started
        async with conn.transaction():
            await store.finish(
                conn,
                import_id,
                "done",
                notes=list(mapping.notes) + reader.warnings + notes,
                rows_per_second=round(handled / elapsed, 1) if elapsed > 0 else None,
            )
            if kind == "sales":
                await store.drop_staging(conn, import_id)
        metrics.IMPORTS_ENDED.labels(kind, "done").inc()
    except asyncio.CancelledError:
        await _record_end(conn, import_id, kind, "interrupted", "stopped before the end")
        raise
    except Exception as exc:
        reason = str(exc) or type(exc).__name__
        await _record_end(conn, import_id, kind, "failed", reason)
        if isinstance(exc, ImportFailed):
            raise
        raise ImportFailed(reason) from exc
    finally:
        reader.close()
    return await store.get_import(conn, tenant, import_id)


async def _read(
    conn: asyncpg.Connection,
    row: dict[str, Any],
    reader: Any,
    batch_rows: int,
    on_progress: Callable[[store.Checkpoint], None] | None,
) -> int:
    """Read the file from the checkpoint on, a batch at a time; each batch's accepted rows
    (staged sales, or upserted customers), its rejected rows and the new checkpoint in one
    transaction. Parsing runs in a worker thread, a batch ahead. Returns the rows taken."""
    import_id, tenant, kind = row["id"], row["tenant_id"], row["kind"]
    skip_to = row["last_line"]
    if skip_to:
        log.info("import %s: reading on after line %s", import_id, skip_to)
    rate = Rate(reader.total_bytes)
    if kind == "sales":
        prepare, check = stage_record, check_sale
        columns: list[str] = []
    else:
        prepare, check = CustomerRow.as_dict, None
        columns = customer_columns(reader.mapping.fields, reader.branch is not None)
    results = iter(reader)
    executor = ThreadPoolExecutor(1, thread_name_prefix=f"import-{import_id}")
    reading: Future | None = None
    last_line, taken = skip_to, 0

    def read() -> Batch:
        batch = take(results, reader, batch_rows, skip_to, prepare, check)
        if kind == "sales":
            batch.payload = staged_rows(batch.items)
        return batch

    try:
        reading = executor.submit(read)
        while True:
            batch = await asyncio.wrap_future(reading)
            # read the next batch while this one is stored
            reading = None if batch.done else executor.submit(read)
            if not batch.processed and not batch.done:
                continue  # rows of an earlier run passed over
            also = None
            if batch.items and kind == "sales":
                also = store.stager(import_id, batch.payload)
            elif batch.items:
                items = batch.items

                async def also(c, items=items):
                    await store.upsert_customers(c, tenant, items, columns, import_id=import_id)

            last_line = max(last_line, batch.last_line)
            taken += batch.processed
            speed, eta = rate.update(batch.processed, batch.bytes_read)
            progress = store.Checkpoint(
                batch.rows,
                batch.accepted,
                batch.rejected,
                batch.bytes_read,
                last_line,
                speed,
                eta,
            )
            await store.checkpoint(conn, import_id, progress, batch.rejections, also)
            metrics.IMPORT_ROWS.labels(kind, "accepted").inc(len(batch.items))
            metrics.IMPORT_ROWS.labels(kind, "rejected").inc(len(batch.rejections))
            if on_progress is not None:
                on_progress(progress)
            if batch.done:
                return taken
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
        if reading is not None and not reading.done():
            # let the batch being read finish before the file is closed under it
            with contextlib.suppress(BaseException):
                await asyncio.wrap_future(reading)


async def _publish(
    conn: asyncpg.Connection,
    row: dict[str, Any],
    prepare: Callable[[Sequence[Sequence[Any]]], list[tuple[int, bytes, bytes]]],
    publisher: PurchasePublisher,
    batch_rows: int,
    tries: int,
    on_progress: Callable[[store.Checkpoint], None] | None,
) -> int:
    """Publish the staged rows in date order from the publish checkpoint on: a page at a time,
    each acknowledged before its checkpoint is committed; the next page is read while the
    broker acknowledges this one. Returns the events published by this run."""
    import_id = row["id"]
    row = await store.get_import(conn, row["tenant_id"], import_id)  # the counts of _read
    total, done = row["accepted"], row["published"]
    after = None
    if row["publish_after_at"] is not None:
        after = (row["publish_after_at"], row["publish_after_line"])
        log.info("import %s: publishing on after %s events", import_id, done)
    rate = Rate(total)
    sent = 0
    page = await store.staged_page(conn, import_id, after, batch_rows)
    while page:
        sending = asyncio.ensure_future(publish_acknowledged(publisher, prepare(page), tries))
        last = page[-1]
        after = (last["occurred_at"], last["line"])
        try:
            upcoming = await store.staged_page(conn, import_id, after, batch_rows)
        except BaseException:
            sending.cancel()
            with contextlib.suppress(BaseException):
                await sending
            raise
        await sending
        done += len(page)
        sent += len(page)
        speed, eta = rate.update(len(page), done)
        await store.published(conn, import_id, done, after, speed, eta)
        metrics.IMPORT_EVENTS.inc(len(page))
        if on_progress is not None:
            on_progress(
                store.Checkpoint(
                    row["rows"],
                    row["accepted"],
                    row["rejected"],
                    row["bytes_read"],
                    row["last_line"],
                    speed,
                    eta,
                    phase="publish",
                    published=done,
                )
            )
        page = upcoming
    return sent


async def _record_end(conn, import_id: int, kind: str, status: str, error: str) -> None:
    metrics.IMPORTS_ENDED.labels(kind, status).inc()
    try:
        async with asyncio.timeout(10):
            await store.finish(
                conn,
                import_id,
                status,
                error=f"{error}; everything up to the checkpoint is kept: import the same file "
                "again to resume",
            )
    except Exception as exc:  # noqa: BLE001 - the row shows 'interrupted' once the lock is gone
        log.warning("import %s: could not record %s (%s)", import_id, status, exc)


async def import_file(
    pool: asyncpg.Pool,
    path: str | os.PathLike,
    request: ImportRequest,
    *,
    publisher: PurchasePublisher | None = None,
    batch_rows: int = BATCH_ROWS,
    tries: int = PUBLISH_TRIES,
    on_progress: Callable[[store.Checkpoint], None] | None = None,
) -> dict[str, Any]:
    """Import a file start to end in this process (new, or resumed when the same file has an
    unfinished import); returns the final ``imports`` row. What ingest does for an upload, and
    what the benchmark measures."""
    sha256, size = await asyncio.to_thread(file_digest, path)
    async with pool.acquire() as conn:
        claim, reader = await claim_import(conn, path, request, sha256, size)
        if reader is None:
            raise ImportFailed(f"import {claim.id} of this file is running elsewhere")
        try:
            return await run_import(
                conn,
                claim,
                reader,
                publisher=publisher,
                batch_rows=batch_rows,
                tries=tries,
                on_progress=on_progress,
            )
        finally:
            with contextlib.suppress(Exception):
                await store.release(conn, claim.id)


class ImportRunner:
    """The imports running in this process: each a task with its own database connection
    (holding the import's lock). Stopping the service interrupts them; they resume when the
    file is imported again."""

    def __init__(self, pool: asyncpg.Pool, publisher: PurchasePublisher):
        self.pool = pool
        self.publisher = publisher
        self.tasks: dict[int, asyncio.Task] = {}

    async def start(
        self, path: Path, request: ImportRequest, sha256: str, size: int
    ) -> tuple[dict[str, Any], str]:
        """Claim and start the import of a spooled file (the runner then owns the file).
        Returns the import row and how it started: ``new``, ``resumed`` or ``already_running``
        (another runner has it; the file is not needed)."""
        try:
            conn = await self.pool.acquire(timeout=10)
        except TimeoutError as exc:
            raise ApiError(
                503, "busy", "every database connection of ingest is in use; try again shortly"
            ) from exc
        try:
            claim, reader = await claim_import(conn, path, request, sha256, size)
        except BaseException:
            await self.pool.release(conn)
            raise
        if reader is None:
            await self.pool.release(conn)
            remove_file(path)
            return claim.row, "already_running"
        task = asyncio.create_task(self._run(conn, claim, reader, path), name=f"import-{claim.id}")
        self.tasks[claim.id] = task
        return claim.row, "resumed" if claim.resumed else "new"

    async def _run(self, conn, claim: store.Claim, reader, path: Path) -> None:
        context = {"tenant": claim.row.get("tenant_id"), "import_id": claim.id}
        try:
            row = await run_import(conn, claim, reader, publisher=self.publisher)
            log.info(
                "import %s done: %s rows, %s accepted, %s rejected",
                claim.id,
                row["rows"],
                row["accepted"],
                row["rejected"],
                extra=context,
            )
        except ImportFailed as exc:
            log.warning("import %s failed: %s", claim.id, exc, extra=context)
        except asyncio.CancelledError:
            log.info("import %s interrupted", claim.id, extra=context)
        except Exception:  # noqa: BLE001 - recorded in the imports row; keep ingest serving
            log.exception("import %s ended unexpectedly", claim.id, extra=context)
        finally:
            with contextlib.suppress(Exception):
                await store.release(conn, claim.id)
            with contextlib.suppress(Exception):
                await self.pool.release(conn)
            remove_file(path)
            self.tasks.pop(claim.id, None)

    async def cancel(self, import_id: int) -> bool:
        task = self.tasks.get(import_id)
        if task is None:
            return False
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return True

    async def close(self) -> None:
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def remove_file(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


__all__ = [
    "BATCH_ROWS",
    "Batch",
    "ImportFailed",
    "ImportRequest",
    "ImportRunner",
    "Partitioner",
    "PurchasePublisher",
    "Rate",
    "claim_import",
    "customer_columns",
    "file_digest",
    "import_file",
    "open_reader",
    "options_of",
    "run_import",
    "take",
]
