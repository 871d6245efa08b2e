"""Reports under corrections (issue 11) against the real broker and PostgreSQL: one history of
sales, returns and voids at two branches, published as customer states the way the correction
contract says (``tests/reports/test_corrections.Producer``) into three tenants, its events
arriving (1) in date order, (2) shuffled, (3) branch by branch. Portfolio as of every month-end,
monthly history, transitions with the six-month view, and each customer's timeline are the same
in the three tenants and equal classifying the events from scratch."""

from __future__ import annotations

import random
import uuid
from collections import Counter, defaultdict
from datetime import date

import pytest

from services.reports.domain.calendar import add_months, month_end
from services.reports.domain.timeline import NEW, NONE
from tests.helpers import api_key
from tests.reports.service import processed, publish
from tests.reports.test_corrections import (
    SCOPES,
    START,
    TODAY,
    published_in_arrival_order,
    random_events,
    truth,
)
from tests.reports.test_history_service import (
    assert_tables_equal_a_recompute,
    pin_clock,
    stored_timelines,
)

pytestmark = pytest.mark.integration


def arrivals(events, how: str, rng: random.Random) -> list:
    if how == "date order":
        return sorted(events, key=lambda e: (e[1].occurred_on, e[1].event_id))
    if how == "shuffled":
        shuffled = events[:]
        rng.shuffle(shuffled)
        return shuffled
    return sorted(events, key=lambda e: (e[1].branch_id, e[1].occurred_on, e[1].event_id))


async def test_three_arrival_orders_give_one_history_equal_to_a_recompute(
    client, producer, service_pool, monkeypatch
):
    rng = random.Random(11)
    events = random_events(rng, customers=40)
    by_customer = defaultdict(list)
    for cid, p in events:
        by_customer[cid].append(p)
    run = uuid.uuid4().hex[:8]
    tenants = {how: f"c{i}{run}" for i, how in enumerate(("date order", "shuffled", "branches"))}
    corrections = {}
    for how, tenant in tenants.items():
        arrival = arrivals(events, how, rng)
        cuts = sorted(rng.sample(range(1, len(arrival)), 5))
        states, made = published_in_arrival_order(arrival, cuts, tenant)
        corrections[how] = made.corrections
        # In a few deliveries; a slice delivered twice changes nothing.
        for lo, hi in zip([0, *cuts], [*cuts, len(states)], strict=False):
            await processed(service_pool, await publish(producer, states[lo:hi]))
        await processed(service_pool, await publish(producer, states[10:60]))
    assert corrections["shuffled"] > 10 and corrections["branches"] > 5, corrections

    pin_clock(monkeypatch, TODAY)
    bodies: dict[str, list] = {}
    for how, tenant in tenants.items():
        h = await api_key(service_pool, tenant)
        await assert_tables_equal_a_recompute(service_pool, tenant, START, add_months(TODAY, 7))
        timelines = await stored_timelines(service_pool, tenant)
        got_bodies = []
        for scope in SCOPES:
            history = (
                await client.get(
                    "/v1/portfolio/history",
                    params={"scope": scope, "granularity": "month", "from": "2024-01"},
                    headers=h,
                )
            ).json()
            for i, as_of in enumerate(history["as_of"]):
                day = date.fromisoformat(as_of)
                expected = truth(by_customer, scope, day)
                sizes: Counter = Counter(s.segment for s in expected.values())
                got = {
                    s["segment"]: (s["customers"][i], s["sales"][i])
                    for s in history["segments"]
                    if s["customers"][i]
                }
                assert got == {
                    seg: (
                        n,
                        str(sum(s.total_amount for s in expected.values() if s.segment == seg)),
                    )
                    for seg, n in sizes.items()
                }, (how, scope, as_of)
                # Each customer's timeline: the entry in force that day.
                in_force = {}
                for (s, cid), entries in timelines.items():
                    if s != scope:
                        continue
                    before = [e for e in entries if e.effective_on <= day]
                    if before and before[-1].segment:
                        in_force[cid] = before[-1].segment
                assert in_force == {c: s.segment for c, s in expected.items()}, (how, scope, day)

            transitions = (
                await client.get(
                    "/v1/transitions", params={"scope": scope, "from": "2024-02"}, headers=h
                )
            ).json()
            for month in transitions["months"]:
                m = date.fromisoformat(month["month"] + "-01")
                eve, end = month_end(add_months(m, -1)), min(month_end(m), TODAY)
                a, b = truth(by_customer, scope, eve), truth(by_customer, scope, end)
                want = Counter()
                for cid in a.keys() | b.keys():
                    want[
                        (a[cid].segment if cid in a else NEW, b[cid].segment if cid in b else NONE)
                    ] += 1
                got = Counter(
                    {(c["from"], c["to"] or NONE): c["customers"] for c in month["cells"]}
                )
                assert got == Counter({k: v for k, v in want.items() if k != (NEW, NONE)}), (how, m)
            got_bodies += [history, transitions]
        bodies[how] = got_bodies
    # The three tenants' reports are identical, field for field.
    assert bodies["shuffled"] == bodies["date order"]
    assert bodies["branches"] == bodies["date order"]
