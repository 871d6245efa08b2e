"""Reports history against the real broker and PostgreSQL: customer states consumed in-process,
read back over the HTTP API (ASGI). History, as-of, transitions and the six-month view must equal
classifying the event store from scratch; the maintained tables must equal a recompute from the
stored timelines; a hand-made month must give the hand-computed table."""

from __future__ import annotations

import csv
import io
import itertools
import random
import uuid
from collections import Counter, defaultdict
from datetime import date, timedelta
from decimal import Decimal

import asyncpg
import pytest

from services.reports.app import app as reports_app
from services.reports.domain.calendar import add_months, month_end, months
from services.reports.domain.portfolio import Entry
from services.reports.domain.timeline import NONE
from shared.events import CustomerState
from shared.settings import get_settings
from tests.helpers import api_key
from tests.reports.service import processed, publish
from tests.reports.test_history import (
    classifier_stream,
    recomputed_moves,
    true_cells,
    truth,
)

pytestmark = pytest.mark.integration


def pin_clock(monkeypatch, day: date) -> None:
    monkeypatch.setenv("KIZUNA_NOW", f"{day.isoformat()}T12:00:00+09:00")
    get_settings.cache_clear()


def counts_of(body_segments) -> dict:
    return {
        s["segment"]: (s["customers"], Decimal(s["sales"])) for s in body_segments if s["customers"]
    }


def expected_counts(stream, scope, day) -> dict:
    out: dict = {}
    for segment, total in truth(stream, scope, day).values():
        c, s = out.get(segment, (0, Decimal(0)))
        out[segment] = (c + 1, s + total)
    return out


async def stored_timelines(service_pool, tenant) -> dict:
    rows = await service_pool.fetch(
        "SELECT scope, customer_id, seq, effective_on, segment, purchase_count, total_amount,"
        " first_purchase_on, last_purchase_on FROM report_timeline WHERE tenant_id = $1"
        " ORDER BY scope, customer_id, seq",
        tenant,
    )
    out = defaultdict(list)
    for r in rows:
        out[(r["scope"], r["customer_id"])].append(
            Entry(
                r["seq"],
                r["effective_on"],
                r["segment"],
                r["total_amount"],
                r["purchase_count"],
                r["first_purchase_on"],
                r["last_purchase_on"],
            )
        )
    return out


async def assert_tables_equal_a_recompute(service_pool, tenant, first: date, last: date) -> None:
    """The maintained tables against what their definitions compute from the stored data."""
    timelines = await stored_timelines(service_pool, tenant)
    stored = {
        (r["scope"], r["span"], r["month"], r["from_segment"], r["to_segment"]): (
            r["customers"],
            r["sales"],
            r["buyers"],
        )
        for r in await service_pool.fetch(
            "SELECT * FROM report_moves WHERE tenant_id = $1"
            " AND (customers <> 0 OR sales <> 0 OR buyers <> 0)",
            tenant,
        )
    }
    assert stored == recomputed_moves(timelines, first, last)
    monthly = await service_pool.fetch(
        "SELECT scope, month, segment, customers, sales FROM portfolio_monthly_deltas"
        " WHERE tenant_id = $1 AND (customers <> 0 OR sales <> 0) ORDER BY 1, 2, 3",
        tenant,
    )
    rolled = await service_pool.fetch(
        "SELECT scope, date_trunc('month', day)::date AS month, segment, sum(customers) AS c,"
        " sum(sales) AS s FROM portfolio_daily_deltas WHERE tenant_id = $1 GROUP BY 1, 2, 3"
        " HAVING sum(customers) <> 0 OR sum(sales) <> 0 ORDER BY 1, 2, 3",
        tenant,
    )
    assert [tuple(r) for r in monthly] == [tuple(r) for r in rolled]
    # Each customer's row is the last entry of their timeline.
    rows = await service_pool.fetch(
        "SELECT scope, customer_id, seq, segment FROM report_customers WHERE tenant_id = $1",
        tenant,
    )
    assert {(r["scope"], r["customer_id"]): (r["seq"], r["segment"]) for r in rows} == {
        k: (v[-1].seq, v[-1].segment) for k, v in timelines.items()
    }


# --- a random stream from the classifier's own domain ------------------------------------------


@pytest.mark.parametrize("seed", [11, 12])
async def test_history_as_of_and_transitions_equal_classifying_the_event_store(
    client, producer, service_pool, monkeypatch, seed
):
    tenant = f"h{uuid.uuid4().hex[:10]}"
    stream = classifier_stream(seed, tenant=tenant)
    assert stream.stats["corrections"] and stream.stats["lapse"] and stream.stats["void"]
    # In five deliveries, so corrections often withdraw entries a batch before stored; a slice
    # is delivered twice (redelivery changes nothing).
    cuts = [0, *sorted(random.Random(seed).sample(range(1, len(stream.states)), 4))]
    cuts.append(len(stream.states))
    for lo, hi in itertools.pairwise(cuts):
        await processed(service_pool, await publish(producer, stream.states[lo:hi]))
    await processed(service_pool, await publish(producer, stream.states[50:120]))
    pin_clock(monkeypatch, stream.today)
    h = await api_key(service_pool, tenant)

    await assert_tables_equal_a_recompute(
        service_pool, tenant, stream.start, add_months(stream.today, 7)
    )

    for scope in stream.scopes:
        # The portfolio as of past days.
        for m in months(stream.start, stream.today):
            for day in (m + timedelta(days=13), min(month_end(m), stream.today)):
                body = (
                    await client.get(
                        "/v1/portfolio",
                        params={"scope": scope, "as_of": day.isoformat()},
                        headers=h,
                    )
                ).json()
                assert counts_of(body["segments"]) == expected_counts(stream, scope, day), (
                    scope,
                    day,
                )

        # Monthly history: every month-end (this month: today).
        body = (
            await client.get(
                "/v1/portfolio/history",
                params={"scope": scope, "granularity": "month", "from": "2023-01"},
                headers=h,
            )
        ).json()
        assert body["periods"][0] == "2023-01" and body["as_of"][-1] == stream.today.isoformat()
        for i, as_of in enumerate(body["as_of"]):
            got = {
                s["segment"]: (s["customers"][i], Decimal(s["sales"][i]))
                for s in body["segments"]
                if s["customers"][i]
            }
            want = expected_counts(stream, scope, date.fromisoformat(as_of))
            assert got == want, (scope, as_of)
            assert body["total_customers"][i] == sum(c for c, _ in want.values())

        # Daily history over a window.
        body = (
            await client.get(
                "/v1/portfolio/history",
                params={
                    "scope": scope,
                    "granularity": "day",
                    "from": "2024-02-20",
                    "to": "2024-04-10",
                },
                headers=h,
            )
        ).json()
        assert len(body["periods"]) == 51
        for i, as_of in enumerate(body["as_of"]):
            got = {
                s["segment"]: (s["customers"][i], Decimal(s["sales"][i]))
                for s in body["segments"]
                if s["customers"][i]
            }
            assert got == expected_counts(stream, scope, date.fromisoformat(as_of)), as_of

        # Transition tables and the six-month view.
        body = (
            await client.get(
                "/v1/transitions", params={"scope": scope, "from": "2023-02"}, headers=h
            )
        ).json()
        assert body["from"] == "2023-02" and body["to"] == stream.today.strftime("%Y-%m")
        for month in body["months"]:
            m = date.fromisoformat(month["month"] + "-01")
            want = true_cells(stream, scope, m, today=stream.today)
            got = Counter({(c["from"], c["to"] or NONE): c["customers"] for c in month["cells"]})
            assert got == Counter({k: v for k, v in want.items() if k != ("new", NONE)}), m
            assert month["complete"] and month["six_month"]["complete"]
            snapshot = truth(stream, scope, month_end(add_months(m, -6)))
            end = truth(stream, scope, month_end(m))
            for tier in month["six_month"]["tiers"]:
                rank = ("first", "fledgling", "steady", "trendy", "loyal").index
                base = [c for c, (seg, _) in snapshot.items() if seg.startswith(tier["tier"] + "_")]
                reached = [
                    c
                    for c in base
                    if c in end and rank(end[c][0].rsplit("_", 1)[0]) > rank(tier["tier"])
                ]
                assert (tier["base"], tier["reached"]) == (len(base), len(reached)), (m, tier)


# --- a hand-made month -----------------------------------------------------------------------------


def st(tenant, customer, seq, to, on, total, count, first, last, cause="purchase", corrects=None):
    """A customer state with explicit figures (``corrects``: it opens a correction from then)."""
    return CustomerState(
        tenant_id=tenant,
        scope="all",
        customer_id=customer,
        seq=seq,
        from_segment=None,
        to_segment=to,
        effective_on=date.fromisoformat(on),
        cause=cause,
        purchase_count=count,
        total_amount=Decimal(total),
        first_purchase_on=date.fromisoformat(first) if first else None,
        last_purchase_on=date.fromisoformat(last) if last else None,
        tenure_days=None,
        lapse_days=None,
        corrects_from=date.fromisoformat(corrects) if corrects else None,
        schema_version=2 if corrects else 1,
    )


def march(t) -> list[CustomerState]:
    """Fifteen customers around March 2025 (eve 2025-02-28), each a case of the table."""
    F, FL, S, SL = "first_active", "first_lapsed", "steady_active", "steady_lapsed"
    return [
        # a: first → fledgling in March
        st(t, "a", 1, F, "2025-01-05", 10000, 1, "2025-01-05", "2025-01-05"),
        st(t, "a", 2, "fledgling_active", "2025-03-10", 25000, 2, "2025-01-05", "2025-03-10"),
        # b, m, o: first-timers who stay (m bought in mid-January: 60–90 days by March 31st)
        st(t, "b", 1, F, "2025-02-01", 8000, 1, "2025-02-01", "2025-02-01"),
        st(t, "m", 1, F, "2025-01-15", 4000, 1, "2025-01-15", "2025-01-15"),
        st(t, "o", 1, F, "2024-12-05", 3000, 1, "2024-12-05", "2024-12-05"),
        # c: new in March; d: new in March and bought twice
        st(t, "c", 1, F, "2025-03-03", 5000, 1, "2025-03-03", "2025-03-03"),
        st(t, "d", 1, F, "2025-03-04", 6000, 1, "2025-03-04", "2025-03-04"),
        st(t, "d", 2, "fledgling_active", "2025-03-20", 13000, 2, "2025-03-04", "2025-03-20"),
        # e: steady lapses on 2025-03-16 (240 days after 2024-07-19)
        st(t, "e", 1, S, "2024-07-19", 30000, 3, "2024-04-01", "2024-07-19"),
        st(t, "e", 2, SL, "2025-03-16", 30000, 3, "2024-04-01", "2024-07-19", "lapse"),
        # f: loyal, lapsed in 2024, comes back in March
        st(t, "f", 1, "loyal_active", "2023-06-01", 120000, 5, "2022-06-01", "2023-06-01"),
        st(t, "f", 2, "loyal_lapsed", "2024-01-27", 120000, 5, "2022-06-01", "2023-06-01", "lapse"),
        st(t, "f", 3, "loyal_active", "2025-03-20", 150000, 6, "2022-06-01", "2025-03-20"),
        # g: a lapsed first-timer comes back as steady; l stays lapsed
        st(t, "g", 1, F, "2024-06-01", 7000, 1, "2024-06-01", "2024-06-01"),
        st(t, "g", 2, FL, "2025-01-27", 7000, 1, "2024-06-01", "2024-06-01", "lapse"),
        st(t, "g", 3, S, "2025-03-05", 15000, 2, "2024-06-01", "2025-03-05"),
        st(t, "l", 1, F, "2024-05-01", 5000, 1, "2024-05-01", "2024-05-01"),
        st(t, "l", 2, FL, "2024-12-27", 5000, 1, "2024-05-01", "2024-05-01", "lapse"),
        # h: steady buys again, same segment
        st(t, "h", 1, S, "2025-01-10", 20000, 3, "2024-09-01", "2025-01-10"),
        st(t, "h", 2, S, "2025-03-12", 30000, 4, "2024-09-01", "2025-03-12"),
        # i: every purchase voided in March
        st(t, "i", 1, F, "2025-02-10", 9000, 1, "2025-02-10", "2025-02-10"),
        st(t, "i", 2, None, "2025-03-08", 0, 0, None, None, "void"),
        # j: lapsed early by the sweep (03-25), then history shows a purchase on 03-20
        st(t, "j", 1, F, "2024-07-28", 9000, 1, "2024-07-28", "2024-07-28"),
        st(t, "j", 2, FL, "2025-03-25", 9000, 1, "2024-07-28", "2024-07-28", "lapse"),
        st(t, "j", 3, S, "2025-03-20", 20000, 2, "2024-07-28", "2025-03-20", corrects="2025-03-20"),
        # n: new in Q4 2024, came back in January; k: new in April
        st(t, "n", 1, F, "2024-11-10", 6000, 1, "2024-11-10", "2024-11-10"),
        st(t, "n", 2, "fledgling_active", "2025-01-20", 12000, 2, "2024-11-10", "2025-01-20"),
        st(t, "k", 1, F, "2025-04-02", 2000, 1, "2025-04-02", "2025-04-02"),
    ]


@pytest.fixture(scope="module")
async def crafted(producer, service_pool):
    tenant = f"m{uuid.uuid4().hex[:10]}"
    states = march(tenant)
    late = [s for s in states if s.corrects_from]  # j's purchase arrives after its early lapse
    await processed(
        service_pool, await publish(producer, [s for s in states if not s.corrects_from])
    )
    await processed(service_pool, await publish(producer, late))
    return tenant


async def test_transitions_of_a_hand_made_month(client, crafted, service_pool):
    h = await api_key(service_pool, crafted)
    body = (
        await client.get("/v1/transitions", params={"from": "2025-03", "to": "2025-04"}, headers=h)
    ).json()
    assert body["scope"] == "all" and [m["month"] for m in body["months"]] == [
        "2025-03",
        "2025-04",
    ]
    mar = body["months"][0]
    assert (mar["eve"], mar["end"]) == ("2025-02-28", "2025-03-31")
    assert (mar["customers_at_eve"], mar["customers_at_end"]) == (12, 13)
    sixth = round(1 / 6, 4)
    assert [(c["from"], c["to"], c["customers"], c["rate"]) for c in mar["cells"]] == [
        ("new", "first_active", 1, None),  # c
        ("new", "fledgling_active", 1, None),  # d
        ("first_active", "first_active", 3, 0.5),  # b, m, o
        ("first_active", "fledgling_active", 1, sixth),  # a
        ("first_active", "steady_active", 1, sixth),  # j (the early lapse undone)
        ("first_active", None, 1, sixth),  # i
        ("first_lapsed", "first_lapsed", 1, 0.5),  # l
        ("first_lapsed", "steady_active", 1, 0.5),  # g
        ("fledgling_active", "fledgling_active", 1, 1.0),  # n
        ("steady_active", "steady_active", 1, 0.5),  # h
        ("steady_active", "steady_lapsed", 1, 0.5),  # e
        ("loyal_lapsed", "loyal_active", 1, 1.0),  # f
    ]
    head = mar["headline"]
    assert head["first_to_fledgling"] == {"customers": 1, "base": 8, "rate": 0.125}
    assert head["active_to_lapsed"]["steady"] == {"customers": 1, "base": 2, "rate": 0.5}
    assert head["active_to_lapsed"]["first"] == {"customers": 0, "base": 6, "rate": 0.0}
    assert head["comebacks"]["first"] == {"customers": 1, "base": 2, "rate": 0.5}
    assert head["comebacks"]["loyal"] == {"customers": 1, "base": 1, "rate": 1.0}
    assert head["comebacks"]["total"] == {"customers": 2, "base": 3, "rate": 0.6667}
    assert head["new"] == 2

    apr = body["months"][1]
    assert ("new", "first_active", 1, None) in [
        (c["from"], c["to"], c["customers"], c["rate"]) for c in apr["cells"]
    ]
    assert sum(c["customers"] for c in apr["cells"] if c["from"] != "new") == 13
    assert all(c["from"] == c["to"] or c["from"] == "new" for c in apr["cells"])

    # Daily history up to a day with changes (d, f and j on March 20th).
    days = (
        await client.get(
            "/v1/portfolio/history",
            params={"granularity": "day", "from": "2025-03-19", "to": "2025-03-20"},
            headers=h,
        )
    ).json()
    series = {s["segment"]: s["customers"] for s in days["segments"]}
    assert days["periods"] == ["2025-03-19", "2025-03-20"] and days["total_customers"] == [13, 13]
    assert series["fledgling_active"] == [2, 3] and series["loyal_active"] == [0, 1]
    assert series["first_lapsed"] == [1, 1] and series["steady_active"] == [2, 3]  # l; g, h (+j)

    # The six-month view of June: first-tier customers at 2024-12-31 were g, j, n, o (active)
    # and l (lapsed); by June's end g and j are steady and n is fledgling.
    jun = (
        await client.get("/v1/transitions", params={"from": "2025-06", "to": "2025-06"}, headers=h)
    ).json()["months"][0]
    assert jun["six_month"]["snapshot"] == "2024-12-31"
    first = jun["six_month"]["tiers"][0]
    assert (first["tier"], first["base"], first["reached"], first["rate"]) == ("first", 5, 3, 0.6)
    await assert_tables_equal_a_recompute(service_pool, crafted, date(2022, 1, 1), date(2026, 1, 1))


async def test_bad_history_and_transition_requests(client, crafted, service_pool):
    h = await api_key(service_pool, crafted)
    for path, params in (
        ("/v1/portfolio/history", {"from": "2025-13"}),
        ("/v1/portfolio/history", {"granularity": "day", "from": "2025-07-01"}),
        ("/v1/portfolio/history", {"granularity": "week"}),
        ("/v1/transitions", {"from": "2025-05", "to": "2025-04"}),
        ("/v1/transitions", {"from": "03/2025"}),
    ):
        r = await client.get(path, params=params, headers=h)
        assert r.status_code == 422, (path, params)
        assert "error" in r.json()
    # Defaults: 36 months of history, 12 months of transitions, up to today (2025-06-30).
    hist = (await client.get("/v1/portfolio/history", headers=h)).json()
    assert len(hist["periods"]) == 36 and hist["to"] == "2025-06"
    assert hist["total_customers"][-1] == 14
    trans = (await client.get("/v1/transitions", headers=h)).json()
    assert [m["month"] for m in trans["months"]][::11] == ["2024-07", "2025-06"]


# --- the owner's questions, RFM, LTV, DM tracking (on the hand-made tenant) ---------------------------


async def test_the_owners_questions_for_a_month(client, crafted, service_pool):
    h = await api_key(service_pool, crafted)
    lines = [  # f's sales in the event store: two with lines, one voided, one at another branch
        ("f1", "sale", "o1", '[{"sku": "T-01", "name": "有機煎茶", "quantity": 3}]'),
        (
            "f2",
            "sale",
            "o2",
            '[{"sku": "T-01", "name": "有機煎茶", "quantity": 2}, {"sku": "G-09", "name": "急須"}]',
        ),
        ("f3", "sale", "o3", '[{"sku": "X-99", "name": "取消品", "quantity": 50}]'),
        ("f4", "void", "o3", "[]"),
    ]
    await service_pool.executemany(
        "INSERT INTO purchases (tenant_id, event_id, branch_id, customer_id, kind, occurred_at, occurred_on,"
        " amount, order_id, payload) VALUES ($1, $2, 'b1', 'f', $3, now(), current_date, 1000, $4,"
        " jsonb_build_object('lines', $5::jsonb)) ON CONFLICT DO NOTHING",
        [(crafted, eid, kind, order, payload) for eid, kind, order, payload in lines],
    )
    body = (
        await client.get("/v1/questions", params={"month": "2025-03", "limit": 3}, headers=h)
    ).json()
    assert (body["scope"], body["month"], body["as_of"]) == ("all", "2025-03", "2025-03-31")
    # ①② first-time: c 5,000 + d 13,000; repeat: a +15,000, f +30,000, g +8,000, h +10,000,
    # j +11,000, i −9,000 (voided); e only lapsed.
    assert body["sales_split"] == {
        "total_sales": "83000",
        "first_time": {"customers": 2, "sales": "18000", "share": 0.2169},
        "repeat": {"customers": 6, "sales": "65000", "share": 0.7831},
    }
    # ③ last purchase between 2024-12-31 and 2025-01-30: n (12,000) and m (4,000)
    dormant = body["dormant_60_90_days"]
    assert (dormant["last_purchase_from"], dormant["last_purchase_to"]) == (
        "2024-12-31",
        "2025-01-30",
    )
    assert dormant["customers"] == 2
    assert [(c["customer_id"], c["lapse_days"]) for c in dormant["items"]] == [("n", 70), ("m", 75)]
    # ④ a, c, d, f, g, h, j bought in March; 13 customers at its end, 11 of them active
    assert body["bought_this_month"] == {
        "buyers": 7,
        "customers": 13,
        "share": 0.5385,
        "active_customers": 11,
        "share_of_active": 0.6364,
    }
    # ⑤ first purchase in 2024-Q4: n and o; n bought again
    assert body["new_customers_came_back"] == {
        "quarter": "2024-Q4",
        "first_purchase_from": "2024-10-01",
        "first_purchase_to": "2024-12-31",
        "new_customers": 2,
        "came_back": 1,
        "rate": 0.5,
    }
    # ⑥⑦ most valuable now, with how often they buy
    vips = body["vips"]
    assert vips["as_of"] == "2025-06-30"
    assert [v["customer_id"] for v in vips["items"]] == ["f", "e", "h"]
    f = vips["items"][0]
    tenure = (date(2025, 3, 20) - date(2022, 6, 1)).days
    assert (f["purchase_count"], f["tenure_days"]) == (6, tenure)
    assert f["average_interval_days"] == round(tenure / 5, 1)
    assert f["purchases_per_year"] == round(6 * 365 / tenure, 1)
    # ⑧ what they buy most: line items of their sales in the event store, voided orders left out
    assert body["preferences"]["available"] is True
    assert f["top_products"] == [
        {"sku": "T-01", "name": "有機煎茶", "quantity": "5", "orders": 2},
        {"sku": "G-09", "name": "急須", "quantity": "1", "orders": 1},
    ]
    assert vips["items"][1]["top_products"] == []  # e's purchases carried no lines

    now = (await client.get("/v1/questions", headers=h)).json()
    assert now["month"] == "2025-06" and now["as_of"] == "2025-06-30"
    assert now["sales_split"]["total_sales"] == "0"
    assert now["bought_this_month"]["customers"] == 14
    for bad in ("2025-07", "2025-3", "March"):
        r = await client.get("/v1/questions", params={"month": bad}, headers=h)
        assert r.status_code == 422, bad


async def test_rfm_cells_lists_and_thresholds(client, crafted, producer, service_pool):
    h = await api_key(service_pool, crafted)
    t = (await client.get("/v1/rfm/thresholds", headers=h)).json()
    assert t["default"] is True and t["thresholds"]["recency_days"] == [30, 180, 270, 365]

    everyone = (await client.get("/v1/rfm/customers", params={"limit": 1000}, headers=h)).json()[
        "items"
    ]
    assert len(everyone) == 14
    body = (await client.get("/v1/rfm", headers=h)).json()
    assert body["customers"] == 14 and body["as_of"] == "2025-06-30"
    by_cell = Counter((c["r"], c["f"], c["m"]) for c in everyone)
    assert {(c["r"], c["f"], c["m"]): c["customers"] for c in body["cells"]} == dict(by_cell)
    assert sum(map(sum, body["rf_table"]["customers"])) == 14
    f = next(c for c in everyone if c["customer_id"] == "f")
    assert (f["r"], f["f"], f["m"]) == (4, 4, 5)  # 102 days, 6 purchases, 150,000

    # R ≥ 4 and F ≥ 4: bought within 180 days, at least 4 times
    picked = (
        await client.get("/v1/rfm/customers", params={"r_min": 4, "f_min": 4}, headers=h)
    ).json()
    assert [c["customer_id"] for c in picked["items"]] == ["f", "h"]
    for lo in range(1, 6):
        for measure in ("r", "f", "m"):
            got = (
                await client.get(
                    "/v1/rfm/customers", params={f"{measure}_min": lo, "limit": 1000}, headers=h
                )
            ).json()["items"]
            assert {c["customer_id"] for c in got} == {
                c["customer_id"] for c in everyone if c[measure] >= lo
            }, (measure, lo)

    # New borders change the ranks.
    new = {"recency_days": [10, 20, 30, 40], "frequency": [2, 3, 5, 6], "monetary": [1, 2, 3, 4]}
    assert (await client.put("/v1/rfm/thresholds", json=new, headers=h)).status_code == 200
    f2 = next(
        c
        for c in (await client.get("/v1/rfm/customers", headers=h)).json()["items"]
        if c["customer_id"] == "f"
    )
    assert (f2["r"], f2["f"], f2["m"]) == (1, 5, 5)
    bad = await client.put("/v1/rfm/thresholds", json={**new, "frequency": [3, 2, 5, 6]}, headers=h)
    assert bad.status_code == 422
    assert bad.json()["error"]["problems"][0]["field"] == "frequency"
    r = await client.get("/v1/rfm/customers", params={"r_min": 5, "r_max": 2}, headers=h)
    assert r.status_code == 422

    # The list as CSV in both encodings, a formula-looking customer code made inert.
    other = f"r{uuid.uuid4().hex[:10]}"
    await processed(
        service_pool,
        await publish(
            producer,
            [
                st(
                    other,
                    "=cmd()",
                    1,
                    "steady_active",
                    "2025-06-01",
                    60000,
                    5,
                    "2025-01-02",
                    "2025-06-01",
                ),
                st(
                    other,
                    "顧客-漢字",
                    1,
                    "first_active",
                    "2025-06-20",
                    9000,
                    1,
                    "2025-06-20",
                    "2025-06-20",
                ),
            ],
        ),
    )
    ho = await api_key(service_pool, other)
    for encoding, codec in (("utf-8", "utf-8-sig"), ("cp932", "cp932")):
        r = await client.get(
            "/v1/rfm/customers", params={"format": "csv", "encoding": encoding}, headers=ho
        )
        assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
        rows = list(csv.reader(io.StringIO(r.content.decode(codec), newline="")))
        assert rows[0][0] == "顧客コード" and rows[0][-3:] == ["R", "F", "M"]
        assert rows[1][0] == "'=cmd()" and rows[1][-3:] == ["5", "4", "4"]
        assert rows[2][0] == "顧客-漢字" and rows[2][-4:] == ["初回客", "5", "1", "1"]


async def test_ltv_projection_from_measured_rates_and_a_changed_rate(client, crafted, service_pool):
    h = await api_key(service_pool, crafted)
    base = (await client.get("/v1/ltv", params={"window_months": 6}, headers=h)).json()
    assert base["base_month"] == "2025-05" and base["window"] == {
        "from": "2024-12",
        "to": "2025-05",
    }
    assert sum(base["start"].values()) == 14
    # The rates are the transition tables' cells pooled over the window.
    table = (
        await client.get("/v1/transitions", params={"from": "2024-12", "to": "2025-05"}, headers=h)
    ).json()
    moved, at_eve = Counter(), Counter()
    for month in table["months"]:
        for c in month["cells"]:
            if c["from"] != "new":
                moved[(c["from"], c["to"] or "none")] += c["customers"]
                at_eve[c["from"]] += c["customers"]
    for (frm, to), n in moved.items():
        assert base["rates"][frm][to] == round(n / at_eve[frm], 4), (frm, to)
    assert [r["months"] for r in base["baseline"]] == [12, 24, 36]
    assert base["scenario"] is None and base["difference"] is None

    sim = await client.post(
        "/v1/ltv/simulations",
        params={"window_months": 6},
        json={
            "window_months": 6,
            "changes": [{"from": "first_active", "to": "fledgling_active", "rate": 0.5}],
        },
        headers=h,
    )
    assert sim.status_code == 200, sim.text
    sim = sim.json()
    assert sim["baseline"] == base["baseline"]
    assert sim["scenario"]["rates"]["first_active"]["fledgling_active"] == 0.5
    assert round(sum(sim["scenario"]["rates"]["first_active"].values()), 4) == round(
        sum(base["rates"]["first_active"].values()), 4
    )
    diff = sim["difference"][0]
    assert diff["months"] == 12
    assert diff["customers"]["first_active"] < 0 < diff["customers"]["fledgling_active"]
    assert Decimal(diff["cumulative_sales"]) == Decimal(
        sim["scenario"]["horizons"][0]["cumulative_sales"]
    ) - Decimal(sim["baseline"][0]["cumulative_sales"])

    for bad in (
        {"changes": [{"from": "first_active", "to": "vip", "rate": 0.5}]},
        {"changes": [{"from": "first_active", "to": "fledgling_active"}]},
        {"changes": [{"from": "first_active", "to": "fledgling_active", "rate": 2}]},
        {"base_month": "2025-06"},
        {"horizons": [0]},
    ):
        r = await client.post("/v1/ltv/simulations", json=bad, headers=h)
        assert r.status_code == 422, bad


async def test_dm_response_tracking(client, crafted, service_pool):
    h = await api_key(service_pool, crafted)
    created = await client.post("/v1/dm-tables", json={"name": "=cmd() 春のDM"}, headers=h)
    assert created.status_code == 201
    table_id = created.json()["id"]
    dup = await client.post("/v1/dm-tables", json={"name": "=cmd() 春のDM"}, headers=h)
    assert dup.status_code == 409

    march_mail = {
        "sent_on": "2025-03-01",
        "segments": [
            {"segment": "first_active", "mailed": 6, "responses": 1},
            {"segment": "steady_active", "mailed": 2, "responses": 0},
            {"segment": "loyal_lapsed", "mailed": 1, "responses": 1},
        ],
    }
    r = await client.put(f"/v1/dm-tables/{table_id}/months/2025-03", json=march_mail, headers=h)
    assert r.status_code == 200, r.text
    april_mail = {"segments": [{"segment": "loyal_active", "mailed": 1, "responses": 0}]}
    r = await client.put(f"/v1/dm-tables/{table_id}/months/2025-04", json=april_mail, headers=h)
    body = r.json()
    mar, apr = body["months"]
    # sizes on 2025-03-01: first_active a, b, i, j, m, o; steady_active e, h; loyal_lapsed f
    assert [
        (c["segment"], c["segment_size"], c["response_rate"], c["reach"]) for c in mar["segments"]
    ] == [
        ("first_active", 6, 0.1667, 1.0),
        ("steady_active", 2, 0.0, 1.0),
        ("loyal_lapsed", 1, 1.0, 1.0),
    ]
    assert apr["sent_on"] == "2025-04-01" and apr["segments"][0]["segment_size"] == 1
    assert {s["segment"]: s["response_rate"] for s in body["by_segment"]} == {
        "first_active": 0.1667,
        "steady_active": 0.0,
        "loyal_active": 0.0,
        "loyal_lapsed": 1.0,
    }
    listed = (await client.get("/v1/dm-tables", headers=h)).json()["items"]
    assert [(t["id"], t["months"]) for t in listed] == [(table_id, 2)]

    for encoding, codec in (("utf-8", "utf-8-sig"), ("cp932", "cp932")):
        r = await client.get(
            f"/v1/dm-tables/{table_id}", params={"format": "csv", "encoding": encoding}, headers=h
        )
        assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
        rows = list(csv.reader(io.StringIO(r.content.decode(codec), newline="")))
        assert rows[0] == ["表", "月", "発送日", "顧客層", "顧客数", "発送数", "反応数", "反応率"]
        assert rows[1] == [
            "'=cmd() 春のDM",
            "2025-03",
            "2025-03-01",
            "初回客",
            "6",
            "6",
            "1",
            "0.1667",
        ]
        assert len(rows) == 5

    for month, payload in (
        ("2025-03", {"segments": [{"segment": "first_active", "mailed": 1, "responses": 2}]}),
        ("2025-03", {"segments": [{"segment": "vip", "mailed": 1, "responses": 0}]}),
        ("2025-03", {"sent_on": "2025-04-02", **april_mail}),
        ("2025-03", {"segments": []}),
        ("25-03", april_mail),
    ):
        r = await client.put(f"/v1/dm-tables/{table_id}/months/{month}", json=payload, headers=h)
        assert r.status_code == 422, payload
    missing = await client.get("/v1/dm-tables/999999", headers=h)
    assert missing.status_code == 404
    other_tenant = await client.get(
        f"/v1/dm-tables/{table_id}", headers=await api_key(service_pool, "x")
    )
    assert other_tenant.status_code == 404

    r = await client.delete(f"/v1/dm-tables/{table_id}/months/2025-04", headers=h)
    assert [m["month"] for m in r.json()["months"]] == ["2025-03"]
    assert (await client.delete(f"/v1/dm-tables/{table_id}", headers=h)).status_code == 204
    assert (await client.get(f"/v1/dm-tables/{table_id}", headers=h)).status_code == 404


async def test_portfolio_history_and_transitions_never_read_customer_rows(
    client, crafted, service_pool
):
    """Served by a role that may not read per-customer tables: the portfolio (today and as of a
    past day), its history, the transitions and the LTV projection read only the aggregates
    (O(days × segments) and O(months × cells)), never a customer row."""
    role = f"kizuna_aggregates_{uuid.uuid4().hex[:8]}"
    await service_pool.execute(f'CREATE ROLE "{role}"')
    await service_pool.execute(
        "GRANT SELECT ON tenants, tenant_rules, portfolio_current, portfolio_daily_deltas,"
        f' portfolio_monthly_deltas, report_moves, report_history_start TO "{role}"'
    )
    # and who is asking: every request reads its key (and keeps its last use)
    await service_pool.execute(f'GRANT SELECT, UPDATE ON api_keys TO "{role}"')
    restricted = await asyncpg.create_pool(
        get_settings().database_url, min_size=1, max_size=2, server_settings={"role": role}
    )
    try:
        async with restricted.acquire() as conn:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetch("SELECT 1 FROM report_customers LIMIT 1")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetch("SELECT 1 FROM report_timeline LIMIT 1")
        reports_app.state.pool = restricted
        h = await api_key(service_pool, crafted)
        for path, params in (
            ("/v1/portfolio", {}),
            ("/v1/portfolio", {"as_of": "2025-03-15"}),
            ("/v1/portfolio/history", {"granularity": "day", "from": "2025-01-01"}),
            ("/v1/portfolio/history", {"from": "2020-01"}),
            ("/v1/transitions", {"from": "2024-01"}),
            ("/v1/ltv", {}),
        ):
            r = await client.get(path, params=params, headers=h)
            assert r.status_code == 200, (path, r.text)
    finally:
        reports_app.state.pool = service_pool
        await restricted.close()
        await service_pool.execute(f'DROP OWNED BY "{role}"')
        await service_pool.execute(f'DROP ROLE "{role}"')
