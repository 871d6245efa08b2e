"""A DM response table as JSON and CSV."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date

from shared.cpm import (
    SEGMENT_NAMES_JA,
    SEGMENTS,
)

from ..domain.calendar import month_text
from ..domain.transitions import _rate
from .csv import csv_text, neutralise


def dm_body(table: Mapping, entries: Sequence[Mapping]) -> dict:
    """A DM response table: per month and segment the segment's size on the mailing day, mails
    sent, responses, response rate (responses / mailed) and reach (mailed / size); per segment
    the totals over all months (レスポンス推移表)."""
    by_month: dict[date, list] = {}
    totals = {s: [0, 0] for s in SEGMENTS}
    order = {s: i for i, s in enumerate(SEGMENTS)}
    for e in sorted(entries, key=lambda x: (x["month"], order[x["segment"]])):
        by_month.setdefault(e["month"], []).append(e)
        totals[e["segment"]][0] += int(e["mailed"])
        totals[e["segment"]][1] += int(e["responses"])
    return {
        "id": table["table_id"],
        "name": table["name"],
        "scope": table["scope"],
        "created_at": table["created_at"].isoformat(),
        "months": [
            {
                "month": month_text(m),
                "sent_on": rows[0]["sent_on"].isoformat(),
                "segments": [
                    {
                        "segment": r["segment"],
                        "name_ja": SEGMENT_NAMES_JA[r["segment"]],
                        "segment_size": int(r["segment_size"]),
                        "mailed": int(r["mailed"]),
                        "responses": int(r["responses"]),
                        "response_rate": _rate(int(r["responses"]), int(r["mailed"])),
                        "reach": _rate(int(r["mailed"]), int(r["segment_size"])),
                    }
                    for r in rows
                ],
            }
            for m, rows in by_month.items()
        ],
        "by_segment": [
            {
                "segment": s,
                "name_ja": SEGMENT_NAMES_JA[s],
                "mailed": mailed,
                "responses": responses,
                "response_rate": _rate(responses, mailed),
            }
            for s, (mailed, responses) in totals.items()
            if mailed
        ],
    }


DM_CSV_HEADERS = {
    "ja": ("表", "月", "発送日", "顧客層", "顧客数", "発送数", "反応数", "反応率"),
    "en": (
        "table",
        "month",
        "sent_on",
        "segment",
        "segment_size",
        "mailed",
        "responses",
        "response_rate",
    ),
}


def dm_csv(body: Mapping, language: str) -> str:
    """The DM table as CSV text: one row per month and segment, cells made inert."""
    lines = [list(DM_CSV_HEADERS[language])]
    for month in body["months"]:
        for c in month["segments"]:
            segment = c["name_ja"] if language == "ja" else c["segment"]
            rate = c["response_rate"]
            cells = [
                body["name"],
                month["month"],
                month["sent_on"],
                segment,
                c["segment_size"],
                c["mailed"],
                c["responses"],
                "" if rate is None else f"{rate:.4f}",
            ]
            lines.append([neutralise(str(x)) for x in cells])
    return csv_text(lines)
