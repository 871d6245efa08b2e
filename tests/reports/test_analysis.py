"""The reports service's analyses: the owner's questions, RFM ranks and filters, the LTV
projection, DM response tables."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from services.reports.domain.dm import DmMonth
from services.reports.domain.ltv import (
    RateChange,
    Simulation,
    changed_matrix,
    measured_model,
    project,
)
from services.reports.domain.questions import dormant_window, previous_quarter, quarter_label
from services.reports.domain.rfm import (
    DEFAULT_RFM,
    RfmThresholds,
    f_rank,
    m_rank,
    r_rank,
    rfm_filter,
)
from services.reports.views.dm import dm_body, dm_csv
from services.reports.views.ltv import simulation_body
from services.reports.views.questions import sales_split
from shared.cpm import SEGMENTS


@pytest.mark.parametrize(
    ("month", "first", "last"),
    [
        (date(2025, 3, 1), date(2024, 10, 1), date(2024, 12, 31)),
        (date(2025, 4, 1), date(2025, 1, 1), date(2025, 3, 31)),
        (date(2025, 6, 1), date(2025, 1, 1), date(2025, 3, 31)),
        (date(2025, 12, 1), date(2025, 7, 1), date(2025, 9, 30)),
    ],
)
def test_previous_quarter(month, first, last):
    assert previous_quarter(month) == (first, last)
    assert quarter_label(first) == f"{first.year}-Q{(first.month + 2) // 3}"


def test_dormant_window_is_60_to_90_days():
    assert dormant_window(date(2025, 3, 31)) == (date(2024, 12, 31), date(2025, 1, 30))


def test_sales_split_counts_returns_against_repeat_sales():
    moves = [
        {"from_segment": "new", "to_segment": "first_active", "customers": 3, "sales": 30000},
        {
            "from_segment": "first_active",
            "to_segment": "fledgling_active",
            "customers": 1,
            "sales": 9000,
        },
        {
            "from_segment": "steady_active",
            "to_segment": "steady_lapsed",
            "customers": 4,
            "sales": 0,
        },
        {
            "from_segment": "loyal_active",
            "to_segment": "loyal_active",
            "customers": 1,
            "sales": -1000,
        },
    ]
    assert sales_split(moves) == {
        "total_sales": "38000",
        "first_time": {"customers": 3, "sales": "30000", "share": 0.7895},
        "repeat": {"customers": 2, "sales": "8000", "share": 0.2105},
    }


# --- RFM -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lapse", "count", "total", "ranks"),
    [
        (10, 5, Decimal(25000), (5, 4, 2)),  # the seed's example, with 10,000-yen money borders
        (365, 5, Decimal(50000), (2, 4, 4)),  # a year: R2
        (366, 1, Decimal(19999), (1, 1, 1)),
        (30, 10, Decimal(100000), (5, 5, 5)),
        (31, 2, Decimal(20000), (4, 2, 2)),
        (180, 4, Decimal(30000), (4, 4, 3)),
    ],
)
def test_ranks(lapse, count, total, ranks):
    t = DEFAULT_RFM
    assert (r_rank(lapse, t), f_rank(count, t), m_rank(total, t)) == ranks


def test_thresholds_must_increase():
    with pytest.raises(ValidationError):
        RfmThresholds(recency_days=(30, 30, 60, 90))
    with pytest.raises(ValidationError):
        RfmThresholds(frequency=(0, 2, 3, 4))
    with pytest.raises(ValidationError):
        RfmThresholds.model_validate({"monetary": [1, 2, 3]})


thresholds = st.builds(
    lambda r, f, m: RfmThresholds(
        recency_days=tuple(sorted(r)), frequency=tuple(sorted(f)), monetary=tuple(sorted(m))
    ),
    st.sets(st.integers(0, 500), min_size=4, max_size=4),
    st.sets(st.integers(1, 30), min_size=4, max_size=4),
    st.sets(st.integers(0, 300_000).map(Decimal), min_size=4, max_size=4),
)
rank_range = st.tuples(st.integers(1, 5), st.integers(1, 5)).map(lambda x: tuple(sorted(x)))


@given(
    thresholds,
    st.integers(0, 900),
    st.integers(1, 40),
    st.integers(0, 400_000),
    rank_range,
    rank_range,
    rank_range,
)
def test_rank_filter_selects_exactly_the_ranks_in_range(t, lapse, count, total, r, f, m):
    """The SQL conditions of a rank filter agree with the ranks shown for each customer."""
    today = date(2025, 6, 30)
    last = today - timedelta(days=lapse)
    w = rfm_filter(t, today, r, f, m)
    selected = (
        (w["last_from"] is None or last >= w["last_from"])
        and (w["last_to"] is None or last <= w["last_to"])
        and (w["count_from"] is None or count >= w["count_from"])
        and (w["count_below"] is None or count < w["count_below"])
        and (w["total_from"] is None or total >= w["total_from"])
        and (w["total_below"] is None or total < w["total_below"])
    )
    ranks = (r_rank(lapse, t), f_rank(count, t), m_rank(Decimal(total), t))
    wanted = all(lo <= x <= hi for x, (lo, hi) in zip(ranks, (r, f, m), strict=True))
    assert selected == wanted


# --- LTV -------------------------------------------------------------------------------------------

M = date(2025, 1, 1)


def move(frm, to, customers, sales):
    return {
        "span": 1,
        "month": M,
        "from_segment": frm,
        "to_segment": to,
        "customers": customers,
        "sales": Decimal(sales),
    }


def model():
    return measured_model(
        [M],
        {date(2024, 12, 1): {"first_active": 100}, M: {"first_active": 90, "fledgling_active": 20}},
        [
            move("first_active", "fledgling_active", 20, 40000),
            move("new", "first_active", 10, 5000),
            move("first_active", "first_active", 4, 4000),  # bought again, same segment
            {**move("first_active", "fledgling_active", 3, 0), "span": 6},  # not this view
        ],
    )


def test_measured_model_by_hand():
    matrix, inflow, per_customer = model()
    assert matrix["first_active"] == {"first_active": 0.8, "fledgling_active": 0.2}
    assert matrix["loyal_active"] == {"loyal_active": 1.0}  # never seen: stays
    assert inflow["first_active"] == 10 and inflow["fledgling_active"] == 0
    assert per_customer["first_active"] == Decimal("100.00")
    assert per_customer["fledgling_active"] == Decimal("2000.00")


def test_projection_by_hand():
    matrix, inflow, per_customer = model()
    (state, sales), _ = project(
        {"first_active": 90, "fledgling_active": 20}, matrix, inflow, per_customer, 2
    )
    assert state["first_active"] == pytest.approx(82)
    assert state["fledgling_active"] == pytest.approx(38)
    assert sales == pytest.approx(82 * 100 + 38 * 2000)


def test_changed_rates_keep_each_row_sum():
    matrix, *_ = model()
    by_rate = changed_matrix(
        matrix,
        [
            RateChange.model_validate(
                {"from": "first_active", "to": "fledgling_active", "rate": 0.5}
            )
        ],
    )
    assert by_rate["first_active"] == pytest.approx({"first_active": 0.5, "fledgling_active": 0.5})
    by_factor = changed_matrix(
        matrix,
        [
            RateChange.model_validate(
                {"from": "first_active", "to": "fledgling_active", "factor": 2}
            )
        ],
    )
    assert by_factor["first_active"] == pytest.approx(
        {"first_active": 0.6, "fledgling_active": 0.4}
    )
    only = changed_matrix(
        {"steady_active": {"steady_lapsed": 1.0}},
        [RateChange.model_validate({"from": "steady_active", "to": "steady_lapsed", "rate": 0.25})],
    )
    assert only["steady_active"] == {"steady_lapsed": 0.25, "steady_active": 0.75}
    leaky = {**matrix, "first_active": {"first_active": 0.5, "none": 0.4, "fledgling_active": 0.1}}
    with pytest.raises(ValueError, match="exceeds"):
        changed_matrix(
            leaky,
            [
                RateChange.model_validate(
                    {"from": "first_active", "to": "fledgling_active", "rate": 0.7}
                )
            ],
        )


def test_simulation_body_shows_the_difference():
    matrix, inflow, per_customer = model()
    change = RateChange.model_validate(
        {"from": "first_active", "to": "fledgling_active", "rate": 0.5}
    )
    body = simulation_body(
        scope="all",
        base_month=M,
        window=[M],
        start={"first_active": 90, "fledgling_active": 20},
        matrix=matrix,
        inflow=inflow,
        per_customer=per_customer,
        horizons=[1, 12],
        changes=[change],
    )
    assert body["baseline"][0]["monthly_sales"] == "84200"
    assert body["baseline"][0]["customers"]["first_active"] == 82
    scenario = body["scenario"]["horizons"][0]
    assert scenario["customers"]["fledgling_active"] == pytest.approx(20 + 45)
    diff = body["difference"][0]
    assert diff["customers"]["fledgling_active"] == pytest.approx(65 - 38)
    assert diff["total_customers"] == 0  # only moves between segments changed
    assert Decimal(diff["cumulative_sales"]) == Decimal(scenario["cumulative_sales"]) - Decimal(
        body["baseline"][0]["cumulative_sales"]
    )
    assert body["scenario"]["changes"] == [
        {"from": "first_active", "to": "fledgling_active", "rate": 0.5}
    ]


def test_simulation_requests_are_validated():
    assert Simulation().horizons == [12, 24, 36]
    assert Simulation(horizons=[36, 12, 12]).horizons == [12, 36]
    for bad in (
        {"changes": [{"from": "first_active", "to": "fledgling_active", "rate": 0.1, "factor": 2}]},
        {"changes": [{"from": "first", "to": "fledgling_active", "rate": 0.1}]},
        {"window_months": 0},
        {"horizons": [121]},
        {"colour": "red"},
    ):
        with pytest.raises(ValidationError):
            Simulation.model_validate(bad)


# --- DM response tables ---------------------------------------------------------------------------


def test_dm_body_and_csv():
    table = {"table_id": 7, "name": "=cmd()", "scope": "all", "created_at": datetime(2025, 1, 1)}
    entries = [
        {
            "month": date(2025, 4, 1),
            "segment": "loyal_active",
            "sent_on": date(2025, 4, 10),
            "segment_size": 50,
            "mailed": 40,
            "responses": 8,
        },
        {
            "month": date(2025, 4, 1),
            "segment": "first_active",
            "sent_on": date(2025, 4, 10),
            "segment_size": 500,
            "mailed": 100,
            "responses": 1,
        },
        {
            "month": date(2025, 5, 1),
            "segment": "loyal_active",
            "sent_on": date(2025, 5, 1),
            "segment_size": 0,
            "mailed": 0,
            "responses": 0,
        },
    ]
    body = dm_body(table, entries)
    april = body["months"][0]
    assert [c["segment"] for c in april["segments"]] == ["first_active", "loyal_active"]
    assert april["segments"][1] == {
        "segment": "loyal_active",
        "name_ja": "優良客",
        "segment_size": 50,
        "mailed": 40,
        "responses": 8,
        "response_rate": 0.2,
        "reach": 0.8,
    }
    assert body["months"][1]["segments"][0]["response_rate"] is None
    assert body["by_segment"] == [
        {
            "segment": "first_active",
            "name_ja": "初回客",
            "mailed": 100,
            "responses": 1,
            "response_rate": 0.01,
        },
        {
            "segment": "loyal_active",
            "name_ja": "優良客",
            "mailed": 40,
            "responses": 8,
            "response_rate": 0.2,
        },
    ]
    rows = list(csv.reader(io.StringIO(dm_csv(body, "en"), newline="")))
    assert rows[0][0] == "table" and rows[1] == [
        "'=cmd()",
        "2025-04",
        "2025-04-10",
        "first_active",
        "500",
        "100",
        "1",
        "0.0100",
    ]
    assert rows[3][-1] == ""


def test_dm_month_validation():
    ok = DmMonth.model_validate(
        {"segments": [{"segment": "loyal_active", "mailed": 3, "responses": 3}]}
    )
    assert ok.sent_on is None
    for bad in (
        {"segments": [{"segment": "loyal_active", "mailed": 3, "responses": 4}]},
        {"segments": [{"segment": "loyal_active", "mailed": -1, "responses": 0}]},
        {"segments": [{"segment": "loyal", "mailed": 1, "responses": 0}]},
        {"segments": [{"segment": "loyal_active", "mailed": 1, "responses": 0}] * 2},
        {"segments": []},
    ):
        with pytest.raises(ValidationError):
            DmMonth.model_validate(bad)
    assert len(SEGMENTS) == 10
