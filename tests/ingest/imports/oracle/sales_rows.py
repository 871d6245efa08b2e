"""Reading a sales file: each data row a ``kizuna.purchases.v1`` event (:class:`SaleRow`) or a
:class:`~.reader.Rejection`; line items of one order, returns and voids; event ids stable
across re-imports (see reader.py). Parsed cells are cached per column."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from services.ingest.imports.cells import (
    MAX_AMOUNT,
    MAX_QUANTITY,
    _clean,
    _code,
    _fmt,
    _nfkc,
    parse_datetime,
    parse_number,
)

from .reader_rows import Source, _Occurrences, _Reader


@dataclass(frozen=True, slots=True)
class SaleRow:
    """An accepted sales row: ``event`` is a JSON-ready ``kizuna.purchases.v1`` dict."""

    line: int
    event: dict[str, Any]

    ok = True


# Per-column caches of parsed cells (SalesReader): a file repeats its dates, amounts, branches
# and products; each cache is emptied when it reaches this size, so memory stays bounded.
CACHE_ENTRIES = 50_000


_MISSING = object()
_NO_NUMBER = (None, None, None, None, "")  # value, problem, formatted, formatted abs, text


def _code_cell(name: str, raw: str) -> str:
    return _code(raw)


def _text_cell(name: str, raw: str) -> str:
    return _nfkc(_clean(raw))


def _name_cell(name: str, raw: str) -> str:
    return _clean(raw)


_KINDS = {
    "sale": ("売上", "販売", "通常", "受注", "出荷", "購入", "sale", "sales", "order", "purchase", "s"),
    "return": ("返品", "返金", "返却", "赤伝", "マイナス", "return", "refund", "r"),
    "void": ("取消", "取り消し", "取消し", "キャンセル", "取消伝票", "void", "cancel", "cancelled",
             "canceled", "v"),
}  # fmt: skip


_KIND_MAP = {v: k for k, vs in _KINDS.items() for v in vs}


class SalesReader(_Reader):
    """Iterate for :class:`SaleRow` or :class:`Rejection`. Attributes for a progress display:
    ``bytes_read``, ``total_bytes`` (``None`` for a pipe), ``rows``, ``accepted``,
    ``rejected``, ``line``; ``warnings`` once read."""

    kind = "sales"

    def __init__(
        self,
        source: Source,
        *,
        tenant: str,
        branch: str | None = None,
        mapping_overrides: MappingABC[str, str] | Iterable[str] | None = None,
        default_zone: str = "Asia/Tokyo",
        channel: str | None = None,
        namespace: str = "",
        on_progress: Callable[[Any], None] | None = None,
        progress_every: int = 10_000,
        raise_mapping: bool = True,
    ):
        self.zone = ZoneInfo(default_zone)
        self.channel = channel
        self.namespace = namespace
        self._seen = _Occurrences()
        self._orders: dict[str, tuple[str, int]] = {}
        self._reused: list[str] = []
        self._reused_count = 0
        self._run_order: list[Any] = [None, 0, "", True, None, False]  # see _watch_order
        self._repeated_totals: list[str] = []
        super().__init__(
            source,
            tenant=tenant,
            branch=branch,
            mapping_overrides=mapping_overrides,
            on_progress=on_progress,
            progress_every=progress_every,
            raise_mapping=raise_mapping,
        )

    def _prepare(self) -> None:
        assert self.mapping is not None
        f = self.mapping.fields
        self._col = {name: self.mapping.headers[i] for name, i in f.items()}
        self._idx = dict(f)
        self._has_lines = bool({"sku", "name", "unit_price", "quantity"} & f.keys())
        self._watch_totals = "amount" in f and "unit_price" in f
        # What a cell gives depends on its text alone, and a file repeats its dates, amounts,
        # branches and products over and over: each distinct text is parsed once (per column)
        # and the result — value, formatted value or the problem — looked up afterwards.
        self._cells: dict[str, dict[str, Any]] = {name: {} for name in f}
        self._dates: dict[Any, tuple] = {}  # date text, or (date text, time text)
        self._columns = tuple(
            f.get(name)
            for name in (
                "date",
                "time",
                "branch",
                "kind",
                "unit_price",
                "quantity",
                "tax",
                "amount",
            )
        )

    def _cached(self, name: str, raw: str, parse: Callable[[str, str], Any]) -> Any:
        cache = self._cells[name]
        entry = cache.get(raw, _MISSING)
        if entry is _MISSING:
            if len(cache) >= CACHE_ENTRIES:
                cache.clear()
            entry = cache[raw] = parse(name, raw)
        return entry

    def _number_cell(self, name: str, raw: str) -> tuple:
        """(value, problem, formatted, formatted absolute value, cleaned text) of a number."""
        text = _clean(raw)
        if not text:
            return _NO_NUMBER
        what = _WHAT.get(name, name)
        try:
            value = parse_number(text, places=3 if name == "quantity" else 2, what=what)
        except ValueError as exc:
            return None, (self._col[name], text, str(exc)), None, None, text
        if abs(value) >= (MAX_QUANTITY if name == "quantity" else MAX_AMOUNT):
            return None, (self._col[name], text, f"{what} is too large"), None, None, text
        return value, None, _fmt(value), _fmt(abs(value)), text

    def _kind_cell(self, name: str, raw: str) -> tuple[str, tuple | None]:
        text = _clean(raw)
        word = _nfkc(text).lower()
        if not word:
            return "sale", None
        kind = _KIND_MAP.get(word, "")
        if kind:
            return kind, None
        return "", (
            self._col["kind"],
            text,
            "unknown kind: expected 売上, 返品 or 取消 (sale, return, void)",
        )

    def _currency_cell(self, name: str, raw: str) -> tuple[str, tuple | None]:
        text = _clean(raw)
        currency = _nfkc(text).upper() or "JPY"
        if not re.fullmatch(r"[A-Z]{3}", currency):
            return currency, (self._col["currency"], text, "currency must be a 3-letter code")
        return currency, None

    def _date_cell(self, text: str, clock: str) -> tuple:
        """(problems, occurred_at, the tenant's calendar date) of a date (and time) text."""
        col = self._col
        if not text:
            return ((col["date"], "", "missing date"),), "", ""
        problems = []
        at: datetime | None = None
        try:
            at = parse_datetime(text)
        except ValueError as exc:
            problems.append((col["date"], text, str(exc)))
        if at is not None and clock:
            try:
                t = parse_datetime(f"2000/1/1 {_nfkc(clock)}")
                at = at.replace(hour=t.hour, minute=t.minute, second=t.second)
            except ValueError:
                problems.append((col["time"], clock, f"not a time: {clock!r}; expected H:MM[:SS]"))
        if problems or at is None:
            return tuple(problems), "", ""
        if at.tzinfo is None:
            at = at.replace(tzinfo=self.zone)
        return (), at.isoformat(), at.astimezone(self.zone).date().isoformat()

    def _row(self, cells: list[str], line: int):
        idx, col, cached, known = self._idx, self._col, self._cached, self._cells
        i_date, i_time, i_branch, i_kind, i_price, i_qty, i_tax, i_amount = self._columns
        problems: list[tuple[str | None, str | None, str]] = []

        raw = cells[idx["customer_id"]]
        customer = raw.strip() if raw.isascii() else '="'
        if customer.startswith('="'):
            customer = _nfkc(_clean(raw))
        if not customer:
            problems.append((col["customer_id"], "", "missing customer code (顧客コード)"))
        elif len(customer) > 200:
            problems.append((col["customer_id"], customer, "customer code longer than 200"))

        key = cells[i_date] if i_time is None else (cells[i_date], cells[i_time])
        date_cell = self._dates.get(key)
        if date_cell is None:
            if len(self._dates) >= CACHE_ENTRIES:
                self._dates.clear()
            text, clock = (key, "") if i_time is None else key
            date_cell = self._dates[key] = self._date_cell(_clean(text), _clean(clock))
        if date_cell[0]:
            problems += date_cell[0]

        branch = ""
        if i_branch is not None:
            raw = cells[i_branch]
            branch = known["branch"].get(raw) or cached("branch", raw, _code_cell)
        if not branch:
            branch = self.branch or ""
        if not branch:
            problems.append((col.get("branch"), "", "missing branch (店舗) and no --branch given"))
        elif len(branch) > 100:
            problems.append((col["branch"], branch, "branch longer than 100"))

        kind = "sale"
        if i_kind is not None:
            raw = cells[i_kind]
            kind, problem = known["kind"].get(raw) or cached("kind", raw, self._kind_cell)
            if problem:
                problems.append(problem)

        # every cached number cell is a non-empty tuple: `or` falls back to parsing it
        number = self._number_cell
        price = qty = tax = given = _NO_NUMBER
        if i_price is not None:
            raw = cells[i_price]
            price = known["unit_price"].get(raw) or cached("unit_price", raw, number)
        if i_qty is not None:
            raw = cells[i_qty]
            qty = known["quantity"].get(raw) or cached("quantity", raw, number)
        if i_tax is not None:
            raw = cells[i_tax]
            tax = known["tax"].get(raw) or cached("tax", raw, number)
        if i_amount is not None:
            raw = cells[i_amount]
            given = known["amount"].get(raw) or cached("amount", raw, number)
        if price[1] or qty[1] or tax[1] or given[1]:
            problems += [entry[1] for entry in (price, qty, tax, given) if entry[1]]
        unit_price, quantity, amount = price[0], qty[0], given[0]
        computed = False
        if not given[4] and kind != "void":
            # no amount in the row: net amount + tax, else unit price × quantity (+ tax)
            i = idx.get("net_amount")
            net = cached("net_amount", cells[i], number) if i is not None else _NO_NUMBER
            if net[1]:
                problems.append(net[1])
            computed = True
            if net[0] is not None:
                amount = net[0] + (tax[0] or 0)
            elif unit_price is not None:
                amount = unit_price * (quantity if quantity is not None else 1) + (tax[0] or 0)
                if amount.as_tuple().exponent < -2:
                    amount = amount.quantize(Decimal("0.01"), ROUND_HALF_UP)
                if abs(amount) >= MAX_AMOUNT:
                    problems.append((col["unit_price"], price[4], "amount is too large"))
            elif not net[4] and not price[4]:
                source = next(f for f in ("amount", "net_amount", "unit_price") if f in idx)
                reason = f"missing {_WHAT[source]}"
                if source != "amount":
                    reason += ": cannot compute the amount"
                elif {"net_amount", "unit_price"} & idx.keys():
                    reason += " (and nothing to compute it from)"
                problems.append((col[source], "", reason))

        i = idx.get("order_id")
        order = ""
        if i is not None:  # mostly distinct: not cached, a fast path for plain codes instead
            raw = cells[i]
            order = raw.strip() if raw.isascii() else '="'
            if order.startswith('="'):
                order = _code(_clean(raw))
        if len(order) > 200:
            problems.append((col["order_id"], order, "order number longer than 200"))
        if kind == "void" and not order:
            problems.append(
                (
                    col.get("order_id"),
                    None,
                    "a void (取消) needs the order number of the sale it cancels",
                )
            )
        i = idx.get("currency")
        currency, problem = cached("currency", cells[i], self._currency_cell) if i is not None else ("JPY", None)  # fmt: skip
        if problem:
            problems.append(problem)
        if problems:
            return self._problem(line, problems)

        _, occurred_at, day = date_cell
        if amount is not None and amount < 0:
            if kind == "sale":
                kind = "return"
            amount = -amount
        elif amount is not None and kind == "sale" and quantity is not None and quantity < 0:
            kind = "return"  # 返品: quantity -1 with the amount written positive
        if amount is None:
            amount_s = None
        elif computed:
            amount_s = _fmt(amount)
        else:
            amount_s = given[3] if given[0] < 0 else given[2]
        if not order:
            who = (
                customer
                if len(customer) <= 180
                else hashlib.sha256(customer.encode()).hexdigest()[:32]
            )
            order_id = f"d:{who}:{day}"  # the tenant's calendar date
        else:
            order_id = order
        negative = kind != "sale"
        tax_s = None if tax[0] is None else tax[3] if negative else tax[2]
        item = None
        line_total = None
        if self._has_lines:
            sku = name = ""
            i = idx.get("sku")
            if i is not None:
                raw = cells[i]
                sku = known["sku"].get(raw) or cached("sku", raw, _text_cell)
            i = idx.get("name")
            if i is not None:
                raw = cells[i]
                name = known["name"].get(raw) or cached("name", raw, _name_cell)
            if sku or name or unit_price is not None or quantity is not None:
                item = {
                    "sku": sku[:200] or None,
                    "name": name[:500] or None,
                    "unit_price": None
                    if unit_price is None
                    else price[3]
                    if negative
                    else price[2],
                    "quantity": "1" if quantity is None else qty[3] if negative else qty[2],
                }
                if unit_price is not None:
                    line_total = (abs(unit_price) if negative else unit_price) * (
                        1 if quantity is None else abs(quantity) if negative else quantity
                    )
        i = idx.get("channel")
        channel = (cached("channel", cells[i], _text_cell)[:100] if i is not None else "") or (
            self.channel
        )
        lines = (
            f"{item['sku']}\x1e{item['name']}\x1e{item['unit_price']}\x1e{item['quantity']}"
            if item
            else ""
        )
        digest = hashlib.sha256(
            "\x1f".join(
                (
                    self.namespace,
                    branch,
                    customer,
                    occurred_at,
                    kind,
                    amount_s or "",
                    tax_s or "",
                    order_id,
                    currency,
                    channel or "",
                    lines,
                )
            ).encode()
        ).digest()
        nth = self._seen.add((int.from_bytes(digest[:8], "big") >> 1) or 1)
        event = {
            "schema_version": 1,
            "event_id": f"imp-{digest[:10].hex()}-{nth}",
            "tenant_id": self.tenant,
            "branch_id": branch,
            "customer_id": customer,
            "occurred_at": occurred_at,
            "amount": amount_s,
            "kind": kind,
            "order_id": order_id,
            "tax": tax_s,
            "currency": currency,
            "channel": channel,
            "lines": [item] if item else [],
        }
        if order:
            self._watch_order(order, customer, line, amount_s, item, line_total)
        return SaleRow(line, event)

    def _watch_order(self, order, customer, line, amount_s, item, line_total) -> None:
        """Two checks on the order numbers, cheap and bounded: the same number for two
        customers (numbers restart per day or per store: such rows would become one purchase),
        and an amount that is the same on every line of an order whose lines differ (an order
        total repeated on each line: it would be added once per line)."""
        first = self._orders.get(order)
        if first is None:
            if len(self._orders) < 100_000:
                self._orders[order] = (customer, line)
        elif first[0] != customer:
            self._reused_count += 1
            if len(self._reused) < 3:
                self._reused.append(
                    f"{order} (line {first[1]}: {first[0]}, line {line}: {customer})"
                )
        if self._watch_totals:
            # the run of rows with this order number: [order, rows, first amount, every amount
            # the same, first unit price × quantity, some line's differs]
            run = self._run_order
            if order != run[0]:
                self._close_run()
                run = self._run_order = [order, 0, amount_s or "", True, None, False]
            run[1] += 1
            if (amount_s or "") != run[2]:
                run[3] = False
            if item and line_total is not None:
                if run[4] is None:
                    run[4] = line_total
                elif line_total != run[4]:
                    run[5] = True

    def _close_run(self) -> None:
        # lines whose unit price × quantity differ, all with the same amount
        order, rows, _, same_amount, _, totals_differ = self._run_order
        if order is not None and rows >= 2 and same_amount and totals_differ:
            self._repeated_totals.append(order)

    def _finish(self) -> None:
        self._close_run()
        self._run_order = [None, 0, "", True, None, False]

    def _warnings(self) -> list[str]:
        out = super()._warnings()
        if self._reused_count:
            out.append(
                f"{self._reused_count} row(s) reuse an order number of another customer, e.g. "
                + "; ".join(self._reused)
                + ". Rows sharing an order number are one purchase: if numbers restart (per day "
                "or per store), map the order column to '-' and let a customer's rows on one "
                "date be one purchase."
            )
        if self._repeated_totals:
            n = len(self._repeated_totals)
            column = self._col.get("amount")
            out.append(
                f"{n} order(s) have the same {column} on every line while their lines differ "
                f"(e.g. {', '.join(self._repeated_totals[:3])}): if {column} is the order total "
                "repeated on each line, each line adds the whole total; map the line amount "
                "instead (--map)."
            )
        return out


_WHAT = {
    "amount": "amount",
    "net_amount": "net amount",
    "unit_price": "unit price",
    "quantity": "quantity",
    "tax": "tax",
}


def read_sales(
    source: Source,
    *,
    tenant: str,
    branch: str | None = None,
    mapping_overrides: MappingABC[str, str] | Iterable[str] | None = None,
    default_zone: str = "Asia/Tokyo",
    channel: str | None = None,
    namespace: str = "",
    on_progress: Callable[[SalesReader], None] | None = None,
    progress_every: int = 10_000,
) -> SalesReader:
    """Open a sales file (a path or a binary stream) and map its header; iterate the result for
    :class:`SaleRow` (``event``: a JSON-ready ``kizuna.purchases.v1`` dict) or
    :class:`Rejection`, one per data row in file order.

    Raises :class:`MappingError` at once when a required column is missing (customer code,
    date, an amount or a unit price to compute it from, and a branch column unless ``branch``
    is given). Per row: amount from the amount column, else net amount + tax, else unit price ×
    quantity (+ tax); a negative amount (or quantity) is a return with a positive amount; order
    id is the file's order number, else ``d:<customer>:<date>`` (a customer's rows on one date
    are one purchase); dates without an offset are in ``default_zone``. ``channel`` is the
    default channel, ``namespace`` a salt for the event ids (two sources whose identical rows
    are really different purchases). ``on_progress(reader)`` is called every
    ``progress_every`` rows and at the end."""
    return SalesReader(
        source,
        tenant=tenant,
        branch=branch,
        mapping_overrides=mapping_overrides,
        default_zone=default_zone,
        channel=channel,
        namespace=namespace,
        on_progress=on_progress,
        progress_every=progress_every,
    )
