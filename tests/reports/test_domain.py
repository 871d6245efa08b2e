"""The reports service's pure logic: folding customer states into rows and portfolio deltas,
and the shapes of what the API returns."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from decimal import Decimal

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.reports.consumer import decode
from services.reports.domain.portfolio import (
    CustomerRow,
    Delta,
    Entry,
    fold,
    problem_with,
    sum_deltas,
    touches_from,
)
from services.reports.views.csv import csv_encoding, csv_row, csv_text, neutralise
from services.reports.views.cursors import decode_cursor, encode_cursor
from services.reports.views.portfolio import amount_text, portfolio_body, share
from shared.cpm import SEGMENTS
from shared.events import CUSTOMER_STATES, DEADLETTER, CustomerState, DeadLetter
from tests.helpers import consumed

D = date(2025, 1, 1)


def day(n: int) -> date:
    return D + timedelta(days=n)


def state(
    seq,
    to,
    total,
    on,
    frm=None,
    supersedes=None,
    count=1,
    cause="purchase",
    corrects_from=None,
) -> CustomerState:
    return CustomerState(
        tenant_id="t",
        scope="all",
        customer_id="c1",
        seq=seq,
        from_segment=frm,
        to_segment=to,
        effective_on=day(on),
        cause=cause,
        purchase_count=count,
        total_amount=Decimal(total),
        first_purchase_on=day(0) if to else None,
        last_purchase_on=day(on) if to else None,
        tenure_days=on if to else None,
        lapse_days=0 if to else None,
        supersedes_seq=supersedes,
        corrects_from=None if corrects_from is None else day(corrects_from),
        schema_version=1 if corrects_from is None else 2,
    )


def entry(seq, on, segment, total, count=1) -> Entry:
    return Entry(seq, day(on), segment, Decimal(total), count, day(0) if segment else None, day(on))


def stored(*entries: Entry) -> tuple[CustomerRow, list[Entry]]:
    """A customer's stored row and timeline: the row is the last entry's state."""
    last = entries[-1]
    before = entries[-2] if len(entries) > 1 else None
    row = CustomerRow(
        seq=last.seq,
        segment=last.segment,
        purchase_count=last.purchase_count,
        total_amount=last.total_amount,
        first_purchase_on=last.first_purchase_on,
        last_purchase_on=last.last_purchase_on,
        home_branch_id=None,
        effective_on=last.effective_on,
        prev_segment=before.segment if before else None,
        prev_total_amount=before.total_amount if before else Decimal(0),
        prev_effective_on=before.effective_on if before else None,
    )
    return row, list(entries)


NEW = (None, [])


def deltas(*items) -> tuple[Delta, ...]:
    return tuple(Delta(day(on), seg, n, Decimal(amount)) for on, seg, n, amount in items)


E1 = entry(1, 0, "first_active", 10000)
LAPSE = entry(2, 240, "first_lapsed", 10000)

# (name, stored row and timeline, states in arrival order, expected deltas (netted per day and
#  segment, in day order), expected timeline after (seq, day) in seq order, withdrawn seqs,
#  applied, skipped)
FOLDS = [
    (
        "new customer",
        NEW,
        [state(1, "first_active", 10000, 0)],
        deltas((0, "first_active", 1, 10000)),
        [(1, 0)],
        [],
        1,
        0,
    ),
    (
        "two states of one customer in one batch, applied in seq order",
        NEW,
        [
            state(2, "fledgling_active", 25000, 30, "first_active", count=2),
            state(1, "first_active", 10000, 0),
        ],
        deltas(
            (0, "first_active", 1, 10000),
            (30, "first_active", -1, -10000),
            (30, "fledgling_active", 1, 25000),
        ),
        [(1, 0), (2, 30)],
        [],
        2,
        0,
    ),
    (
        "redelivery of applied states changes nothing",
        stored(E1, entry(2, 30, "fledgling_active", 25000, 2)),
        [state(1, "first_active", 10000, 0), state(2, "fledgling_active", 25000, 30)],
        (),
        [(1, 0), (2, 30)],
        [],
        0,
        2,
    ),
    (
        "a duplicate inside the batch counts once",
        NEW,
        [state(1, "first_active", 10000, 0), state(1, "first_active", 10000, 0)],
        deltas((0, "first_active", 1, 10000)),
        [(1, 0)],
        [],
        1,
        1,
    ),
    (
        "a return keeps the segment and lowers its sales",
        stored(entry(5, 100, "steady_active", 80000, 3)),
        [state(6, "steady_active", 75000, 120, "steady_active", cause="return")],
        deltas((120, "steady_active", 0, -5000)),
        [(5, 100), (6, 120)],
        [],
        1,
        0,
    ),
    (
        "all purchases voided: the customer leaves the portfolio",
        stored(E1),
        [state(2, None, 0, 3, "first_active", count=0, cause="void")],
        deltas((3, "first_active", -1, -10000)),
        [(1, 0), (2, 3)],
        [],
        1,
        0,
    ),
    (
        "a voided customer who buys again comes back from nowhere",
        stored(E1, entry(2, 3, None, 0, 0)),
        [state(3, "first_active", 5000, 10)],
        deltas((10, "first_active", 1, 5000)),
        [(1, 0), (2, 3), (3, 10)],
        [],
        1,
        0,
    ),
    (
        "a correction withdraws a lapse on its own day, then applies the late purchase on its day",
        stored(E1, LAPSE),
        [state(3, "fledgling_active", 20000, 50, "first_active", count=2, corrects_from=50)],
        deltas(
            (50, "first_active", -1, -10000),
            (50, "fledgling_active", 1, 20000),
            (240, "first_active", 1, 10000),
            (240, "first_lapsed", -1, -10000),
        ),
        [(1, 0), (3, 50)],
        [2],
        1,
        0,
    ),
    (
        "a correction withdraws every entry from its day, and its suffix is the new timeline",
        stored(
            E1,
            entry(2, 30, "fledgling_active", 25000, 2),
            entry(3, 60, "fledgling_active", 20000, 2),  # a return
            entry(4, 270, "fledgling_lapsed", 20000, 2),
        ),
        [
            # A late sale on day 20: fledgling from then, the old day-30 sale a third purchase.
            state(5, "fledgling_active", 15000, 20, "first_active", count=2, corrects_from=20),
            state(6, "fledgling_active", 30000, 30, "fledgling_active", count=3),
            state(7, "fledgling_active", 25000, 60, "fledgling_active", count=3),
            state(8, "fledgling_lapsed", 25000, 270, "fledgling_active", count=3, cause="lapse"),
        ],
        deltas(
            # from day 20 in fledgling_active (not from day 30), 5000 more from then on
            (20, "first_active", -1, -10000),
            (20, "fledgling_active", 1, 15000),
            (30, "first_active", 1, 10000),
            (30, "fledgling_active", -1, -10000),
            (270, "fledgling_active", 0, -5000),
            (270, "fledgling_lapsed", 0, 5000),
        ),
        [(1, 0), (5, 20), (6, 30), (7, 60), (8, 270)],
        [2, 3, 4],
        4,
        0,
    ),
    (
        "a correction from before the first entry withdraws all of it",
        stored(entry(1, 10, "first_active", 10000)),
        [
            state(2, "first_active", 5000, 5, corrects_from=5),
            state(3, "fledgling_active", 15000, 10, "first_active", count=2),
        ],
        deltas(
            (5, "first_active", 1, 5000),
            (10, "first_active", -2, -15000),
            (10, "fledgling_active", 1, 15000),
        ),
        [(2, 5), (3, 10)],
        [1],
        2,
        0,
    ),
    (
        "a correction of entries applied in the same batch: they never reach the timeline",
        stored(E1),
        [
            state(2, "first_lapsed", 10000, 240, "first_active", cause="lapse"),
            state(3, "fledgling_active", 20000, 50, "first_active", count=2, corrects_from=50),
        ],
        deltas((50, "first_active", -1, -10000), (50, "fledgling_active", 1, 20000)),
        [(1, 0), (3, 50)],
        [],
        2,
        0,
    ),
    (
        "a correction dated after every entry withdraws nothing",
        stored(E1),
        [state(2, "first_active", 8000, 30, "first_active", cause="return", corrects_from=30)],
        deltas((30, "first_active", 0, -2000)),
        [(1, 0), (2, 30)],
        [],
        1,
        0,
    ),
    (
        "a redelivered correction is not applied twice",
        stored(E1, entry(3, 50, "fledgling_active", 20000, 2)),
        [state(3, "fledgling_active", 20000, 50, count=2, corrects_from=50)],
        (),
        [(1, 0), (3, 50)],
        [],
        0,
        1,
    ),
    (
        "schema 1: supersedes_seq naming the last change withdraws it, like a correction",
        stored(E1, LAPSE),
        [state(3, "fledgling_active", 20000, 50, "first_active", supersedes=2, count=2)],
        deltas(
            (50, "first_active", -1, -10000),
            (50, "fledgling_active", 1, 20000),
            (240, "first_active", 1, 10000),
            (240, "first_lapsed", -1, -10000),
        ),
        [(1, 0), (3, 50)],
        [2],
        1,
        0,
    ),
    (
        "schema 1: supersedes_seq of a change never applied here withdraws nothing",
        stored(E1),
        [state(3, "fledgling_active", 20000, 50, "first_active", supersedes=2, count=2)],
        deltas((50, "first_active", -1, -10000), (50, "fledgling_active", 1, 20000)),
        [(1, 0), (3, 50)],
        [],
        1,
        0,
    ),
    (
        "schema 1: a state dated before the change it builds on counts from that change's day",
        stored(E1, LAPSE),
        [state(3, "first_lapsed", 8000, 100, "first_lapsed", cause="return")],
        deltas((240, "first_lapsed", 0, -2000)),
        [(1, 0), (2, 240), (3, 240)],
        [],
        1,
        0,
    ),
]


@pytest.mark.parametrize(
    ("before", "states", "expected", "timeline", "withdrawn", "applied", "skipped"),
    [case[1:] for case in FOLDS],
    ids=[case[0] for case in FOLDS],
)
def test_fold(before, states, expected, timeline, withdrawn, applied, skipped):
    row, entries = before
    folded = fold(row, entries, states)
    assert folded.deltas == expected
    assert [(e.seq, (e.effective_on - D).days) for e in folded.timeline] == timeline
    assert [e.seq for e in folded.removed] == withdrawn
    assert (folded.applied, folded.skipped) == (applied, skipped)
    last = folded.timeline[-1]
    r = folded.row
    assert (r.seq, r.segment, r.total_amount, r.effective_on) == (
        last.seq,
        last.segment,
        last.total_amount,
        last.effective_on,
    )
    if folded.applied:
        stored_seqs = {e.seq for e in entries}
        assert {e.seq for e in folded.added} == {s for s, _ in timeline} - stored_seqs
        assert folded.lowest == min(e.effective_on for e in (*folded.added, *folded.removed))


def test_touches_from_reaches_back_to_a_correction_and_an_undone_change():
    row, _ = stored(E1, LAPSE)
    plain = state(3, "first_lapsed", 9000, 250, cause="return")
    assert touches_from(row, [plain]) == day(250)
    assert touches_from(row, [plain, state(4, "first_active", 9000, 260, corrects_from=90)]) == day(
        90
    )
    undo = state(3, "fledgling_active", 20000, 300, supersedes=2, count=2)
    assert touches_from(row, [undo]) == day(240)
    assert touches_from(None, [undo]) == day(300)  # nothing applied here to undo


def test_fold_of_nothing_keeps_the_row():
    row, entries = stored(E1)
    assert fold(row, entries, []).row is row
    assert fold(None, [], []).row is None


def test_sum_deltas_adds_per_day_and_segment_and_drops_zeros():
    items = [
        ("t", "all", Delta(day(0), "first_active", 1, Decimal(100))),
        ("t", "all", Delta(day(0), "first_active", 1, Decimal(50))),
        ("t", "all", Delta(day(1), "first_active", -1, Decimal(-100))),
        ("t", "b1", Delta(day(1), "steady_active", -1, Decimal(-10))),
        ("t", "b1", Delta(day(1), "steady_active", 1, Decimal(10))),
    ]
    sums = sum_deltas(items)
    assert sums.daily == {
        ("t", "all", day(0), "first_active"): (2, Decimal(150)),
        ("t", "all", day(1), "first_active"): (-1, Decimal(-100)),
    }
    assert sums.monthly == {("t", "all", day(0), "first_active"): (1, Decimal(50))}
    assert sums.current == {("t", "all", "first_active"): (1, Decimal(50))}


# --- property: however a customer's states arrive, the deltas add up to the customer ------------

segment_or_none = st.sampled_from((*SEGMENTS, None))


@st.composite
def histories(draw):
    """A customer's states (seq 1..n; some open a correction, dated back to its day; some of the
    old contract undo the change before), delivered in batches with redeliveries."""
    n = draw(st.integers(1, 8))
    states, on = [], 0
    for seq in range(1, n + 1):
        on = max(0, on + draw(st.integers(-60, 40)))
        segment = draw(segment_or_none)
        total = draw(st.integers(0, 200_000)) if segment else 0
        kind = draw(st.sampled_from(("plain", "correction", "supersedes")))
        states.append(
            state(
                seq,
                segment,
                total,
                on,
                supersedes=seq - 1 if seq > 1 and kind == "supersedes" else None,
                corrects_from=on if kind == "correction" else None,
            )
        )
    deliveries = draw(st.lists(st.integers(1, n), min_size=1, max_size=12))
    batches = [states[:k] if i % 2 else states[k - 1 : k + 1] for i, k in enumerate(deliveries)]
    return states, [*batches, states]


@given(histories())
def test_deltas_always_add_up_to_the_stored_timeline(history):
    """Whatever arrives how often, the deltas so far add up to the customer's last entry and,
    day by day, to the entry in force that day; the timeline stays in date order."""
    states, batches = history
    row, timeline, daily = None, [], Counter()
    for batch in batches:
        folded = fold(row, timeline, batch)
        row = folded.row
        gone = {e.seq for e in folded.removed}
        timeline = sorted(
            [e for e in timeline if e.seq not in gone] + list(folded.added), key=seq_of
        )
        assert timeline == list(folded.timeline) or not folded.applied
        for d in folded.deltas:
            daily[(d.day, d.segment)] += d.customers
    days = [e.effective_on for e in timeline]
    assert days == sorted(days)
    assert row.seq == states[-1].seq == timeline[-1].seq
    running: Counter = Counter()
    for when in sorted({d for d, _ in daily} | set(days)):
        for (d, segment), n in daily.items():
            if d == when:
                running[segment] += n
        in_force = [e for e in timeline if e.effective_on <= when]
        expected = {in_force[-1].segment: 1} if in_force and in_force[-1].segment else {}
        assert {k: v for k, v in running.items() if v} == expected, when


def seq_of(e: Entry) -> int:
    return e.seq


# --- validation of consumed states ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({}, None),
        ({"seq": 0}, "seq: must be positive"),
        ({"customer_id": ""}, "tenant_id, scope and customer_id must not be empty"),
    ],
)
def test_problem_with(change, reason):
    assert problem_with(state(1, "first_active", 100, 0).model_copy(update=change)) == reason


@pytest.mark.parametrize(
    ("field", "value"), [("to_segment", "vip_active"), ("from_segment", "loyal")]
)
def test_an_unknown_segment_is_dead_lettered_with_its_reason(field, value):
    odd = {**state(1, "first_active", 100, 0).model_dump(mode="json"), field: value}
    good = state(2, "first_active", 100, 0).model_dump_json().encode()
    states, dead = decode(
        [consumed(CUSTOMER_STATES, orjson.dumps(odd)), consumed(CUSTOMER_STATES, good, 1)]
    )
    assert [s.seq for s in states] == [2]
    [(topic, _, letter)] = dead
    reason = DeadLetter.model_validate_json(letter).reason
    assert topic == DEADLETTER and reason.startswith(f"{field}: ") and repr(value) in reason


# --- response shapes -----------------------------------------------------------------------------


def test_portfolio_lists_all_ten_segments_with_zeros_and_shares():
    body = portfolio_body(
        "all",
        day(0),
        {"first_active": (3, Decimal("30000.00")), "loyal_lapsed": (1, Decimal("90000"))},
    )
    assert [s["segment"] for s in body["segments"]] == list(SEGMENTS)
    assert body["total_customers"] == 4 and body["total_sales"] == "120000"
    first = body["segments"][0]
    assert first == {
        "segment": "first_active",
        "name_ja": "初回客",
        "customers": 3,
        "sales": "30000",
        "customer_share": 0.75,
        "sales_share": 0.25,
    }
    assert body["segments"][2]["customers"] == 0 and body["segments"][2]["sales_share"] == 0


def test_empty_portfolio_has_zero_shares():
    body = portfolio_body("b1", day(0), {})
    assert body["total_customers"] == 0 and body["total_sales"] == "0"
    assert all(s["customer_share"] == 0 and s["sales_share"] == 0 for s in body["segments"])


@pytest.mark.parametrize(
    ("part", "whole", "expected"),
    [(1, 3, 0.3333), (2, 3, 0.6667), (0, 0, 0.0), (5, 0, 0.0), (1, 1, 1.0)],
)
def test_share(part, whole, expected):
    assert share(part, whole) == expected


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("105607.00"), "105607"),
        (Decimal("1234.50"), "1234.5"),
        (Decimal("1E+5"), "100000"),
        (Decimal("-500.00"), "-500"),
        (Decimal("0.00"), "0"),
        (None, None),
    ],
)
def test_amount_text(value, text):
    assert amount_text(value) == text


@pytest.mark.parametrize(
    ("cell", "inert"),
    [
        ("=cmd()", "'=cmd()"),
        ("+1+1", "'+1+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("-500", "-500"),
        ("A-0104", "A-0104"),
        ("優良客", "優良客"),
        ("", ""),
    ],
)
def test_neutralise(cell, inert):
    assert neutralise(cell) == inert


def test_csv_row_in_japanese_and_english():
    item = {
        "customer_id": "=cmd()",
        "total_amount": "105607",
        "purchase_count": 4,
        "first_purchase_on": "2003-03-30",
        "last_purchase_on": "2003-10-28",
        "tenure_days": 212,
        "lapse_days": 1219,
        "segment": "loyal_lapsed",
    }
    assert csv_row(item, "ja") == [
        "'=cmd()",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "105607",
        "4",
        "2003-03-30",
        "2003-10-28",
        "212",
        "1219",
        "優良離脱客",
    ]
    assert csv_row(item, "en")[-1] == "loyal_lapsed"
    named = {**item, "customer_name": "@山田", "email": "a@example.jp", "mail_consent": True}
    assert csv_row(named, "ja")[1:4] == ["'@山田", "", "a@example.jp"]
    assert csv_row(named, "ja")[7] == "可" and csv_row(named, "en")[7] == "true"
    assert csv_text([["a,b", 'say "hi"']]) == '"a,b","say ""hi"""\r\n'


def test_cursor_round_trip_and_rejects_foreign_cursors():
    cursor = encode_cursor(Decimal("105607.00"), "顧客-1")
    assert decode_cursor(cursor) == (Decimal("105607.00"), "顧客-1")
    for bad in ("x", "!!!", encode_cursor(Decimal(1), "a")[:-3], "WzEsMl0"):
        with pytest.raises(ValueError):
            decode_cursor(bad)


@pytest.mark.parametrize(
    ("name", "codec"),
    [("utf-8", "utf-8"), ("UTF8", "utf-8"), ("cp932", "cp932"), ("Shift_JIS", "cp932")],
)
def test_csv_encoding(name, codec):
    assert csv_encoding(name) == codec


def test_csv_encoding_rejects_others():
    with pytest.raises(ValueError):
        csv_encoding("latin-1")
