"""The outbox payloads are the contracts: every field, exactly as the pydantic models write them."""

import json
from datetime import date
from decimal import Decimal

import pytest

from services.classifier.domain import Change
from services.classifier.store import outbox_rows
from shared.cpm import Figures
from shared.events import CUSTOMER_STATES, SEGMENT_CHANGES, CustomerState, SegmentChange

F1 = Figures(1, Decimal("12000.00"), date(2026, 1, 5), date(2026, 1, 5), "shibuya")
F2 = Figures(2, Decimal("20500.50"), date(2026, 1, 5), date(2026, 2, 1), "shibuya")

CHANGES = [
    Change("all", 1, date(2026, 1, 5), "purchase", None, None, "first_active", F1, 0),
    Change("all", 2, date(2026, 2, 1), "purchase", "first_active", F1, "fledgling_active", F2, 3),
    Change(
        "umeda", 3, date(2026, 9, 29), "lapse", "fledgling_active", F2, "fledgling_lapsed", F2, 0
    ),
    Change(
        "all",
        4,
        date(2026, 3, 1),
        "purchase",
        "fledgling_active",
        F2,
        "fledgling_active",
        F2,
        0,
        corrects_from=date(2026, 3, 1),
    ),
    Change("all", 5, date(2026, 3, 2), "void", "fledgling_active", F2, None, None, 0),
    Change("all", 6, date(2026, 3, 3), "return", "fledgling_active", F2, "fledgling_active", F1, 0),
]


@pytest.mark.parametrize("change", CHANGES)
def test_payloads_equal_what_the_models_write(change):
    rows = outbox_rows("demo", "C1", change)
    assert rows[0][0] == CUSTOMER_STATES and all(key == "demo:C1" for _, key, _ in rows)
    for topic, _, payload in rows:
        model = CustomerState if topic == CUSTOMER_STATES else SegmentChange
        parsed = model.model_validate_json(payload)
        assert parsed.model_dump(mode="json") == json.loads(payload)
    topics = [t for t, _, _ in rows]
    assert (SEGMENT_CHANGES in topics) == (
        change.before_segment != change.segment or change.corrects_from is not None
    )
    payload = json.loads(rows[0][2])
    assert payload["schema_version"] == 2 and payload["supersedes_seq"] is None
    assert payload["corrects_from"] == (
        change.corrects_from.isoformat() if change.corrects_from else None
    )


def test_figures_and_before():
    state = json.loads(outbox_rows("demo", "C1", CHANGES[1])[0][2])
    assert state["before"] == {
        "segment": "first_active",
        "purchase_count": 1,
        "total_amount": "12000.00",
        "first_purchase_on": "2026-01-05",
        "last_purchase_on": "2026-01-05",
        "tenure_days": 0,
        "lapse_days": 27,
    }
    assert (state["tenure_days"], state["lapse_days"], state["total_amount"]) == (27, 0, "20500.50")
    assert json.loads(outbox_rows("demo", "C1", CHANGES[0])[0][2])["before"] is None
