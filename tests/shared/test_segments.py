"""The segment ids belong to the contracts: a message naming another id does not validate (the
consumers dead-letter it with pydantic's reason), and the CPM rules classify into the same ten."""

from __future__ import annotations

from datetime import date

import orjson
import pytest
from pydantic import ValidationError

from shared.cpm import STATES, TIERS
from shared.deadletters import decode_records
from shared.events import (
    DEADLETTER,
    SCHEMA_VERSION,
    SEGMENT_CHANGES,
    SEGMENTS,
    CustomerState,
    DeadLetter,
    SegmentChange,
)
from tests.helpers import consumed

CHANGE = {
    "tenant_id": "t",
    "scope": "all",
    "customer_id": "c",
    "seq": 1,
    "from_segment": None,
    "to_segment": "first_active",
    "effective_on": date(2025, 1, 1),
    "cause": "purchase",
    "purchase_count": 1,
    "total_amount": "1000",
    "first_purchase_on": None,
    "last_purchase_on": None,
    "tenure_days": None,
    "lapse_days": None,
}


def test_the_ids_are_tier_and_state():
    assert SEGMENTS == tuple(f"{t}_{s}" for t in TIERS for s in STATES)


@pytest.mark.parametrize("model", [SegmentChange, CustomerState])
@pytest.mark.parametrize("field", ["from_segment", "to_segment"])
def test_an_unknown_segment_does_not_validate(model, field):
    assert model.model_validate({**CHANGE, field: "first_lapsed"})
    with pytest.raises(ValidationError) as caught:
        model.model_validate({**CHANGE, field: "vip_active"})
    assert caught.value.errors()[0]["loc"] == (field,)


def test_the_figures_before_name_a_known_segment_too():
    before = {"segment": "loyal", "purchase_count": 1, "total_amount": "1", "first_purchase_on": None,
              "last_purchase_on": None, "tenure_days": None, "lapse_days": None}  # fmt: skip
    with pytest.raises(ValidationError):
        CustomerState.model_validate({**CHANGE, "before": before})


# --- the one schema_version policy of every consumer (shared.events.SCHEMA_VERSION) -------------


@pytest.mark.parametrize("model", [SegmentChange, CustomerState])
@pytest.mark.parametrize("service", ["reports", "notifier"])
def test_versions_up_to_the_contracts_are_read_and_a_newer_one_is_dead_lettered(model, service):
    versions = [{}, {"schema_version": 1}, {"schema_version": SCHEMA_VERSION}]
    versions.append({"schema_version": SCHEMA_VERSION + 1})
    records = [
        consumed(SEGMENT_CHANGES, orjson.dumps({**CHANGE, **v}, default=str), offset)
        for offset, v in enumerate(versions)
    ]
    read, dead = decode_records(records, model, service)
    assert [m.schema_version for m in read] == [1, 1, SCHEMA_VERSION]
    [(topic, _, letter)] = dead
    reason = DeadLetter.model_validate_json(letter).reason
    assert topic == DEADLETTER and reason.startswith("schema_version: "), reason
