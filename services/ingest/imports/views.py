"""What the API and the command line show of an import: the import's progress, its rejected
rows (JSON and CSV) and a preview."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from typing import Any

from .customers import CustomerRow
from .preview import Preview
from .reader import Rejection
from .sales import SaleRow


def result_dict(result: Any) -> dict[str, Any]:
    """A reader result as JSON: an accepted sale (``event``), customer (``customer``) or a
    rejection (``column``, ``value``, ``reason``, ``problems``)."""
    if isinstance(result, SaleRow):
        return {"line": result.line, "ok": True, "event": result.event}
    if isinstance(result, CustomerRow):
        return {"line": result.line, "ok": True, "customer": result.as_dict()}
    return rejection_dict(result)


def rejection_dict(r: Rejection) -> dict[str, Any]:
    problems = r.problems or ((r.column, r.value, r.reason),)
    return {
        "line": r.line,
        "ok": False,
        "column": r.column,
        "value": r.value,
        "reason": r.reason,
        "problems": [{"column": c, "value": v, "reason": why} for c, v, why in problems],
    }


def preview_dict(p: Preview, file_name: str | None = None) -> dict[str, Any]:
    """The dry run: detected encoding and delimiter, the mapping, notes, the first rows."""
    return {
        "kind": p.kind,
        "file_name": file_name,
        "encoding": p.encoding,
        "delimiter": p.delimiter,
        "header_line": p.header_line,
        "columns": p.columns,
        "mapping": p.mapping,
        "notes": p.notes,
        "warnings": p.warnings,
        "error": p.error,
        "total_bytes": p.total_bytes,
        "rows": [result_dict(r) for r in p.rows],
    }


REJECTION_COLUMNS = ("line", "column", "value", "reason")


def rejection_lines(rejections: Iterable[dict[str, Any]]) -> Iterator[list[Any]]:
    """One CSV line per problem (a row with two bad cells gives two lines with its number)."""
    for r in rejections:
        for p in r.get("problems") or [r]:
            yield [
                r["line"],
                p.get("column") or "",
                "" if p.get("value") is None else p["value"],
                p["reason"],
            ]


def rejections_csv(rejections: Iterable[dict[str, Any]], *, header: bool = True) -> str:
    """The rejected rows as CSV text (callers write it as UTF-8 with a BOM, for Excel)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    if header:
        writer.writerow(REJECTION_COLUMNS)
    writer.writerows(rejection_lines(rejections))
    return out.getvalue()


def import_view(row: dict[str, Any]) -> dict[str, Any]:
    """An ``imports`` row as the API shows it. ``progress`` is the current phase's: the
    fraction of the file's bytes read (phase ``read``), then of the staged events published
    (phase ``publish``, sales only); ``rows_per_second`` and ``eta_seconds`` are the phase's
    too."""
    size = row.get("size_bytes")
    done = row["status"] == "done"
    phase = row.get("phase") or "read"
    sales = row["kind"] == "sales"
    published = row.get("published") or 0
    if done:
        progress = 1.0
    elif phase == "publish":
        progress = round(published / row["accepted"], 4) if row["accepted"] else 1.0
    else:
        progress = round(row["bytes_read"] / size, 4) if size else None
    return {
        "id": row["id"],
        "tenant_id": row["tenant_id"],
        "kind": row["kind"],
        "file_name": row["file_name"],
        "file_sha256": row["file_sha256"],
        "size_bytes": size,
        "options": row["options"],
        "status": row["status"],
        "resumable": row["status"] in ("failed", "interrupted"),
        "phase": phase,
        "rows": row["rows"],
        "accepted": row["accepted"],
        "rejected": row["rejected"],
        "published": published if sales else None,
        "bytes_read": row["bytes_read"],
        "progress": progress,
        "rows_per_second": row["rows_per_second"],
        "eta_seconds": row["eta_seconds"],
        "last_line": row["last_line"],
        "runs": row["runs"],
        "resumed_from_line": row["resumed_from_line"],
        "resumed_from_published": row.get("resumed_from_published") if sales else None,
        "encoding": row["encoding"],
        "delimiter": row["delimiter"],
        "mapping": row["mapping"],
        "notes": row["notes"],
        "started_at": row["started_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
        "finished_at": row["finished_at"].isoformat() if row["finished_at"] else None,
        "error": row["error"],
    }
