"""The fast path's arithmetic: a customer's figures after new sales, from their stored figures
and a little more kept beside them (:class:`Fold`), without their events. Pure.

``shared.cpm.compute_figures`` is the definition: sales sharing an order id are one purchase
dated by its earliest line, a void cancels its whole order, a return subtracts. A plain fold —
add the new sales to the stored figures — gives the same figures exactly when the new events
are sales dated on or after every stored event, in scopes whose stored figures exist, and none
of them names an order id the customer's events ever named (a second line of a stored order is
not a new purchase, and a sale of a voided order does not count). :class:`Fold` keeps what
tells that — every order id seen, in a Bloom filter: a false "seen" only sends the customer the
slow way, never folds wrongly — and what the home branch needs: spend per branch.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from shared.cpm import Figures, Purchase, in_scope

BLOOM_BYTES = 256  # 2,048 bits; with 3 probes under 1% false "seen" up to ~200 order ids
_PROBES = 3
_BITS = BLOOM_BYTES * 8


def _probes(order_id: str) -> list[int]:
    """The filter's bits of an order id: two stable 32-bit hashes (CRC-32 and Adler-32, in
    C; Python's hash() changes between processes), combined (double hashing)."""
    data = order_id.encode()
    a, b = zlib.crc32(data), zlib.adler32(data) | 1
    return [(a + i * b) % _BITS for i in range(_PROBES)]


@dataclass(frozen=True, slots=True)
class Fold:
    """What the chain-wide ("all") state keeps besides the figures: spend per branch (sales
    minus returns, voided orders left out — what the home branch is chosen by) and the order
    ids of every event of the customer (Bloom filter)."""

    spend: dict[str, Decimal]
    orders: bytes
    last_on: date  # the day of the customer's latest event (any kind)
    void_on: date | None  # the day of their latest void

    def may_hold(self, order_id: str) -> bool:
        bits = self.orders
        return all(bits[i >> 3] & (1 << (i & 7)) for i in _probes(order_id))

    def with_sales(self, sales: Iterable[Purchase]) -> Fold:
        spend = dict(self.spend)
        bits = bytearray(self.orders)
        for p in sales:
            spend[p.branch_id] = spend.get(p.branch_id, 0) + p.amount
            if p.order_id:
                for i in _probes(p.order_id):
                    bits[i >> 3] |= 1 << (i & 7)
        last_on = max([self.last_on, *(p.occurred_on for p in sales)])
        return Fold(spend, bytes(bits), last_on, self.void_on)


def fold_of(events: Iterable[Purchase]) -> Fold:
    """The fold of a customer's stored events (all scopes, any date)."""
    events = list(events)
    voided = {p.order_id for p in events if p.kind == "void" and p.order_id}
    spend: dict[str, Decimal] = {}
    bits = bytearray(BLOOM_BYTES)
    for p in events:
        if p.order_id:
            for i in _probes(p.order_id):
                bits[i >> 3] |= 1 << (i & 7)
        if p.kind == "void" or (p.order_id and p.order_id in voided):
            continue
        sign = p.amount if p.kind == "sale" else -p.amount
        spend[p.branch_id] = spend.get(p.branch_id, 0) + sign
    days = [p.occurred_on for p in events]
    voids = [p.occurred_on for p in events if p.kind == "void"]
    return Fold(spend, bytes(bits), max(days, default=date.min), max(voids, default=None))


def foldable(fold: Fold | None, new: list[Purchase]) -> bool:
    """Whether new events can be folded: all sales, dated on or after every stored event and
    after the latest void (a day with a void is a void's day: its cause), none naming an order
    id seen before (within ``new``, lines may share one: they are one new purchase)."""
    if fold is None or not new:
        return False
    since = min(p.occurred_on for p in new)
    if since < fold.last_on or (fold.void_on is not None and since <= fold.void_on):
        return False
    for p in new:
        if p.kind != "sale" or (p.order_id and fold.may_hold(p.order_id)):
            return False
    return True


def figures_after(
    start: Figures, sales: list[Purchase], scope: str, spend: dict[str, Decimal], as_of: date
) -> Figures:
    """``compute_figures`` of the stored events and ``sales`` as of a day, from the stored
    figures ``start`` (see the module's conditions). ``spend`` is the chain-wide spend per
    branch of the stored events (the home branch of the "all" scope)."""
    orders: dict[object, date] = {}
    added = Decimal(0)
    spend = dict(spend) if scope == "all" else {}
    for p in sales:
        if p.occurred_on > as_of or not in_scope(p, scope):
            continue
        key = p.order_id if p.order_id else (p.event_id,)  # as compute_figures keys orders
        on = orders.get(key)
        if on is None or p.occurred_on < on:
            orders[key] = p.occurred_on
        added += p.amount
        if scope == "all":
            spend[p.branch_id] = spend.get(p.branch_id, 0) + p.amount
    if not orders:
        return start
    days = orders.values()
    if scope == "all":
        home = next(iter(spend)) if len(spend) == 1 else max(sorted(spend), key=spend.__getitem__)
    else:
        home = scope
    return Figures(
        purchase_count=start.purchase_count + len(orders),
        total_amount=start.total_amount + added,
        first_purchase_on=min(start.first_purchase_on, *days),
        last_purchase_on=max(start.last_purchase_on, *days),
        home_branch_id=home,
    )
