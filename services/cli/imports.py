"""``kizuna import sales|customers FILE``: the command line client of ingest's import API.

The file is uploaded to ``POST /v1/imports/{kind}`` of the running ingest service (``kizuna
up``: ``http://127.0.0.1:8001``; ``--url`` for another), which publishes and checkpoints it;
this command follows ``GET /v1/imports/{id}`` with a one-line progress display on stderr, prints
a summary, and writes the rejected rows next to the file. ``--dry-run`` needs no server: it
reads the head of the file here.

Exit codes: 0 every row imported; 1 some rows rejected (the good ones are imported; the
rejected rows are in ``FILE.rejections.csv`` or ``--rejections PATH``); 2 the header cannot be
mapped (the message names the closest header and the ``--map`` to use) or the file is
missing; 3 the import could not run or stopped (service unreachable, broker down: run the same
command again to resume); 130 interrupted with Ctrl-C (resumable the same way).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TextIO

import httpx

from services.ingest.imports.headers import MappingError
from services.ingest.imports.preview import preview
from services.ingest.imports.runner import open_reader, options_of
from services.ingest.imports.views import preview_dict
from shared.settings import Settings

EXIT_OK, EXIT_REJECTED, EXIT_MAPPING, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
POLL_SECONDS = 0.5
UPLOAD_CHUNK = 1 << 20
ENCODINGS = {
    "cp932": "CP932 (Shift_JIS)",
    "utf-8": "UTF-8",
    "utf-8-sig": "UTF-8 (BOM)",
    "utf-16": "UTF-16",
}
DELIMITERS = {"tab": "tab タブ", "comma": "comma カンマ", "semicolon": "semicolon", "pipe": "pipe"}


def main(args, settings: Settings) -> int:
    return asyncio.run(run(args, settings))


# --------------------------------------------------------------------------------------------
# Text


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


PHASES = {"read": "1/2 読込 reading", "publish": "2/2 送信 publishing"}


def progress_line(row: dict[str, Any]) -> str:
    """``sales  1/2 読込 reading   45.2%  行 rows 452,000  取込 accepted …  28,512 rows/s  残り
    ETA 0:19``, then ``sales  2/2 送信 publishing  30.0%  送信 published 300,000 / 999,990 …
    events/s``: a sales file is read (and staged) first, then published in date order. The
    percentage, rate and ETA are the phase's."""
    parts = [row["kind"]]
    # a finished import shows the whole run (its rate is rows/s over both phases)
    phase = row.get("phase") if row["kind"] == "sales" and row["status"] != "done" else None
    if phase in PHASES:
        parts.append(PHASES[phase])
    if row.get("progress") is not None:
        parts.append(f"{row['progress'] * 100:5.1f}%")
    if phase == "publish":
        parts.append(f"送信 published {row.get('published') or 0:,} / {row['accepted']:,}")
        parts.append(f"除外 rejected {row['rejected']:,}")
    else:
        parts.append(f"行 rows {row['rows']:,}")
        parts.append(f"取込 accepted {row['accepted']:,}")
        parts.append(f"除外 rejected {row['rejected']:,}")
    if row.get("rows_per_second") is not None:
        unit = "events/s" if phase == "publish" else "rows/s"
        parts.append(f"{row['rows_per_second']:,.0f} {unit}")
    if row["status"] == "running" and row.get("eta_seconds") is not None:
        parts.append(f"残り ETA {duration(row['eta_seconds'])}")
    return "  ".join(parts)


def _event_text(e: dict[str, Any]) -> str:
    text = (
        f"{e['customer_id']} @{e['branch_id']} {e['occurred_at'][:16].replace('T', ' ')}"
        f" {e['kind']} ¥{float(e['amount'] or 0):,.0f}"
    )
    if e.get("order_id"):
        text += f" order {e['order_id']}"
    for line in e.get("lines") or []:
        name = " ".join(str(line.get("name") or "").split())
        text += f" [{line.get('sku') or ''} {name} {line.get('unit_price') or ''}×{line.get('quantity')}]"
    return text


def _customer_text(c: dict[str, Any]) -> str:
    bits = [c["customer_id"], c.get("name") or ""]
    if c.get("kana"):
        bits.append(f"({c['kana']})")
    for key in ("company", "postal_code", "address1", "phone", "email"):
        if c.get(key):
            bits.append(("〒" if key == "postal_code" else "") + c[key])
    if c.get("mail_consent") is not None:
        bits.append("メール可 mail ok" if c["mail_consent"] else "メール不可 no mail")
    return " ".join(b for b in bits if b)


def _problems_text(r: dict[str, Any]) -> str:
    parts = []
    for p in r.get("problems") or [r]:
        where = f"column {p['column']}" if p.get("column") else "row"
        value = f" {p['value']!r}" if p.get("value") not in (None, "") else ""
        parts.append(f"{where}{value}: {p['reason']}")
    return "; ".join(parts)


def render_preview(p: dict[str, Any], file: str) -> str:
    """The dry run, in Japanese and English."""
    out = [
        f"ファイル file: {file} ({p['kind']}, {p['total_bytes'] or 0:,} bytes)",
        f"文字コード encoding: {ENCODINGS.get(p['encoding'], p['encoding'])}   "
        f"区切り delimiter: {DELIMITERS.get(p['delimiter'], p['delimiter'])}   "
        f"見出し行 header line: {p['header_line'] if p['header_line'] is not None else '–'}",
        "列の対応 mapping (column → field):",
    ]
    for c in p["columns"]:
        target = c["field"] or f"(取り込まない not imported{': ' + c['note'] if c['note'] else ''})"
        out.append(f"  {c['column']:>3}  {c['header'] or '(空 empty)'}  → {target}")
    if p["notes"]:
        out.append("注記 notes:")
        out += [f"  - {n}" for n in p["notes"]]
    if p["rows"]:
        out.append(f"先頭の行 first rows ({len(p['rows'])}):")
        for r in p["rows"]:
            if r["ok"]:
                text = _event_text(r["event"]) if "event" in r else _customer_text(r["customer"])
                out.append(f"  ✓ {r['line']}行目 line {r['line']}: {text}")
            else:
                out.append(f"  ✗ {r['line']}行目 line {r['line']}: {_problems_text(r)}")
    if p["warnings"]:
        out.append("警告 warnings:")
        out += [f"  - {w}" for w in p["warnings"]]
    if p["error"]:
        out.append(f"エラー error: {p['error']}")
        out.append("取り込めません / cannot import this file as it is (exit 2).")
    else:
        out.append("問題なし / the header maps: run the same command without --dry-run to import.")
    return "\n".join(out) + "\n"


def summary(row: dict[str, Any], elapsed: float, rejections: Path | None) -> str:
    status = row["status"]
    title = {
        "done": "取込完了 / import done",
        "failed": "取込失敗 / import failed",
        "interrupted": "取込中断 / import interrupted",
    }.get(status, status)
    speed = row.get("rows_per_second")
    lines = [
        f"{title} — import {row['id']}: {row['file_name'] or ''} ({row['kind']}, tenant "
        f"{row['tenant_id']})",
        f"  行 rows {row['rows']:,}   取込 accepted {row['accepted']:,}   "
        f"除外 rejected {row['rejected']:,}   "
        f"({f'{speed:,.0f} rows/s, ' if speed else ''}{elapsed:.1f} s)",
    ]
    if row["kind"] == "sales" and row.get("published") is not None:
        lines.append(
            f"  送信 published {row['published']:,} events in date order (日付順)"
            + (
                f", 再開 resumed after {row['resumed_from_published']:,}"
                if row["runs"] > 1 and row.get("resumed_from_published")
                else ""
            )
        )
    if row.get("encoding"):
        lines.append(
            f"  文字コード encoding {ENCODINGS.get(row['encoding'], row['encoding'])}, "
            f"区切り delimiter {row['delimiter']}"
            + (f", 再開 resumed after line {row['resumed_from_line']:,}" if row["runs"] > 1 else "")
        )
    for note in row.get("notes") or []:
        lines.append(f"  注記 note: {note}")
    if rejections is not None:
        lines.append(f"  除外行 rejected rows (line, column, value, reason) → {rejections}")
    if status != "done":
        lines.append(f"  理由 reason: {row.get('error') or 'stopped'}")
        if row["kind"] == "sales" and row.get("phase") == "publish":
            kept = (
                f"the file was read to the end and {row.get('published') or 0:,} of "
                f"{row['accepted']:,} events were published: those are not sent again."
            )
        else:
            kept = f"rows up to line {row['last_line']:,} are kept and not sent again."
        lines.append(
            f"  再開 resume: run the same command again (or add --resume {row['id']}); {kept}"
        )
    return "\n".join(lines) + "\n"


def mapping_message(message: str) -> str:
    return f"列を対応づけられません / cannot map the header: {message}\n"


# --------------------------------------------------------------------------------------------
# Running


class Display:
    """One progress line on stderr (rewritten in place on a terminal, every few seconds in a
    log)."""

    def __init__(self, stream: TextIO, every: float = 5.0):
        self.stream = stream
        self.tty = stream.isatty() if hasattr(stream, "isatty") else False
        self.every = every
        self.shown_at = 0.0
        self.width = 0

    def show(self, text: str, force: bool = False) -> None:
        if self.tty:
            self.stream.write("\r" + text.ljust(self.width))
            self.width = len(text)
        elif force or time.monotonic() - self.shown_at >= self.every:
            self.stream.write(text + "\n")
            self.shown_at = time.monotonic()
        self.stream.flush()

    def end(self) -> None:
        if self.tty and self.width:
            self.stream.write("\n")
            self.stream.flush()
        self.width = 0


async def _chunks(path: Path, on_sent: Callable[[int], None]) -> AsyncIterator[bytes]:
    sent = 0
    with open(path, "rb") as f:  # noqa: ASYNC230 - local file, a MiB at a time
        while chunk := await asyncio.to_thread(f.read, UPLOAD_CHUNK):
            sent += len(chunk)
            on_sent(sent)
            yield chunk


def _error_of(r: httpx.Response) -> dict[str, Any]:
    try:
        return r.json().get("error") or {}
    except ValueError:
        return {"message": r.text[:500]}


async def run(
    args,
    settings: Settings,
    *,
    client: httpx.AsyncClient | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    poll_seconds: float = POLL_SECONDS,
) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    path = Path(args.file)
    if not await asyncio.to_thread(path.is_file):
        err.write(f"ファイルがありません / no such file: {path}\n")
        return EXIT_MAPPING
    options = options_of(args.branch, args.map or ())
    if args.dry_run:
        p = await asyncio.to_thread(
            preview,
            path,
            10,
            kind=args.kind,
            tenant=args.tenant,
            branch=args.branch,
            mapping_overrides=args.map or None,
        )
        out.write(render_preview(preview_dict(p, path.name), str(path)))
        return EXIT_MAPPING if p.error else EXIT_OK
    if args.resume is None or options:
        # map the header here first: a wrong file fails at once, not after its upload
        try:
            await asyncio.to_thread(
                lambda: open_reader(path, args.kind, args.tenant, options).close()
            )
        except MappingError as exc:
            err.write(mapping_message(str(exc)))
            return EXIT_MAPPING
    args.key = getattr(args, "key", None) or settings.api_key
    if not args.key:
        err.write(
            "APIキーがありません / no API key: pass --key or set KIZUNA_API_KEY"
            " (kizuna keys create --tenant T --role ingest)\n"
        )
        return EXIT_FAILED
    base = (args.url or f"http://{settings.host}:{settings.ingest_port}").rstrip("/")
    own_client = client is None
    if client is None:
        client = httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(30, read=600))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGINT, stop.set)
    try:
        return await _import(args, path, client, base, stop, out, err, poll_seconds)
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(signal.SIGINT)
        if own_client:
            await client.aclose()


async def _import(args, path: Path, client, base, stop, out, err, poll_seconds) -> int:
    headers = {"Authorization": f"Bearer {args.key}"}
    params: list[tuple[str, str]] = [("file_name", path.name)]
    if args.branch:
        params.append(("branch", args.branch))
    params += [("map", m) for m in args.map or ()]
    if args.resume is not None:
        params.append(("resume", str(args.resume)))
    display = Display(err)
    size = (await asyncio.to_thread(path.stat)).st_size
    started = time.monotonic()

    def sent(n: int) -> None:
        display.show(f"送信中 uploading {path.name}  {n / max(size, 1) * 100:5.1f}%  ({n:,} bytes)")

    upload = asyncio.ensure_future(
        client.post(
            f"/v1/imports/{args.kind}",
            params=params,
            content=_chunks(path, sent),
            headers={**headers, "Content-Type": "text/csv"},
        )
    )
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({upload, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if not upload.done():
        upload.cancel()
        with contextlib.suppress(BaseException):
            await upload
        display.end()
        err.write("中断しました / interrupted during the upload: nothing was imported.\n")
        return EXIT_INTERRUPTED
    display.end()
    try:
        r = upload.result()
    except httpx.TransportError as exc:
        err.write(
            f"ingest に接続できません / ingest is not reachable at {base} ({exc}): is `kizuna up` "
            "running? (or give --url)\n"
        )
        return EXIT_FAILED
    if r.status_code != 202:
        error = _error_of(r)
        if error.get("code") == "mapping_error":
            err.write(mapping_message(error.get("message", "")))
            return EXIT_MAPPING
        err.write(
            f"取り込めません / the import did not start ({r.status_code} {error.get('code', '')}): "
            f"{error.get('message', r.text[:300])}\n"
        )
        return EXIT_FAILED
    row = r.json()
    import_id = row["id"]
    if row.get("started") == "resumed" and row.get("phase") == "publish":
        err.write(
            f"再開 / resuming import {import_id}: the file was read to the end; publishing on "
            f"after {row.get('published') or 0:,} of {row['accepted']:,} events\n"
        )
    elif row.get("started") == "resumed":
        err.write(
            f"再開 / resuming import {import_id} after line {row['last_line']:,} "
            f"({row['accepted']:,} rows already read)\n"
        )
    elif row.get("started") == "already_running":
        err.write(f"実行中 / import {import_id} of this file is already running: following it\n")
    interrupted = False
    while row["status"] == "running":
        display.show(progress_line(row))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), poll_seconds)
        if stop.is_set() and not interrupted:
            interrupted = True
            with contextlib.suppress(httpx.HTTPError):
                await client.post(f"/v1/imports/{import_id}/cancel", headers=headers)
        try:
            got = await client.get(f"/v1/imports/{import_id}", headers=headers)
        except httpx.TransportError as exc:
            display.end()
            err.write(
                f"ingest に接続できません / lost ingest at {base} ({exc}); the import may go on "
                f"there: GET {base}/v1/imports/{import_id}\n"
            )
            return EXIT_FAILED
        if got.status_code == 200:
            row = got.json()
    display.show(progress_line(row), force=True)
    display.end()
    rejections_path = None
    if row["rejected"]:
        rejections_path = (
            Path(args.rejections) if args.rejections else Path(f"{path}.rejections.csv")
        )
        got = await client.get(
            f"/v1/imports/{import_id}/rejections", params={"format": "csv"}, headers=headers
        )
        try:
            await asyncio.to_thread(rejections_path.write_bytes, got.content)
        except OSError as exc:
            err.write(f"could not write the rejected rows to {rejections_path}: {exc}\n")
            rejections_path = None
    out.write(summary(row, time.monotonic() - started, rejections_path))
    if interrupted or row["status"] == "interrupted":
        return EXIT_INTERRUPTED if interrupted else EXIT_FAILED
    if row["status"] != "done":
        return EXIT_FAILED
    return EXIT_REJECTED if row["rejected"] else EXIT_OK
