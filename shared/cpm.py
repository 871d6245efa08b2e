"""CPM: the one classification of Kizuna (see CPM.md). Pure: no I/O, no clock.

Used by the live classifier, the lapse sweep, history rebuilds and the tests alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.events.segments import SEGMENTS

TIERS = ("first", "fledgling", "steady", "trendy", "loyal")
STATES = ("active", "lapsed")
# The segment ids are the contracts' (shared/events/segments.py): tier × state, in this order.
assert tuple(f"{tier}_{state}" for tier in TIERS for state in STATES) == SEGMENTS

SEGMENT_NAMES_JA = {
    "first_active": "初回客",
    "first_lapsed": "初回離脱客",
    "fledgling_active": "よちよち客",
    "fledgling_lapsed": "よちよち離脱客",
    "steady_active": "コツコツ客",
    "steady_lapsed": "コツコツ離脱客",
    "trendy_active": "流行客",
    "trendy_lapsed": "流行離脱客",
    "loyal_active": "優良客",
    "loyal_lapsed": "優良離脱客",
}


class Rules(BaseModel):
    """A tenant's borders. Defaults are the published example (average order ≈ 10,000 yen)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    amount_border: Decimal = Field(
        Decimal(70000), gt=0, description="累計購入金額の境界: trendy/loyal need total ≥ this"
    )
    fledgling_tenure_days: int = Field(
        90, gt=0, description="在籍期間: count ≥ 2 and tenure < this is fledgling"
    )
    loyal_tenure_days: int = Field(
        210, gt=0, description="在籍期間: tenure ≥ this (and total ≥ border) is loyal"
    )
    lapse_days: int = Field(240, gt=0, description="離脱期間: lapse ≥ this is lapsed")
    lapse_days_by_tier: dict[str, int] = Field(
        default_factory=dict,
        description="Optional per-tier lapse border (Kizuna's extension), e.g. {'first': 180}",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Rules:
        if self.loyal_tenure_days <= self.fledgling_tenure_days:
            raise ValueError("loyal_tenure_days must be greater than fledgling_tenure_days")
        unknown = set(self.lapse_days_by_tier) - set(TIERS)
        if unknown:
            raise ValueError(
                f"lapse_days_by_tier: unknown tier(s) {sorted(unknown)}; tiers are {TIERS}"
            )
        if any(days <= 0 for days in self.lapse_days_by_tier.values()):
            raise ValueError("lapse_days_by_tier: days must be positive")
        return self

    def lapse_days_for(self, tier: str) -> int:
        return self.lapse_days_by_tier.get(tier, self.lapse_days)


DEFAULT_RULES = Rules()


# Purchase, Figures and the timeline's and classifier's records (shared/timeline.py,
# services/classifier/domain.py) are values: nothing changes one after it is made
# (``dataclasses.replace`` makes a changed copy). They are not ``frozen=True`` only because a
# frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``, about twice
# the cost, and they are made for every event and change (docs/BENCHMARKS.md, issue 11's cost).
@dataclass(slots=True)
class Purchase:
    """One stored purchase event, reduced to what the figures need."""

    event_id: str
    kind: str  # sale | return | void
    branch_id: str
    occurred_on: date
    amount: Decimal
    order_id: str | None = None


@dataclass(slots=True)
class Figures:
    purchase_count: int
    total_amount: Decimal
    first_purchase_on: date
    last_purchase_on: date
    home_branch_id: str | None = None

    @property
    def tenure_days(self) -> int:
        return (self.last_purchase_on - self.first_purchase_on).days

    def lapse_days(self, as_of: date) -> int:
        return (as_of - self.last_purchase_on).days


def in_scope(purchase: Purchase, scope: str) -> bool:
    """Whether a purchase counts in a scope. Voids count everywhere: they cancel an order
    wherever it was bought."""
    return scope == "all" or purchase.kind == "void" or purchase.branch_id == scope


def compute_figures(
    purchases: Iterable[Purchase], scope: str = "all", as_of: date | None = None
) -> Figures | None:
    """The figures of one customer in one scope from their purchase events.

    Order does not matter and neither do late arrivals: sales sharing an ``order_id`` are one
    purchase (amounts add, dated by the earliest); a void cancels every sale and return of its
    order; a return subtracts its amount; only events on or before ``as_of`` count. ``None``
    when no purchase counts (a customer in no segment).

    The classifier's hot path (once per customer, scope and day): one pass to find voids and
    the scope's events, one over those; tests/shared/test_cpm.py checks it against the plain
    definition.
    """
    everywhere = scope == "all"
    voided: set[str] = set()
    rows = []
    for p in purchases:
        if as_of is not None and p.occurred_on > as_of:
            continue
        if p.kind == "void":
            if p.order_id:
                voided.add(p.order_id)
        elif everywhere or p.branch_id == scope:
            rows.append(p)
    orders: dict[object, list] = {}
    spend: dict[str, Decimal] = {}
    returned = 0
    for p in rows:
        order_id = p.order_id
        if order_id and order_id in voided:
            continue
        if p.kind == "sale":
            key = order_id if order_id else (p.event_id,)  # a tuple never equals an order id
            order = orders.get(key)
            if order is None:
                orders[key] = [p.amount, p.occurred_on]
            else:
                order[0] += p.amount
                if p.occurred_on < order[1]:
                    order[1] = p.occurred_on
            spend[p.branch_id] = spend.get(p.branch_id, 0) + p.amount
        else:  # return
            returned += p.amount
            spend[p.branch_id] = spend.get(p.branch_id, 0) - p.amount
    if not orders:
        return None
    total = Decimal(0)
    first = last = None
    for amount, on in orders.values():
        total += amount
        if first is None or on < first:
            first = on
        if last is None or on > last:
            last = on
    if len(spend) == 1:
        home = next(iter(spend))
    else:
        home = max(sorted(spend), key=spend.__getitem__)
    return Figures(
        purchase_count=len(orders),
        total_amount=total - returned,
        first_purchase_on=first,
        last_purchase_on=last,
        home_branch_id=home,
    )


def tier_of(fig: Figures, rules: Rules = DEFAULT_RULES) -> str:
    """Tier by the table of CPM.md, first rule that matches wins."""
    if fig.purchase_count <= 1:
        return "first"
    tenure = fig.tenure_days
    if tenure < rules.fledgling_tenure_days:
        return "fledgling"
    if fig.total_amount < rules.amount_border:
        return "steady"
    if tenure < rules.loyal_tenure_days:
        return "trendy"
    return "loyal"


def lapse_due_on(fig: Figures, rules: Rules = DEFAULT_RULES) -> date:
    """The first date on which this customer counts as lapsed if nothing else happens."""
    return fig.last_purchase_on + timedelta(days=rules.lapse_days_for(tier_of(fig, rules)))


def classify(fig: Figures | None, as_of: date, rules: Rules = DEFAULT_RULES) -> str | None:
    """The segment id of a customer's figures as of a date, or ``None`` for no segment."""
    if fig is None:
        return None
    tier = tier_of(fig, rules)
    state = "lapsed" if fig.lapse_days(as_of) >= rules.lapse_days_for(tier) else "active"
    return f"{tier}_{state}"


def is_lapsed(segment: str | None) -> bool:
    return bool(segment) and segment.endswith("_lapsed")


def tier_part(segment: str | None) -> str | None:
    return segment.rsplit("_", 1)[0] if segment else None
