"""The reports consumer's work unit: one consumed batch of customer states, applied in the
PostgreSQL transaction that also stores the consumer's offsets (see ``PgOffsetConsumer``)."""

from __future__ import annotations

import logging
from collections import defaultdict

import asyncpg
from aiokafka import ConsumerRecord

from shared.events import CustomerState
from shared.kafka import decode_records, write_outbox

from . import metrics, store
from .domain.portfolio import Folded, fold, problem_with, sum_deltas
from .domain.timeline import add_moves, load_since, moves_delta, updated

log = logging.getLogger("kizuna.reports")
SERVICE = "reports"
GROUP = "kizuna-reports"


def decode(records: list[ConsumerRecord]) -> tuple[list[CustomerState], list[tuple[str, str, str]]]:
    """Customer states from records; what cannot be read becomes a dead-letter outbox row."""
    return decode_records(records, CustomerState, SERVICE, problem_with)


def lowest_change(stored, folded: Folded):
    """The earliest day a fold changed the customer's timeline: its first new entry, or the
    stored change it undid."""
    days = [e.effective_on for e in folded.added]
    if folded.removed and stored is not None:
        days.append(stored.effective_on)
    return min(days)


async def on_customer_states(conn: asyncpg.Connection, records: list[ConsumerRecord]) -> None:
    """Fold a batch into customer rows, portfolio deltas, timelines and monthly moves: one read
    (rows with locks and the affected part of their timelines) and one write, however many
    states and customers the batch holds."""
    states, dead = decode(records)
    by_key: dict[store.Key, list[CustomerState]] = defaultdict(list)
    for state in states:
        by_key[(state.tenant_id, state.scope, state.customer_id)].append(state)
    # A fold changes a timeline from its first new entry on, which is never dated before the
    # key's earliest state (fold only moves days later) unless it undoes a change dated earlier.
    read_since = {
        key: load_since(min(s.effective_on for s in key_states))
        for key, key_states in by_key.items()
    }
    stored, timelines = await store.lock_customers(conn, read_since)
    new_rows, changed_rows, deltas = {}, {}, []
    folds: dict[store.Key, Folded] = {}
    applied = skipped = 0
    for key, key_states in by_key.items():
        folded = fold(stored.get(key), key_states)
        applied += folded.applied
        skipped += folded.skipped
        if not folded.applied:
            continue
        folds[key] = folded
        (changed_rows if key in stored else new_rows)[key] = folded.row
        deltas += [(key[0], key[1], d) for d in folded.deltas]
    sums = sum_deltas(deltas)

    lowest = {key: lowest_change(stored.get(key), f) for key, f in folds.items()}
    earlier = {
        key: since
        for key, day in lowest.items()
        if key in stored and (since := load_since(day)) < read_since[key]
    }
    timelines.update(await store.load_timelines(conn, earlier))  # an undone earlier change
    moves: dict[tuple, list] = {}
    gone, entries = [], []
    for key, folded in folds.items():
        old = timelines.get(key, [])
        new = updated(old, folded.removed, folded.added)
        add_moves(moves, key[:2], moves_delta(old, new, lowest[key]))
        kept = {e.seq for e in new}
        gone += [(key, e) for e in old if e.seq in folded.removed]
        entries += [(key, e) for e in folded.added if e.seq in kept]

    await store.remove_entries(conn, gone)
    if folds:
        await store.write_batch(
            conn,
            new_rows=new_rows,
            changed_rows=changed_rows,
            sums=sums,
            entries=entries,
            moves=moves,
        )
    await write_outbox(conn, dead)
    metrics.STATES_APPLIED.inc(applied)
    metrics.STATES_SKIPPED.inc(skipped)  # dead letters are counted and logged by decode_records
