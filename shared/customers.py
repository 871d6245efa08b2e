"""Customer master data (code, name, kana, company, address, phone, e-mail, mail consent) per
tenant: written by ``kizuna import customers`` (services/importer.py), read wherever a customer
list needs names and contact details (segment lists, exports, follow-ups).

The ``customers`` table (shared/migrations/006_imports.sql) is keyed by (tenant, customer code);
a customer's figures and segment live elsewhere (``customer_states``, ``report_customers``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import asyncpg

# The master-data columns, in the order exports show them; mail_consent is the only non-text one.
DETAIL_COLUMNS = (
    "name",
    "kana",
    "company",
    "postal_code",
    "address1",
    "address2",
    "phone",
    "fax",
    "email",
    "mail_consent",
    "branch_id",
)
_TYPES = {"mail_consent": "boolean"}


async def customer_details(
    conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str, customer_ids: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """Name and contact details of the given customers: ``{customer_id: {"name", "kana",
    "company", "postal_code", "address1", "address2", "phone", "fax", "email",
    "mail_consent", "branch_id"}}``. Customers without master data are absent from the result
    (a sale can arrive before the customer file); values the file left empty are ``None``.
    One indexed query, whatever the number of ids (a page of a segment list, an export)."""
    ids = list(dict.fromkeys(customer_ids))
    if not ids:
        return {}
    rows = await conn.fetch(
        f"SELECT customer_id, {', '.join(DETAIL_COLUMNS)} FROM customers"
        " WHERE tenant_id = $1 AND customer_id = ANY($2::text[])",
        tenant_id,
        ids,
    )
    return {r["customer_id"]: {c: r[c] for c in DETAIL_COLUMNS} for r in rows}


async def upsert_customers(
    conn: asyncpg.Connection,
    tenant_id: str,
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    *,
    import_id: int | None = None,
) -> int:
    """Insert or update customers by code; only ``columns`` (those the file has) are written,
    the others keep their values. Within ``rows`` a later row for the same code wins, as if
    they were applied one by one. An update that changes nothing does not touch the row (nor
    its ``updated_at``). Returns the number of rows inserted or changed."""
    unknown = set(columns) - set(DETAIL_COLUMNS)
    if unknown:
        raise ValueError(f"not a customer column: {sorted(unknown)}")
    latest: dict[str, Mapping[str, Any]] = {}
    for row in rows:
        latest.pop(row["customer_id"], None)  # keep file order for the survivors
        latest[row["customer_id"]] = row
    if not latest:
        return 0
    cols = [c for c in DETAIL_COLUMNS if c in columns]
    arrays = [list(latest)] + [[r.get(c) for r in latest.values()] for c in cols]
    params = ", ".join(
        f"${i + 2}::{_TYPES.get(c, 'text')}[]" for i, c in enumerate(["customer_id", *cols])
    )
    names = ", ".join(["customer_id", *cols])
    import_param = f"${len(cols) + 3}"
    if cols:
        changed = " OR ".join(f"c.{c} IS DISTINCT FROM EXCLUDED.{c}" for c in cols)
        sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols)
        conflict = (
            f"DO UPDATE SET {sets}, import_id = EXCLUDED.import_id, updated_at = now()"
            f" WHERE {changed}"
        )
    else:
        conflict = "DO NOTHING"
    status = await conn.execute(
        f"INSERT INTO customers AS c (tenant_id, {names}, import_id)"
        f" SELECT $1, u.*, {import_param}::bigint FROM unnest({params}) AS u({names})"
        f" ON CONFLICT (tenant_id, customer_id) {conflict}",
        tenant_id,
        *arrays,
        import_id,
    )
    return int(status.rsplit(" ", 1)[-1])


async def erase_customer(conn: asyncpg.Connection, tenant_id: str, customer_id: str) -> dict:
    """Remove a customer's personal data (an erasure request): the master data row, and the
    rendered texts of their alerts and alert deliveries (which may quote name and address).
    Purchases and figures stay under the customer code. Returns what was erased, by kind."""
    master = await conn.execute(
        "DELETE FROM customers WHERE tenant_id = $1 AND customer_id = $2", tenant_id, customer_id
    )
    alerts = await conn.fetch(
        "UPDATE alerts SET subject = '', body = '', details = '{}'"
        " WHERE tenant_id = $1 AND customer_id = $2 AND (subject <> '' OR body <> '')"
        " RETURNING id",
        tenant_id,
        customer_id,
    )
    deliveries = await conn.execute(
        "UPDATE alert_deliveries SET subject = NULL, body = '(erased on request)',"
        " status = CASE WHEN status IN ('pending', 'dead') THEN 'cancelled' ELSE status END,"
        " updated_at = now()"
        " WHERE alert_id = ANY($1::bigint[]) AND body <> '(erased on request)'",
        [a["id"] for a in alerts],
    )
    return {
        "master_data": int(master.split()[-1]),
        "alerts": len(alerts),
        "alert_deliveries": int(deliveries.split()[-1]),
    }
