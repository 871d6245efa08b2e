"""History does not depend on arrival order (issue 11). One three-year, three-branch history sent
over HTTP into three tenants — in date order, shuffled, and branch by branch (a chain connecting
its branches one at a time) — gives in every scope the same portfolio as of every month-end,
the same monthly history and transitions, all equal to classifying the sales from scratch; what
the classifier published, read with the correction contract, is every customer's from-scratch
timeline; and the open follow-up tasks are the same (none for a lapse older than the max age).
And `kizuna import sales` of branch B's file after branch A's leaves the chain history of one
import of both. Every service is a real process on a broker and a database of the test's own."""

from __future__ import annotations

import random
from collections import defaultdict
from decimal import Decimal

import asyncpg
import httpx
import pytest

from shared.cpm import Purchase
from shared.events import CUSTOMER_STATES, PURCHASES, SEGMENT_CHANGES
from shared.kafka import group_lag
from shared.timeline import Borders, timeline
from tests.e2e.test_import_history import (
    BRANCHES,
    NOW,
    TODAY,
    Row,
    from_scratch,
    history,
    live_event,
    month_ends,
    scrambled_csv,
    segments_of,
)
from tests.helpers import api_key, run_kizuna, wait_for
from tests.timelines import (
    held,
    read_changes,
    segment_days,
    state_days,
    timeline_segment_days,
    timeline_state_days,
)

pytestmark = pytest.mark.e2e

CUSTOMERS = 150
MAX_AGE_DAYS = 30  # KIZUNA_FOLLOWUP_MAX_AGE_DAYS
MONTHS = {"from": "2023-07", "to": "2026-06"}


def purchases_of(rows: list[Row]) -> dict[str, list[Purchase]]:
    out: dict[str, list[Purchase]] = defaultdict(list)
    for r in rows:
        out[r.customer].append(
            Purchase(f"live-{r.n}", r.kind, r.branch, r.day, Decimal(r.amount), r.order)
        )
    return out


def expected_lapse_tasks(rows: list[Row]) -> set[str]:
    """Customers whose chain-wide timeline ends in a lapse no older than the max age today."""
    out = set()
    for customer, purchases in purchases_of(rows).items():
        entries = timeline(purchases, "all", Borders(), TODAY)
        last = entries[-1] if entries else None
        if last and last.cause == "lapse" and (TODAY - last.effective_on).days <= MAX_AGE_DAYS:
            out.add(customer)
    return out


async def test_date_order_shuffled_and_branch_by_branch_give_one_history(
    services, own_broker, own_database, tmp_path
):
    rows = history(seed=20261204, customers=CUSTOMERS)
    expected_tasks = expected_lapse_tasks(rows)
    assert expected_tasks  # the history ends with recent lapses: tasks to compare
    suffix = random.Random().randrange(16**8)
    orders = {
        f"dated{suffix:08x}": sorted(rows, key=lambda r: (r.day, r.clock, r.n)),
        f"shuffled{suffix:08x}": random.Random(11).sample(rows, len(rows)),
        f"branches{suffix:08x}": sorted(
            rows, key=lambda r: (BRANCHES.index(r.branch), r.day, r.clock, r.n)
        ),
    }
    # Branch A's file, then branch B's, into one tenant; both in one file into another.
    two_files, one_file = f"twofiles{suffix:08x}", f"onefile{suffix:08x}"
    a_and_b = [r for r in rows if r.branch in BRANCHES[:2]]
    env = {
        "DATABASE_URL": own_database,
        "KAFKA_BOOTSTRAP_SERVERS": own_broker.bootstrap,
        "KIZUNA_NOW": NOW,
        "KIZUNA_SWEEP_INTERVAL_SECONDS": "0.2",
        "KIZUNA_FOLLOWUP_MAX_AGE_DAYS": str(MAX_AGE_DAYS),
        # small batches: a customer's history spans many of them, late events meet the clock
        "KIZUNA_CLASSIFIER_BATCH_SIZE": "60",
    }
    procs = [services(name, **env) for name in ("ingest", "classifier", "reports", "notifier")]
    for p in procs:
        p.start()
    for p in procs:
        await p.ready()
    ingest, reports, notifier = procs[0].url, procs[2].url, procs[3].url

    pool = await asyncpg.create_pool(own_database, min_size=1, max_size=2)
    async with pool, httpx.AsyncClient(timeout=30) as http:
        keys = {t: await api_key(pool, t) for t in [*orders, two_files, one_file]}
        for tenant, ordered in orders.items():
            for i in range(0, len(ordered), 200):
                r = await http.post(
                    ingest + "/v1/purchases",
                    json={"events": [live_event(r) for r in ordered[i : i + 200]]},
                    headers=keys[tenant],
                )
                assert r.status_code == 202, r.text
        for branch in BRANCHES[:2]:
            path = tmp_path / f"{branch}.csv"
            path.write_bytes(scrambled_csv([r for r in rows if r.branch == branch]))
            await run_kizuna(
                "import",
                "sales",
                str(path),
                "--tenant",
                two_files,
                "--url",
                ingest,
                "--key",
                keys[two_files]["Authorization"].removeprefix("Bearer "),
                timeout=120,
            )
        path = tmp_path / "both.csv"
        path.write_bytes(scrambled_csv(a_and_b))
        await run_kizuna(
            "import",
            "sales",
            str(path),
            "--tenant",
            one_file,
            "--url",
            ingest,
            "--key",
            keys[one_file]["Authorization"].removeprefix("Bearer "),
            timeout=120,
        )

        expected_counts = {t: len(rows) for t in orders} | {
            two_files: len(a_and_b),
            one_file: len(a_and_b),
        }

        async def settled():
            for tenant, count in expected_counts.items():
                stored = await pool.fetchval(
                    "SELECT count(*) FROM purchases WHERE tenant_id = $1", tenant
                )
                if stored != count:
                    return False
            if await pool.fetchval(
                "SELECT count(*) FROM customer_states WHERE lapse_due_on <= $1", TODAY
            ):
                return False  # the lapse clock has not caught up with today yet
            if await pool.fetchval("SELECT count(*) FROM outbox"):
                return False
            for group, topic in (
                ("kizuna-classifier", PURCHASES),
                ("kizuna-reports", CUSTOMER_STATES),
                ("kizuna-notifier", SEGMENT_CHANGES),
            ):
                if await group_lag(pool, own_broker.bootstrap, group, [topic]):
                    return False
            return True

        await wait_for(settled, timeout=300, interval=0.5, what="every tenant classified")

        async def get(base, tenant, path, **params):
            r = await http.get(base + path, params=params, headers=keys[tenant])
            assert r.status_code == 200, r.text
            return r.json()

        # What the classifier published, read as the README tells consumers to.
        purchases = purchases_of(rows)
        for tenant in orders:
            chains = held(await read_changes(own_broker.bootstrap, tenant))
            for customer, mine in purchases.items():
                for scope in {"all"} | {p.branch_id for p in mine}:
                    want = timeline_segment_days(timeline(mine, scope, Borders(), TODAY))
                    got = segment_days(chains.get((customer, scope), []))
                    assert got == want, (tenant, customer, scope)

        # The reports: every scope, every month-end, the monthly history and transitions.
        first, *others = orders
        for scope in ("all", *BRANCHES):
            for day in month_ends():
                want = await get(reports, first, "/v1/portfolio", scope=scope, as_of=str(day))
                assert segments_of(want) == from_scratch(rows, scope, day), (scope, day)
                for tenant in others:
                    got = await get(reports, tenant, "/v1/portfolio", scope=scope, as_of=str(day))
                    assert got == want, (tenant, scope, day)
            for path, params in (
                ("/v1/portfolio/history", {"granularity": "month", **MONTHS}),
                ("/v1/transitions", MONTHS),
            ):
                want = await get(reports, first, path, scope=scope, **params)
                for tenant in others:
                    assert await get(reports, tenant, path, scope=scope, **params) == want, (
                        tenant,
                        path,
                        scope,
                    )

        # The follow-ups: the same open tasks, one per recent lapse, none for older ones.
        async def open_tasks(tenant):
            items, cursor = [], None
            while True:
                params = {"status": "open", "limit": 500, **({"cursor": cursor} if cursor else {})}
                body = await get(notifier, tenant, "/v1/followups", **params)
                items += body["items"]
                cursor = body.get("next")
                if not cursor:
                    return sorted(
                        (i["customer_id"], i["branch_id"], i["segment"], i["reason"], i["due_on"])
                        for i in items
                    )

        want = await open_tasks(first)
        assert {c for c, _, _, reason, _ in want if reason == "lapsed"} == expected_tasks
        for tenant in others:
            assert await open_tasks(tenant) == want, tenant

        # Two imports, branch by branch, and one import of both: one chain history.
        for day in month_ends():
            want = await get(reports, one_file, "/v1/portfolio", scope="all", as_of=str(day))
            assert segments_of(want) == from_scratch(a_and_b, "all", day), day
            got = await get(reports, two_files, "/v1/portfolio", scope="all", as_of=str(day))
            assert got == want, day
        for path, params in (
            ("/v1/portfolio/history", {"granularity": "month", **MONTHS}),
            ("/v1/transitions", MONTHS),
        ):
            want = await get(reports, one_file, path, scope="all", **params)
            assert await get(reports, two_files, path, scope="all", **params) == want, path


async def test_two_classifiers_in_one_group_publish_the_from_scratch_timelines(
    services, own_broker, own_database
):
    """Shuffled history into two classifier processes sharing the partitions (the second joins
    halfway: a rebalance mid-stream): every customer's published timeline, on both topics and
    read with the correction contract, is the from-scratch one."""
    rows = history(seed=20261205, customers=120)
    tenant = f"pair{random.Random().randrange(16**8):08x}"
    shuffled = random.Random(5).sample(rows, len(rows))
    env = {
        "DATABASE_URL": own_database,
        "KAFKA_BOOTSTRAP_SERVERS": own_broker.bootstrap,
        "KIZUNA_NOW": NOW,
        "KIZUNA_SWEEP_INTERVAL_SECONDS": "0.2",
        "KIZUNA_CLASSIFIER_BATCH_SIZE": "50",
    }
    ingest, first, second = (services(n, **env) for n in ("ingest", "classifier", "classifier"))
    for p in (ingest, first):
        p.start()
        await p.ready()
    pool = await asyncpg.create_pool(own_database, min_size=1, max_size=2)
    async with pool, httpx.AsyncClient(timeout=30) as http:
        key = await api_key(pool, tenant)
        for i in range(0, len(shuffled), 100):
            if i == len(shuffled) // 200 * 100:
                second.start()
                await second.ready()
            r = await http.post(
                ingest.url + "/v1/purchases",
                json={"events": [live_event(r) for r in shuffled[i : i + 100]]},
                headers=key,
            )
            assert r.status_code == 202, r.text

        async def settled():
            stored = await pool.fetchval(
                "SELECT count(*) FROM purchases WHERE tenant_id = $1", tenant
            )
            return (
                stored == len(rows)
                and not await pool.fetchval(
                    "SELECT count(*) FROM customer_states WHERE lapse_due_on <= $1", TODAY
                )
                and not await pool.fetchval("SELECT count(*) FROM outbox")
                and not await group_lag(
                    pool, own_broker.bootstrap, "kizuna-classifier", [PURCHASES]
                )
            )

        await wait_for(settled, timeout=240, interval=0.5, what="the stream classified")
        assert first.process.poll() is None and second.process.poll() is None
        moves = held(await read_changes(own_broker.bootstrap, tenant))
        states = held(await read_changes(own_broker.bootstrap, tenant, CUSTOMER_STATES))
        for customer, mine in purchases_of(rows).items():
            for scope in {"all"} | {p.branch_id for p in mine}:
                entries = timeline(mine, scope, Borders(), TODAY)
                key = (customer, scope)
                assert segment_days(moves.get(key, [])) == timeline_segment_days(entries), key
                assert state_days(states.get(key, [])) == timeline_state_days(entries), key
