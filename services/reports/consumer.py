"""The reports consumer's work unit: one consumed batch of customer states, applied in the
PostgreSQL transaction that also stores the consumer's offsets (see ``PgOffsetConsumer``)."""

from __future__ import annotations

import logging
from collections import defaultdict

import asyncpg
from aiokafka import ConsumerRecord

from shared.deadletters import decode_records
from shared.events import CustomerState
from shared.outbox import write_outbox

from . import metrics, store
from .domain.portfolio import fold, problem_with, sum_deltas, touches_from
from .domain.timeline import add_moves, load_since, moves_delta

log = logging.getLogger("kizuna.reports")
SERVICE = "reports"
GROUP = "kizuna-reports"


def decode(records: list[ConsumerRecord]) -> tuple[list[CustomerState], list[tuple[str, str, str]]]:
    """Customer states from records; what cannot be read becomes a dead-letter outbox row."""
    return decode_records(records, CustomerState, SERVICE, problem_with)


async def on_customer_states(conn: asyncpg.Connection, records: list[ConsumerRecord]) -> None:
    """Fold a batch into customer rows, portfolio deltas, timelines and monthly moves: one read
    (rows with locks and the part of their timelines a fold can touch) and one write, however
    many states and customers the batch holds. A correction reaches back to its
    ``corrects_from`` day (``touches_from``), so its cost is that of the customer's entries
    from there on, never the tenant's."""
    states, dead = decode(records)
    by_key: dict[store.Key, list[CustomerState]] = defaultdict(list)
    for state in states:
        by_key[(state.tenant_id, state.scope, state.customer_id)].append(state)
    read_since = {key: load_since(touches_from(None, s)) for key, s in by_key.items()}
    stored, timelines = await store.lock_customers(conn, read_since)
    # A state of the old contract undoing the last applied change reaches back to that
    # change's day, which only the stored row tells: read further back for those few.
    earlier = {
        key: since
        for key, row in stored.items()
        if (since := load_since(touches_from(row, by_key[key]))) < read_since[key]
    }
    timelines.update(await store.load_timelines(conn, earlier))
    new_rows, changed_rows, deltas = {}, {}, []
    moves: dict[tuple, list] = {}
    gone, entries = [], []
    applied = skipped = 0
    for key, key_states in by_key.items():
        old = timelines.get(key, [])
        folded = fold(stored.get(key), old, key_states)
        applied += folded.applied
        skipped += folded.skipped
        if not folded.applied:
            continue
        (changed_rows if key in stored else new_rows)[key] = folded.row
        deltas += [(key[0], key[1], d) for d in folded.deltas]
        add_moves(moves, key[:2], moves_delta(old, folded.timeline, folded.lowest))
        gone += [(key, e) for e in folded.removed]
        entries += [(key, e) for e in folded.added]

    await store.remove_entries(conn, gone)
    if new_rows or changed_rows:
        await store.write_batch(
            conn,
            new_rows=new_rows,
            changed_rows=changed_rows,
            sums=sum_deltas(deltas),
            entries=entries,
            moves=moves,
        )
    await write_outbox(conn, dead)
    metrics.STATES_APPLIED.inc(applied)
    metrics.STATES_SKIPPED.inc(skipped)  # dead letters are counted and logged by decode_records
