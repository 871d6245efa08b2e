"""Personal data (個人情報保護法): the audit log of every export of a customer list (who, when,
which list, how many rows, which format), read by owners at ``GET /v1/audit`` (JSON pages or the
whole log as CSV); and the erasure of a customer on request (``DELETE /v1/customers/{id}``:
name, contact details and alert texts gone, figures kept under the code), audited too."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from shared.http import ApiError, Pool

from . import store
from .guard import Caller, allow
from .principal import Permission, Principal

router = APIRouter(tags=["audit"])
CSV_COLUMNS = ("id", "at", "actor", "action", "subject", "rows", "format")


def list_subject(request: Request) -> str:
    """How the log names a list: its path and query, e.g.
    ``/v1/segments/loyal_lapsed/customers?scope=b1&format=csv``."""
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


async def record_export(pool, who: Principal, subject: str, rows: int, format: str) -> None:
    async with pool.acquire() as conn:
        await store.audit(conn, who, "export", subject, rows, format)


@router.get(
    "/v1/audit", response_model=None, dependencies=[allow(Permission.PEOPLE, chain_only=True)]
)
async def audit_log(
    who: Caller,
    pool: Pool,
    format: Literal["json", "csv"] = "json",
    before: Annotated[int | None, Query(ge=1, description="`next` of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict | Response:
    """The tenant's audit log, newest first: a JSON page, or as CSV the whole log."""
    async with pool.acquire() as conn:
        if format == "csv":
            rows = []
            position = before
            while True:  # the log grows slowly; pages of a thousand keep each query short
                page = await store.audit_page(conn, who.tenant_id, position, 1000)
                rows += page
                if len(page) < 1000:
                    break
                position = page[-1]["id"]
        else:
            rows = await store.audit_page(conn, who.tenant_id, before, limit + 1)
    if format == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(CSV_COLUMNS)
        for r in rows:
            writer.writerow([r["at"].isoformat() if c == "at" else r[c] for c in CSV_COLUMNS])
        return Response(
            "\ufeff" + out.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="audit-log.csv"'},
        )
    page = rows[:limit]
    return {
        "items": [{**r, "at": r["at"].isoformat()} for r in page],
        "next": page[-1]["id"] if len(rows) > limit else None,
    }


@router.delete("/v1/customers/{customer_id}", dependencies=[allow(Permission.PEOPLE)])
async def erase_customer(customer_id: str, who: Caller, pool: Pool) -> dict:
    """Erase a customer's personal data on their request. Their purchases and figures stay
    under the customer code (the portfolio and its history do not change)."""
    async with pool.acquire() as conn, conn.transaction():
        erased = await store.erase_customer(conn, who.tenant_id, customer_id)
        if not any(erased.values()):
            raise ApiError(
                404,
                "customer_not_found",
                f"no personal data of customer {customer_id!r} is kept",
                customer_id=customer_id,
            )
        await store.audit(conn, who, "erase", f"customer {customer_id}")
    return {"customer_id": customer_id, "erased": erased}
