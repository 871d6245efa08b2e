"""`kizuna bench`: named scenarios that measure Kizuna on this machine and append the results,
with the machine's facts, to docs/BENCHMARKS.md. Each scenario starts its own broker and fresh
databases, so runs do not disturb each other or a running `kizuna up`.

One module a scenario (classify, portfolio, lapse, latency, imports, faults, pipeline); what they share is in
common.py, the CPU meter and profiler in profile.py."""

from __future__ import annotations

import asyncio
import sys

from .common import REPORT


def main(args) -> int:
    if args.scenario == "classify":
        from .classify import scenario_classify

        text = asyncio.run(
            scenario_classify(
                args.events,
                args.customers,
                args.branches,
                args.instances,
                args.naive_seconds,
                args.partitions,
                args.profile,
            )
        )
    elif args.scenario == "portfolio":
        from .portfolio import scenario_portfolio

        text = asyncio.run(scenario_portfolio([10_000, 1_000_000], args.requests))
    elif args.scenario == "import":
        from .imports import scenario_import

        text = asyncio.run(scenario_import(args.rows, args.partitions))
    elif args.scenario == "latency":
        from .latency import scenario_latency

        text = asyncio.run(
            scenario_latency(args.rate, args.seconds, args.partitions, cold=args.cold)
        )
    elif args.scenario == "lapse":
        from .lapse import scenario_lapse

        text = asyncio.run(scenario_lapse(args.lapse_customers, args.lapsing, args.partitions))
    elif args.scenario == "faults":
        from .faults import scenario_faults

        text = asyncio.run(scenario_faults(args.events))
    elif args.scenario == "pipeline":
        from .pipeline import scenario_pipeline

        text = asyncio.run(scenario_pipeline(args.events))
    else:
        print(f"unknown scenario {args.scenario}", file=sys.stderr)
        return 2
    print(text)
    print(f"appended to {REPORT}")
    return 0
