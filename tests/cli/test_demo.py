"""The demo-data generator: deterministic, chronological, valid, believable; and its loader."""

from __future__ import annotations

import asyncio
import json
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from services.cli import demo
from shared.cpm import SEGMENTS, Purchase, classify, compute_figures
from shared.events import PurchaseEvent

END = date(2026, 5, 31)
SHOPS = {"shibuya", "umeda", "sakae", "tenjin", "sapporo"}


@pytest.fixture(scope="module")
def events() -> list[dict]:
    return list(demo.generate(customers=2000, seed=7, end=END))


@pytest.fixture(scope="module")
def by_customer(events) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for e in events:
        out[e["customer_id"]].append(e)
    return out


def _figures(customer_events: list[dict]):
    return compute_figures(
        Purchase(
            e["event_id"],
            e["kind"],
            e["branch_id"],
            date.fromisoformat(e["occurred_at"][:10]),
            Decimal(e["amount"]),
            e["order_id"],
        )
        for e in customer_events
    )


def test_same_seed_same_events():
    a = list(demo.generate(customers=300, seed=11, end=END))
    b = list(demo.generate(customers=300, seed=11, end=END))
    c = list(demo.generate(customers=300, seed=12, end=END))
    assert a and json.dumps(a, ensure_ascii=False) == json.dumps(b, ensure_ascii=False)
    assert a != c


def test_chronological_with_stable_unique_ids(events):
    times = [datetime.fromisoformat(e["occurred_at"]) for e in events]
    assert all(t.utcoffset() == timedelta(hours=9) for t in times)
    assert all(earlier <= later for earlier, later in zip(times, times[1:], strict=False))
    assert times[0].date() >= date(2023, 6, 1) and times[-1].date() <= END
    assert [e["event_id"] for e in events] == [f"demo-{n:07d}" for n in range(1, len(events) + 1)]
    # customer numbers in order of first purchase
    firsts = list(dict.fromkeys(e["customer_id"] for e in events))
    assert firsts == [f"C{n:06d}" for n in range(1, len(firsts) + 1)]
    assert len(firsts) == 2000


def test_every_event_is_a_valid_purchase_event(events):
    for e in events:
        assert json.loads(json.dumps(e)) == e  # JSON-ready
        assert isinstance(e["amount"], str) and isinstance(e["tax"], str)
        ev = PurchaseEvent.model_validate(e)
        assert ev.tenant_id == "demo" and ev.currency == "JPY"
        assert ev.tax == (ev.amount * 10 / 110).quantize(Decimal(1))
        assert ev.branch_id in SHOPS | {"online"}
        assert ev.channel == ("online" if ev.branch_id == "online" else "store")
        if ev.kind != "void":
            assert ev.amount == sum(line.unit_price * line.quantity for line in ev.lines) > 0
            assert all(line.sku and line.name for line in ev.lines)


def test_plausible_portfolio(events, by_customer):
    figures = {c: _figures(evs) for c, evs in by_customer.items()}
    counted = {c: f for c, f in figures.items() if f is not None}
    assert len(counted) >= 1980  # only customers whose every purchase was voided leave
    repeat = sum(f.purchase_count >= 2 for f in counted.values()) / len(counted)
    assert 0.20 <= repeat <= 0.50, repeat
    # among customers new to the chain (after the first months, when the shops' existing
    # customers signed up), about two thirds never come back
    newcomers = [c for c, evs in by_customer.items() if evs[0]["occurred_at"] >= "2023-10"]
    never = sum(c in counted and counted[c].purchase_count == 1 for c in newcomers) / len(newcomers)
    assert 0.60 <= never <= 0.71, never
    loyal = [f for f in counted.values() if f.total_amount >= 70000 and f.tenure_days >= 210]
    lapsed = [f for f in counted.values() if (END - f.last_purchase_on).days > 240]
    assert len(loyal) >= 40 and len(lapsed) >= 400
    segments = Counter(classify(f, END) for f in counted.values())
    assert set(segments) == set(SEGMENTS), segments  # every segment has people in it
    assert segments["first_lapsed"] == max(segments.values())  # most never come back
    # regulars really are regular: some customers with 20+ purchases
    assert sum(f.purchase_count >= 20 for f in counted.values()) >= 20


def test_plausible_baskets_branches_and_seasons(events, by_customer):
    sales = [e for e in events if e["kind"] == "sale"]
    amounts = sorted(int(e["amount"]) for e in sales)
    mean = sum(amounts) / len(amounts)
    assert 8000 <= mean <= 12000, mean
    assert amounts[len(amounts) // 2] < mean < amounts[int(len(amounts) * 0.99)] / 3  # long tail
    assert 10_000 <= len(events) <= 25_000
    kinds = Counter(e["kind"] for e in events)
    assert 0.01 <= kinds["return"] / kinds["sale"] <= 0.035
    assert 0.002 <= kinds["void"] / kinds["sale"] <= 0.01
    branches = Counter(e["branch_id"] for e in sales)
    assert set(branches) == SHOPS | {"online"}
    # a home branch, and now and then another one
    homes = [
        Counter(e["branch_id"] for e in evs).most_common(1)[0][1] / len(evs)
        for evs in by_customer.values()
        if len(evs) >= 10
    ]
    assert sum(homes) / len(homes) > 0.75
    assert sum(h < 1 for h in homes) / len(homes) > 0.5
    # gift seasons: July and December are the busiest months for sales and newcomers
    by_month = Counter(e["occurred_at"][5:7] for e in sales)
    assert {m for m, _ in by_month.most_common(2)} == {"07", "12"}
    newcomers = Counter(evs[0]["occurred_at"][:7] for evs in by_customer.values())
    assert newcomers["2024-12"] > 1.5 * newcomers["2025-02"]
    assert newcomers["2025-07"] > 1.3 * newcomers["2025-10"]
    # shops are open 10:00-20:00
    assert all("10" <= e["occurred_at"][11:13] < "20" for e in sales if e["branch_id"] != "online")


def test_returns_and_voids_refer_to_earlier_sales_of_the_same_customer(events):
    sales: dict[str, dict] = {}
    returns = voids = 0
    for e in events:
        if e["kind"] == "sale":
            assert e["order_id"] not in sales  # one order id per sale
            sales[e["order_id"]] = e
            continue
        sale = sales.get(e["order_id"])
        assert sale is not None, e
        assert sale["customer_id"] == e["customer_id"] and sale["branch_id"] == e["branch_id"]
        gap = (
            date.fromisoformat(e["occurred_at"][:10]) - date.fromisoformat(sale["occurred_at"][:10])
        ).days
        if e["kind"] == "return":
            returns += 1
            assert 1 <= gap <= 14
            assert 0 < int(e["amount"]) <= int(sale["amount"])
        else:
            voids += 1
            assert gap == 0 and e["occurred_at"] > sale["occurred_at"]
    assert returns >= 100 and voids >= 20


def test_window_branches_and_empty():
    evs = list(demo.generate(customers=200, branches=7, years=1, seed=3, end=date(2024, 2, 29)))
    days = {e["occurred_at"][:10] for e in evs}
    assert min(days) >= "2023-03-01" and max(days) <= "2024-02-29"
    assert SHOPS < {e["branch_id"] for e in evs} and len({e["branch_id"] for e in evs}) == 8
    assert list(demo.generate(customers=0, end=END)) == []
    with pytest.raises(ValueError):
        list(demo.generate(customers=10, years=0, end=END))


def test_write_ndjson(tmp_path):
    evs = list(demo.generate(customers=50, end=END))
    path = tmp_path / "demo.ndjson"
    assert demo.write_ndjson(iter(evs), path) == len(evs)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == evs
    assert "煎茶" in path.read_text(encoding="utf-8") or "茶" in path.read_text(encoding="utf-8")


class FakeIngest:
    """A tiny ingest: answers the given statuses first, then accepts every batch."""

    def __init__(self, statuses=(), delay: float = 0.01, body: dict | None = None):
        self.statuses = list(statuses)
        self.delay, self.body = delay, body
        self.requests: list[tuple[str, list[dict]]] = []
        self.in_flight = self.max_in_flight = 0
        self.app = Starlette(routes=[Route("/v1/purchases", self.post, methods=["POST"])])

    async def post(self, request: Request):
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            payload = await request.json()
            self.requests.append((request.headers.get("authorization"), payload["events"]))
            await asyncio.sleep(self.delay)
            if self.statuses:
                status = self.statuses.pop(0)
                return JSONResponse(self.body or {"error": {"code": "broker_unavailable"}}, status)
            return JSONResponse({"accepted": len(payload["events"])}, 202)
        finally:
            self.in_flight -= 1


async def test_load_retries_503_and_counts():
    evs = list(demo.generate(customers=30, end=END))[:47]
    ingest = FakeIngest(statuses=[503])
    seen: list[tuple[int, int | None]] = []
    n = await demo.load(
        "http://ingest/",
        "acme",
        evs,
        batch=10,
        progress=lambda s, t: seen.append((s, t)),
        backoff=0.01,
        transport=httpx.ASGITransport(app=ingest.app),
    )
    assert n == 47
    assert len(ingest.requests) == 6  # five batches, one of them sent twice
    assert {t for t, _ in ingest.requests} == {"Bearer acme"}
    assert sorted(len(b) for _, b in ingest.requests) == [7, 10, 10, 10, 10, 10]
    received = [e["event_id"] for _, b in ingest.requests for e in b]
    assert set(received) == {e["event_id"] for e in evs} and len(received) == 57
    assert ingest.max_in_flight == 2
    assert seen[-1] == (47, 47) and len(seen) == 5
    assert [s for s, _ in seen] == sorted(s for s, _ in seen)


async def test_load_streams_a_generator():
    ingest = FakeIngest(delay=0)
    n = await demo.load(
        "http://ingest",
        "demo",
        demo.generate(customers=40, end=END),
        batch=100,
        progress=lambda s, t: None if t is None else pytest.fail("a generator has no total"),
        transport=httpx.ASGITransport(app=ingest.app),
    )
    assert (
        n
        == sum(len(b) for _, b in ingest.requests)
        == len(list(demo.generate(customers=40, end=END)))
    )


async def test_load_422_names_the_problems():
    body = {
        "error": {
            "code": "invalid_events",
            "message": "1 of 5 events are invalid",
            "problems": [
                {
                    "index": 3,
                    "event_id": "demo-0000004",
                    "field": "amount",
                    "reason": "Input should be >= 0",
                },
            ],
        }
    }
    ingest = FakeIngest(statuses=[422] * 5, body=body, delay=0)
    evs = list(demo.generate(customers=10, end=END))[:5]
    with pytest.raises(demo.DemoLoadError) as err:
        await demo.load("http://ingest", "demo", evs, transport=httpx.ASGITransport(app=ingest.app))
    message = str(err.value)
    assert (
        "422" in message and "demo-0000004" in message and "amount" in message and ">= 0" in message
    )
    assert len(ingest.requests) == 1  # not retried


async def test_load_gives_up_after_attempts():
    ingest = FakeIngest(statuses=[503] * 10, delay=0)
    evs = list(demo.generate(customers=10, end=END))[:5]
    with pytest.raises(demo.DemoLoadError, match="503"):
        await demo.load(
            "http://ingest",
            "demo",
            evs,
            attempts=3,
            backoff=0,
            transport=httpx.ASGITransport(app=ingest.app),
        )
    assert len(ingest.requests) == 3
