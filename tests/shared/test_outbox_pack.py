"""One outbox row carries many records: packing and unpacking keep every record exactly."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from shared.outbox import pack_outbox, unpack_outbox

TOPICS = st.sampled_from(["kizuna.customer-states.v1", "kizuna.deadletter.v1"])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@given(st.lists(st.tuples(TOPICS, st.text(), JSON_VALUES), min_size=1, max_size=20))
def test_records_come_back_in_order_with_keys_and_values_intact(records):
    rows = [(topic, key, json.dumps(value)) for topic, key, value in records]
    unpacked = list(unpack_outbox(pack_outbox(rows)))
    assert [(t, k.decode(), json.loads(p)) for t, k, p in unpacked] == [
        (topic, key, value) for topic, key, value in records
    ]


def test_keys_with_separators_and_pretty_printed_payloads_survive():
    rows = [
        ("t", "tenant:客\t1\n", json.dumps({"a": "x\ny\tz", "b": [1, 2]}, indent=2)),
        ("t", "plain", b'{"bytes": true}'),
    ]
    unpacked = list(unpack_outbox(pack_outbox(rows)))
    assert [k for _, k, _ in unpacked] == ["tenant:客\t1\n".encode(), b"plain"]
    assert json.loads(unpacked[0][2]) == {"a": "x\ny\tz", "b": [1, 2]}
    assert unpacked[1][2] == b'{"bytes": true}'
