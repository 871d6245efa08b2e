"""``kizuna.purchases.v1``: one sale, return or void from a POS or order system."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Id = Field(min_length=1, max_length=200)


class LineItem(BaseModel):
    model_config = ConfigDict(extra="ignore")

    sku: str | None = Field(None, max_length=200, examples=["A-100"])
    name: str | None = Field(None, max_length=500, examples=["黒酢にんにく"])
    unit_price: Decimal | None = Field(None, max_digits=14, decimal_places=2)
    quantity: Decimal = Field(Decimal(1), max_digits=12, decimal_places=3)


class PurchaseEvent(BaseModel):
    """A sale, a return (positive amount, subtracted) or a void (cancels the sale ``order_id``)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    schema_version: int = Field(1, ge=1, le=1, description="Contract version; absent means 1.")
    event_id: str = Field(
        min_length=1,
        max_length=200,
        description="Unique per tenant; the idempotency key.",
        examples=["pos-17-000123"],
    )
    tenant_id: str = Field(min_length=1, max_length=100, examples=["demo"])
    branch_id: str = Field(min_length=1, max_length=100, examples=["shibuya"])
    customer_id: str = Field(min_length=1, max_length=200, examples=["C000123"])
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
    kind: Literal["sale", "return", "void"] = "sale"
    order_id: str | None = Field(
        None, max_length=200, description="Sales sharing it are one purchase."
    )
    tax: Decimal | None = Field(None, max_digits=14, decimal_places=2)
    currency: str = Field("JPY", min_length=3, max_length=3)
    channel: str | None = Field(None, max_length=100, examples=["store", "online"])
    lines: list[LineItem] = Field(default_factory=list)

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
