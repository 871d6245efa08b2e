"""The contracts of Kizuna's Kafka topics: one module per topic, imported by every service.

Keys are ``"{tenant_id}:{customer_id}"``; values are UTF-8 JSON; every event carries
``schema_version`` (absent on input means 1); a consumer reads up to ``SCHEMA_VERSION`` and
dead-letters a newer one (segment_changes.py says why).
"""

from shared.events.customer_states import CustomerState, FiguresBefore
from shared.events.deadletter import DeadLetter
from shared.events.purchases import LineItem, PurchaseEvent
from shared.events.segment_changes import SCHEMA_VERSION, Cause, SegmentChange
from shared.events.segments import SEGMENTS, Segment

PURCHASES = "kizuna.purchases.v1"
CUSTOMER_STATES = "kizuna.customer-states.v1"
SEGMENT_CHANGES = "kizuna.segment-changes.v1"
DEADLETTER = "kizuna.deadletter.v1"
ALL_TOPICS = (PURCHASES, CUSTOMER_STATES, SEGMENT_CHANGES, DEADLETTER)


def message_key(tenant_id: str, customer_id: str) -> bytes:
    return f"{tenant_id}:{customer_id}".encode()


__all__ = [
    "ALL_TOPICS",
    "CUSTOMER_STATES",
    "DEADLETTER",
    "PURCHASES",
    "SCHEMA_VERSION",
    "SEGMENTS",
    "SEGMENT_CHANGES",
    "Cause",
    "CustomerState",
    "DeadLetter",
    "FiguresBefore",
    "LineItem",
    "PurchaseEvent",
    "Segment",
    "SegmentChange",
    "message_key",
]
