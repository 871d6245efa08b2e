"""History gives history: three years of sales streamed live in date order into one tenant, and
the same sales imported as a CSV file whose rows are newest-first and scattered into another,
give the same portfolio as of every month-end, the same monthly history and the same transition
tables — and both equal classifying the sales from scratch. Every service is a real process on
a broker and a database of the test's own (a classifier that cannot handle this stream leaves
its batch for the next consumer: the tests after this one should not inherit it)."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

import asyncpg
import httpx
import pytest

from shared.cpm import DEFAULT_RULES, Purchase, classify, compute_figures
from shared.events import CUSTOMER_STATES, PURCHASES
from shared.kafka import group_lag
from tests.helpers import api_key, wait_for

pytestmark = pytest.mark.e2e

START, END = date(2023, 7, 1), date(2026, 6, 30)
TODAY = date(2026, 7, 15)
NOW = "2026-07-15T12:00:00+09:00"
BRANCHES = ("shibuya", "umeda", "online")
KIND_JA = {"sale": "売上", "return": "返品", "void": "取消"}


@dataclass(frozen=True)
class Row:
    """One line of a sales export, and one event when streamed live."""

    n: int
    customer: str
    branch: str
    day: date
    clock: str  # HH:MM
    order: str
    kind: str  # sale | return | void
    amount: int  # positive; a return subtracts it
    negative: bool = False  # the file writes this return as a sale with a negative amount


def history(seed: int = 20260715, customers: int = 36) -> list[Row]:
    """Regulars, bursts with gaps that cross the 240-day lapse border and comebacks, one-off
    buyers, big spenders; multi-line orders, returns (some written as negative sales) and
    voids; all within START..END."""
    rnd = random.Random(seed)
    rows: list[Row] = []
    order = 5000

    def add(customer, branch, day, kind, amount, order_no, clock, negative=False):
        rows.append(Row(len(rows), customer, branch, day, clock, order_no, kind, amount, negative))

    for c in range(customers):
        customer = f"K{c:04d}"
        home = BRANCHES[c % len(BRANCHES)]
        profile = c % 4
        day = START + timedelta(days=rnd.randrange(0, 200))
        spend = (3000, 30000) if profile != 3 else (20000, 60000)
        while day <= END:
            order += 1
            branch = home if rnd.random() < 0.8 else rnd.choice(BRANCHES)
            clock = f"{rnd.randrange(9, 21):02d}:{rnd.choice(('00', '15', '30', '45'))}"
            for _ in range(rnd.choice((1, 1, 1, 2))):  # one row per line item
                add(customer, branch, day, "sale", rnd.randrange(*spend), f"R{order}", clock)
            r = rnd.random()
            if r < 0.08:
                later = min(END, day + timedelta(days=rnd.randrange(1, 20)))
                add(customer, branch, later, "return", rnd.randrange(500, 2500), f"R{order}",
                    "18:00", negative=rnd.random() < 0.5)  # fmt: skip
            elif r < 0.11:
                later = min(END, day + timedelta(days=rnd.randrange(0, 3)))
                add(customer, branch, later, "void", 0, f"R{order}", "19:00")
            if profile == 0:  # a regular: every few weeks
                gap = rnd.randrange(20, 75)
            elif profile == 1:  # bursts, then long silences across the lapse border
                gap = rnd.randrange(5, 40) if rnd.random() < 0.7 else rnd.randrange(250, 420)
            elif profile == 2:  # one purchase, maybe a late second one
                gap = 10_000 if rnd.random() < 0.6 else rnd.randrange(200, 500)
            else:  # a big spender who leaves for good after a while
                gap = rnd.randrange(15, 90) if rnd.random() < 0.85 else 10_000
            day += timedelta(days=gap)
    return rows


def live_event(row: Row) -> dict:
    return {
        "event_id": f"live-{row.n}",
        "branch_id": row.branch,
        "customer_id": row.customer,
        "occurred_at": f"{row.day}T{row.clock}:00",
        "amount": str(row.amount),
        "kind": row.kind,
        "order_id": row.order,
    }


def csv_line(row: Row, rnd: random.Random) -> str:
    amount = -row.amount if row.negative else row.amount
    kind = "sale" if row.negative else row.kind
    text = f"{amount:,}" if rnd.random() < 0.5 else f"￥{amount:,}"
    return (
        f"{row.order},{row.day.year}/{row.day.month}/{row.day.day},{row.clock},{row.customer},"
        f'{row.branch},{KIND_JA[kind]},"{text}"\r\n'
    )


def scrambled_csv(rows: list[Row], seed: int = 7) -> bytes:
    """Newest first, then a fifth of the rows moved to random places (a file sorted by
    something else, or appended to by hand)."""
    rnd = random.Random(seed)
    ordered = sorted(rows, key=lambda r: (r.day, r.clock, r.n), reverse=True)
    for _ in range(len(ordered) // 5):
        ordered.insert(rnd.randrange(len(ordered)), ordered.pop(rnd.randrange(len(ordered))))
    head = "伝票番号,購入日,時刻,顧客コード,店舗,区分,購入金額\r\n"
    return (head + "".join(csv_line(r, rnd) for r in ordered)).encode("cp932")


def month_ends() -> list[date]:
    out, m = [], START
    while m <= END:
        nxt = date(m.year + (m.month == 12), m.month % 12 + 1, 1)
        out.append(nxt - timedelta(days=1))
        m = nxt
    return out


def from_scratch(rows: list[Row], scope: str, day: date) -> dict[str, tuple[int, Decimal]]:
    """Customers and sales per segment as of ``day``, classified from the sales themselves."""
    by_customer: dict[str, list[Purchase]] = defaultdict(list)
    for r in rows:
        by_customer[r.customer].append(
            Purchase(f"x{r.n}", r.kind, r.branch, r.day, Decimal(r.amount), r.order)
        )
    out: dict[str, tuple[int, Decimal]] = {}
    for purchases in by_customer.values():
        figures = compute_figures(purchases, scope, as_of=day)
        segment = classify(figures, day, DEFAULT_RULES)
        if segment:
            count, sales = out.get(segment, (0, Decimal(0)))
            out[segment] = (count + 1, sales + figures.total_amount)
    return out


def segments_of(body: dict) -> dict[str, tuple[int, Decimal]]:
    return {
        s["segment"]: (s["customers"], Decimal(str(s["sales"])))
        for s in body["segments"]
        if s["customers"]
    }


async def test_an_import_in_any_row_order_gives_the_history_of_a_live_stream(
    services, own_broker, own_database, tmp_path
):
    broker = own_broker
    rows = history()
    kinds = Counter(r.kind for r in rows)
    assert kinds["return"] >= 5 and kinds["void"] >= 3 and any(r.negative for r in rows)
    suffix = random.Random().randrange(16**8)
    live, imported = f"live{suffix:08x}", f"imp{suffix:08x}"
    env = {
        "DATABASE_URL": own_database,
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "KIZUNA_NOW": NOW,
        "KIZUNA_SWEEP_INTERVAL_SECONDS": "0.2",
        # small batches, as a large file meets them: a customer's rows span many batches
        "KIZUNA_CLASSIFIER_BATCH_SIZE": "40",
    }
    procs = [services(name, **env) for name in ("ingest", "classifier", "reports")]
    for p in procs:
        p.start()
    for p in procs:
        await p.ready()
    ingest, reports = procs[0].url, procs[2].url
    keys = {t: await api_key(own_database, t) for t in (live, imported)}

    pool = await asyncpg.create_pool(own_database, min_size=1, max_size=2)
    async with pool, httpx.AsyncClient(timeout=30) as http:
        # (a) live: the POS feed, in date order, a few dozen events per request
        stream = sorted(rows, key=lambda r: (r.day, r.clock, r.n))
        for i in range(0, len(stream), 40):
            events = [live_event(r) for r in stream[i : i + 40]]
            r = await http.post(
                ingest + "/v1/purchases",
                json={"events": events},
                headers=keys[live],
            )
            assert r.status_code == 202, r.text

        # (b) the same sales as a CP932 export, newest first and scattered
        path = tmp_path / "売上履歴.csv"
        path.write_bytes(scrambled_csv(rows))
        r = await http.post(
            ingest + "/v1/imports/sales",
            params={"file_name": path.name},
            content=path.read_bytes(),
            headers={**keys[imported], "Content-Type": "text/csv"},
        )
        assert r.status_code == 202, r.text
        import_id = r.json()["id"]

        async def import_done():
            body = (
                await http.get(f"{ingest}/v1/imports/{import_id}", headers=keys[imported])
            ).json()
            return body if body["status"] != "running" else None

        done = await wait_for(import_done, timeout=60, what="the import to end")
        assert (done["status"], done["rows"], done["accepted"]) == ("done", len(rows), len(rows))

        async def settled():
            for tenant in (live, imported):
                stored = await pool.fetchval(
                    "SELECT count(*) FROM purchases WHERE tenant_id = $1", tenant
                )
                if stored != len(rows):
                    return False
            if await pool.fetchval(
                "SELECT count(*) FROM customer_states WHERE tenant_id = ANY($1::text[])"
                " AND lapse_due_on <= $2",
                [live, imported],
                TODAY,
            ):
                return False  # the lapse clock has not caught up with today yet
            if await pool.fetchval("SELECT count(*) FROM outbox"):
                return False
            for group, topic in (
                ("kizuna-classifier", PURCHASES),
                ("kizuna-reports", CUSTOMER_STATES),
            ):
                if await group_lag(pool, broker.bootstrap, group, [topic]):
                    return False
            return True

        await wait_for(settled, timeout=240, interval=0.5, what="both tenants classified")

        async def get(tenant, path, **params):
            r = await http.get(reports + path, params=params, headers=keys[tenant])
            assert r.status_code == 200, r.text
            return r.json()

        lapsed_seen = False
        for scope in ("all", *BRANCHES):
            for day in month_ends():
                a = await get(live, "/v1/portfolio", scope=scope, as_of=day.isoformat())
                b = await get(imported, "/v1/portfolio", scope=scope, as_of=day.isoformat())
                assert b == a, (scope, day)
                assert segments_of(a) == from_scratch(rows, scope, day), (scope, day)
                lapsed_seen |= any(s.endswith("_lapsed") for s in segments_of(a))
            months = {"from": "2023-07", "to": "2026-06"}
            a = await get(live, "/v1/portfolio/history", scope=scope, granularity="month", **months)
            b = await get(
                imported, "/v1/portfolio/history", scope=scope, granularity="month", **months
            )
            assert b == a, scope
            a = await get(live, "/v1/transitions", scope=scope, **months)
            b = await get(imported, "/v1/transitions", scope=scope, **months)
            assert b == a, scope
            if scope == "all":
                moves = Counter(
                    (c["from"], c["to"]) for m in a["months"] for c in m["cells"] if c["customers"]
                )
                assert any(
                    f.endswith("_active") and (t or "").endswith("_lapsed") for f, t in moves
                )
                assert any(
                    f.endswith("_lapsed") and (t or "").endswith("_active") for f, t in moves
                )
        assert lapsed_seen
