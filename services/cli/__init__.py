"""The `kizuna` command."""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import signal
import sys
from datetime import date

from shared import logs
from shared.settings import Settings, get_settings, today_in

from . import accounts

SERVICES = ("ingest", "classifier", "reports", "notifier")


def cmd_serve(args, settings: Settings) -> int:
    import uvicorn

    if not settings.database_url or (
        args.service != "reports" and not settings.kafka_bootstrap_servers
    ):
        print(
            "kizuna serve needs DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS (kizuna up sets both)",
            file=sys.stderr,
        )
        return 2
    port = getattr(settings, f"{args.service}_port")
    importlib.import_module(f"services.{args.service}.app")
    # What importing made (the libraries' modules, classes, pydantic and faststream schemas:
    # ~80,000 objects) lives as long as the process; frozen, the garbage collector stops
    # walking it on every full collection. The classifier's batch handler alone: 9–13% less
    # Python CPU per event, paired (docs/BENCHMARKS.md, 2026-12-06).
    gc.freeze()
    uvicorn.run(
        f"services.{args.service}.app:app",
        host=settings.host,
        port=port,
        log_level=settings.log_level.lower(),
        log_config=None,  # the process's logging (shared.logs), JSON included, not uvicorn's own
        access_log=False,
        timeout_graceful_shutdown=30,
    )
    return 0


def cmd_migrate(args, settings: Settings) -> int:
    from shared.db import migrate, resolve_database_url

    async def run():
        url, server = await resolve_database_url(settings)
        applied = await migrate(url)
        print(f"migrations applied: {', '.join(applied) if applied else 'none (up to date)'}")
        del server

    asyncio.run(run())
    return 0


def print_portfolio(body: dict) -> None:
    from shared.cpm import SEGMENT_NAMES_JA

    print(f"\nポートフォリオ / portfolio — scope {body['scope']}, as of {body['as_of']}")
    print(
        f"  顧客数 customers: {body['total_customers']:,}   売上累計 sales: ¥{float(body['total_sales']):,.0f}"
    )
    print(f"  {'segment':<18}{'顧客層':<10}{'customers':>10}{'share':>8}{'sales':>16}{'share':>8}")
    for s in body["segments"]:
        print(
            f"  {s['segment']:<18}{SEGMENT_NAMES_JA[s['segment']]:<10}{s['customers']:>10,}"
            f"{float(s['customer_share']) * 100:>7.1f}%{float(s['sales']):>16,.0f}{float(s['sales_share']) * 100:>7.1f}%"
        )


async def _up(args, settings: Settings) -> int:
    import httpx

    from services.cli.stack import Stack

    stack = Stack(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print("Kizuna を起動しています / starting Kizuna …", flush=True)
    try:
        await stack.start()
        print(
            f"  broker   {stack.bootstrap}{' (embedded Tansu, memory only)' if stack.broker else ''}"
        )
        print(
            f"  database {stack.database_url.split('@')[-1]}{' (embedded)' if stack.embedded_db else ''}"
        )
        watcher = asyncio.create_task(stack.watch(stop))
        if args.demo:
            await load_demo(stack, settings, args, stop)
        print("\nKizuna is running / 稼働中:")
        print(f"  dashboard ダッシュボード  {stack.url('reports')}/")
        print(f"  send purchases           POST {stack.url('ingest')}/v1/purchases")
        print(f"  portfolio                {stack.url('reports')}/v1/portfolio?scope=all")
        print(f"  follow-ups フォロー       {stack.url('notifier')}/v1/followups?due=today")
        if settings.stack_port:
            print(f"  the stack's health       http://{settings.host}:{settings.stack_port}/readyz")
        print("Ctrl-C で停止 / Ctrl-C stops everything cleanly.", flush=True)
        await stop.wait()
        watcher.cancel()
    finally:
        print("\n停止しています / stopping: draining the pipeline first …", flush=True)
        await stack.stop()
        print("stopped / 停止しました")
    del httpx
    return 0


async def load_demo(stack, settings: Settings, args, stop: asyncio.Event) -> None:
    import httpx

    from services.cli import demo

    tenant = args.tenant
    end = today_in(settings.default_time_zone, settings)
    print(
        f"\nデモデータを投入中 / loading demo data: {args.customers:,} customers, {args.years} years to {end} …"
    )
    last = {"shown": 0}

    def progress(sent: int, total: int | None) -> None:
        if sent - last["shown"] >= 20000 or (total and sent == total):
            last["shown"] = sent
            print(f"  sent {sent:,} events", flush=True)

    events = demo.generate(
        customers=args.customers,
        branches=5,
        years=args.years,
        seed=args.seed,
        tenant=tenant,
        end=end,
    )
    logins, key_id, key = await demo.demo_accounts(stack.database_url, tenant)
    try:
        sent = await demo.load(stack.url("ingest"), key, events, progress=progress)
    finally:
        await demo.revoke_key(stack.database_url, key_id)
    print(f"  {sent:,} events accepted; classifying …", flush=True)
    started = loop_time = asyncio.get_running_loop().time()

    async def show():
        nonlocal loop_time
        now = asyncio.get_running_loop().time()
        if now - loop_time > 5:
            loop_time = now
            print(f"  … still working ({now - started:.0f}s)", flush=True)

    await stack.wait_idle(timeout=1800, progress=show)
    async with httpx.AsyncClient(base_url=stack.url("reports"), timeout=10) as client:
        owner = logins[0]
        login = await client.post(
            "/v1/session", json={"email": owner.email, "password": owner.password}
        )
        r = await client.get("/v1/portfolio", params={"scope": "all"})
        if login.status_code == 200 and r.status_code == 200:
            print_portfolio(r.json())
        if login.status_code == 200:
            await client.delete("/v1/session", headers={"X-CSRF-Token": login.json()["csrf_token"]})
    print(f"\nログイン / log in at {stack.url('reports')}/login (passwords are new every run):")
    for person in logins:
        where = f"branch {', '.join(person.branches)}" if person.branches else "whole chain"
        print(f"  {person.role:<8} {person.email:<28} {person.password}   ({where})")


def cmd_up(args, settings: Settings) -> int:
    return asyncio.run(_up(args, settings))


def cmd_demo_data(args, settings: Settings) -> int:
    from services.cli import demo

    end = (
        date.fromisoformat(args.end) if args.end else today_in(settings.default_time_zone, settings)
    )
    events = demo.generate(
        customers=args.customers,
        branches=5,
        years=args.years,
        seed=args.seed,
        tenant=args.tenant,
        end=end,
    )
    if args.out:
        n = demo.write_ndjson(events, args.out)
        print(f"wrote {n:,} events to {args.out}")
        return 0
    url = args.url or f"http://{settings.host}:{settings.ingest_port}"

    def progress(sent, total):
        print(f"\r  sent {sent:,} events", end="", flush=True)

    if not args.key:
        print(
            "demo-data needs an ingest key of the tenant: --key or KIZUNA_API_KEY"
            " (kizuna keys create --tenant T --role ingest)",
            file=sys.stderr,
        )
        return 2
    n = asyncio.run(demo.load(url, args.key, events, progress=progress))
    print(f"\n{n:,} events accepted by {url}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kizuna",
        description="Kizuna (絆): a live customer portfolio (CPM). 顧客ポートフォリオをリアルタイムに。",
    )
    sub = p.add_subparsers(dest="command", required=True)

    up = sub.add_parser(
        "up", help="run everything in the foreground (embedded broker/database by default)"
    )
    up.add_argument(
        "--demo", action="store_true", help="load a demo chain (5 branches, 3 years of sales)"
    )
    up.add_argument("--customers", type=int, default=20000, help="demo customers (default 20,000)")
    up.add_argument("--years", type=int, default=3, help="years of demo history (default 3)")
    up.add_argument("--seed", type=int, default=7)
    up.add_argument(
        "--tenant", default=None, help="demo tenant (default KIZUNA_DEFAULT_TENANT, 'demo')"
    )
    up.set_defaults(func=cmd_up)

    mig = sub.add_parser("migrate", help="apply the database migrations that have not run yet")
    mig.set_defaults(func=cmd_migrate)

    serve = sub.add_parser("serve", help="run one service (kizuna up runs all four)")
    serve.add_argument("service", choices=SERVICES)
    serve.set_defaults(func=cmd_serve)

    dd = sub.add_parser(
        "demo-data", help="generate demo purchases and send them to ingest (or to a file)"
    )
    dd.add_argument("--customers", type=int, default=20000)
    dd.add_argument("--years", type=int, default=3)
    dd.add_argument("--seed", type=int, default=7)
    dd.add_argument("--tenant", default="demo")
    dd.add_argument("--end", help="last day of data, YYYY-MM-DD (default today)")
    dd.add_argument("--url", help="ingest base URL (default http://127.0.0.1:8001)")
    dd.add_argument("--out", help="write NDJSON to this file instead of sending")
    dd.add_argument(
        "--key", default=None, help="ingest API key of the tenant (default KIZUNA_API_KEY)"
    )
    dd.set_defaults(func=cmd_demo_data)
    imp = sub.add_parser(
        "import",
        help="import a sales or customer CSV file through the running ingest service",
        description="Import a sales or customer file (CSV/TSV, CP932 or UTF-8, Japanese or "
        "English headers) through ingest (kizuna up). Exit 0: all rows imported; 1: some rows "
        "rejected (written to FILE.rejections.csv); 2: the header cannot be mapped; 3: the "
        "import could not run or stopped (run it again to resume).",
    )
    imp.add_argument("kind", choices=["sales", "customers"])
    imp.add_argument("file", help="the CSV or tab-separated file")
    imp.add_argument(
        "--tenant", default=None, help="tenant (default KIZUNA_DEFAULT_TENANT, 'demo')"
    )
    imp.add_argument("--branch", help="branch of every row, for a file without a branch column")
    imp.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="COLUMN=field",
        help="map a column to a field (repeatable); '-' as field ignores the column",
    )
    imp.add_argument(
        "--dry-run", action="store_true", help="show encoding, delimiter, mapping, first rows"
    )
    imp.add_argument("--resume", type=int, metavar="ID", help="resume this unfinished import")
    imp.add_argument("--rejections", metavar="PATH", help="where to write the rejected rows")
    imp.add_argument("--url", help="ingest base URL (default http://127.0.0.1:8001)")
    imp.add_argument(
        "--key", default=None, help="an ingest or admin API key (default KIZUNA_API_KEY)"
    )
    imp.set_defaults(func=cmd_import)

    bench = sub.add_parser(
        "bench", help="run a benchmark scenario; results go to docs/BENCHMARKS.md"
    )
    bench.add_argument(
        "scenario",
        choices=["classify", "latency", "lapse", "portfolio", "import", "faults", "pipeline"],
        help="classify: the classifier against two baselines; lapse: the lapse clock on one busy "
        "day; latency: HTTP accept to visible in reports; portfolio: GET /v1/portfolio at 10,000 and 1,000,000 customers; import: a CP932 "
        "sales file beside PostgreSQL's COPY; faults: --events through the whole stack while ten "
        "faults hit it (SIGKILLs, a PostgreSQL restart, the broker killed), checked from scratch; "
        "pipeline: --events through the whole stack, accepted to visible in the reports",
    )
    bench.add_argument("--requests", type=int, default=500, help="portfolio: requests per case")
    bench.add_argument("--rate", type=int, default=2000, help="latency: events per second")
    bench.add_argument("--rows", type=int, default=1_000_000, help="import: rows in the CSV file")
    bench.add_argument("--seconds", type=int, default=60, help="latency: how long to feed")
    bench.add_argument(
        "--cold",
        action="store_true",
        help="latency: start from an empty database (default: 50,000 customers have bought "
        "before the clock starts, then ANALYZE)",
    )
    bench.add_argument("--lapse-customers", type=int, default=1_000_000)
    bench.add_argument("--lapsing", type=int, default=200_000)
    bench.add_argument(
        "--profile",
        action="store_true",
        help="classify: sample the classifier with py-spy and add its hot functions to the report",
    )
    bench.add_argument("--events", type=int, default=1_000_000)
    bench.add_argument("--customers", type=int, default=200_000)
    bench.add_argument("--branches", type=int, default=5)
    bench.add_argument(
        "--instances", type=int, default=2, help="also run N classifier processes in one group"
    )
    bench.add_argument(
        "--naive-seconds", type=float, default=20, help="how long to run the per-event baseline"
    )
    bench.add_argument("--partitions", type=int, default=8)
    bench.set_defaults(func=cmd_bench)
    accounts.add_parsers(sub)
    return p


def cmd_import(args, settings: Settings) -> int:
    from services.cli import imports

    return imports.main(args, settings)


def cmd_bench(args, settings: Settings) -> int:
    from services.cli import bench

    return bench.main(args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = get_settings()
    if getattr(args, "tenant", "x") is None:
        args.tenant = settings.default_tenant
    if getattr(args, "key", "x") is None:
        args.key = settings.api_key
    logs.configure(settings.log_level, settings.log_format, getattr(args, "service", None))
    return args.func(args, settings) or 0
