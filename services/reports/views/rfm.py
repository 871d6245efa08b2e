"""Bodies of the RFM table and of a ranked customer."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from decimal import Decimal

from ..domain.rfm import RfmThresholds, f_rank, m_rank, r_rank
from .portfolio import amount_text, customer_body


def rfm_cells_body(scope: str, today: date, t: RfmThresholds, rows: Iterable[Mapping]) -> dict:
    """``GET /v1/rfm``: customers and sales per (R, F, M) cell (non-zero cells), the R×F table
    and per-rank totals of each measure."""
    cells = []
    rf = [[0] * 5 for _ in range(5)]
    per = {k: [0] * 5 for k in ("r", "f", "m")}
    total = 0
    for row in sorted(rows, key=lambda x: (-x["r"], -x["f"], -x["m"])):
        n = int(row["customers"])
        cells.append(
            {
                "r": row["r"],
                "f": row["f"],
                "m": row["m"],
                "customers": n,
                "sales": amount_text(Decimal(row["sales"])),
            }
        )
        rf[5 - row["r"]][5 - row["f"]] += n
        for k in ("r", "f", "m"):
            per[k][5 - row[k]] += n
        total += n
    return {
        "scope": scope,
        "as_of": today.isoformat(),
        "thresholds": t.model_dump(mode="json"),
        "customers": total,
        "cells": cells,
        "rf_table": {"rows": "R 5..1", "columns": "F 5..1", "customers": rf},
        "by_rank": {
            k: dict(zip(("5", "4", "3", "2", "1"), v, strict=True)) for k, v in per.items()
        },
    }


RFM_CSV_EXTRA = {"ja": ("R", "F", "M"), "en": ("r", "f", "m")}


def rfm_item(row: Mapping, scope: str, today: date, t: RfmThresholds) -> dict:
    body = customer_body(row, scope, today)
    body["r"] = r_rank(body["lapse_days"] or 0, t)
    body["f"] = f_rank(row["purchase_count"], t)
    body["m"] = m_rank(row["total_amount"], t)
    return body
