"""``kizuna.purchases.v1``: one sale, return or void from a POS or order system."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Id = Field(min_length=1, max_length=200)


class LineItem(BaseModel):
    """One line of a receipt or order: informative (what was bought); the event's ``amount``
    is what counts."""

    model_config = ConfigDict(extra="ignore")

    sku: str | None = Field(None, max_length=200, description="Article code.", examples=["A-100"])
    name: str | None = Field(
        None, max_length=500, description="Article name as printed.", examples=["黒酢にんにく"]
    )
    unit_price: Decimal | None = Field(
        None,
        max_digits=14,
        decimal_places=2,
        description="Price of one unit, tax included (decimal string or number).",
        examples=["3600"],
    )
    quantity: Decimal = Field(
        Decimal(1),
        max_digits=12,
        decimal_places=3,
        description="Units bought (up to three decimals, e.g. weight).",
        examples=["3"],
    )


class PurchaseEvent(BaseModel):
    """A sale, a return (positive amount, subtracted) or a void (cancels the sale ``order_id``).

    Sent to ``kizuna.purchases.v1`` with the key ``"{tenant_id}:{customer_id}"`` (or through
    ``POST /v1/purchases``). Sending the same ``event_id`` again is harmless."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    schema_version: int = Field(1, ge=1, le=1, description="Contract version; absent means 1.")
    event_id: str = Field(
        min_length=1,
        max_length=200,
        description="Unique per tenant; the idempotency key.",
        examples=["pos-17-000123"],
    )
    tenant_id: str = Field(
        min_length=1,
        max_length=100,
        description="The retail chain or mail-order company (set from the caller's "
        "credentials over HTTP).",
        examples=["demo"],
    )
    branch_id: str = Field(
        min_length=1,
        max_length=100,
        description="The store, site or channel that made the sale; the customer is also "
        "classified within it (scope = branch_id).",
        examples=["shibuya"],
    )
    customer_id: str = Field(
        min_length=1,
        max_length=200,
        description="The member or customer number, stable across branches.",
        examples=["C000123"],
    )
    occurred_at: datetime = Field(
        description="ISO 8601; without an offset it is the tenant's local time.",
        examples=["2026-11-20T14:03:00+09:00"],
    )
    amount: Decimal | None = Field(
        None,
        ge=0,
        max_digits=14,
        decimal_places=2,
        description="Tax included, what the customer paid (a return's amount is subtracted). "
        "Optional for a void.",
        examples=["10800"],
    )
    kind: Literal["sale", "return", "void"] = Field(
        "sale",
        description="`sale`; `return` (its positive amount is subtracted); `void` (cancels "
        "the sale with the same `order_id`).",
        examples=["sale"],
    )
    order_id: str | None = Field(
        None,
        max_length=200,
        description="Sales sharing it are one purchase; a void names the order it cancels.",
        examples=["R-17-000123"],
    )
    tax: Decimal | None = Field(
        None,
        max_digits=14,
        decimal_places=2,
        description="The tax contained in `amount` (informative).",
        examples=["800"],
    )
    currency: str = Field(
        "JPY", min_length=3, max_length=3, description="ISO 4217 code.", examples=["JPY"]
    )
    channel: str | None = Field(
        None,
        max_length=100,
        description="How the sale was made (informative).",
        examples=["store", "online"],
    )
    lines: list[LineItem] = Field(
        default_factory=list, description="The receipt's lines (optional, informative)."
    )

    @model_validator(mode="after")
    def _kind_needs(self) -> PurchaseEvent:
        if self.kind == "void":
            if not self.order_id:
                raise ValueError("a void must name the order_id of the sale it cancels")
            if self.amount is None:
                self.amount = Decimal(0)
        elif self.amount is None:
            raise ValueError(f"a {self.kind} needs an amount")
        return self
