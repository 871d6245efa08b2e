"""Reading a sales file: each data row a ``kizuna.purchases.v1`` event (:class:`SaleRow`) or a
:class:`~.reader.Rejection`; line items of one order, returns and voids; event ids stable
across re-imports (see reader.py). Parsed cells are cached per column."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from collections.abc import Mapping as MappingABC
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from operator import attrgetter, itemgetter
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from .cells import (
    MAX_AMOUNT,
    MAX_QUANTITY,
    _clean,
    _code,
    _fmt,
    _nfkc,
    parse_datetime,
    parse_number,
)
from .reader import Rejection, Source, _Occurrences, _Reader


class SaleRow:
    """An accepted sales row: ``event`` is a JSON-ready ``kizuna.purchases.v1`` dict. Rows of
    a file carry the event as ``json`` (orjson's bytes of it, made column by column) with its
    ``customer`` and ``occurred_at``; ``event`` is decoded from it when asked for."""

    __slots__ = ("line", "_event", "json", "customer", "occurred_at")
    ok = True

    def __init__(
        self,
        line: int,
        event: dict[str, Any] | None = None,
        *,
        json: bytes | None = None,
        customer: str | None = None,
        occurred_at: str | None = None,
    ):
        if event is None and json is None:
            raise ValueError("a SaleRow needs its event or its JSON")
        self.line = line
        self._event = event
        self.json = json
        self.customer = event["customer_id"] if customer is None and event else customer
        self.occurred_at = event["occurred_at"] if occurred_at is None and event else occurred_at

    @property
    def event(self) -> dict[str, Any]:
        if self._event is None:
            self._event = orjson.loads(self.json)
        return self._event

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SaleRow):
            return NotImplemented
        return (self.line, self.event) == (other.line, other.event)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SaleRow(line={self.line}, event={self.event!r})"


# Rows per block: the columns of this many rows are parsed together (see SalesReader._rows).
BLOCK_ROWS = 16_384

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

# the cells that make a row's kind, amount, tax and line item together
_MONEY = ("kind", "unit_price", "quantity", "tax", "amount", "net_amount", "sku", "name")


class _Money(NamedTuple):
    """What a row's money cells (_MONEY) give: problems, or kind, amount, tax, line item."""

    problems: tuple
    void: bool  # a void (取消) row: it needs an order number
    kind: str = ""
    amount: str | None = None
    tax: str | None = None
    item: dict[str, Any] | None = None
    line_total: Decimal | None = None
    lines: str = ""  # the line item as the event id's digest takes it


_TEXT = pa.string()


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _join(*parts: Any, separator: str = "") -> pa.Array:
    """Element-wise concatenation of string arrays and plain strings."""
    return pc.binary_join_element_wise(*parts, separator)


# the characters str.strip() removes from ASCII text
_ASCII_SPACE = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"


def _codes(
    column: pa.Array, limit: int, rule: Callable[[str], tuple], **parts: Callable[[tuple], Any]
) -> dict[str, pa.Array]:
    """Parts of a column of codes (customer codes, order numbers), each an array with a value
    per row: ``parts[name](rule(cell))``. A plain code — ASCII, 1 to ``limit`` characters once
    stripped, nothing JSON escapes — gives itself (``json``: itself in quotes, ``bad``: false);
    only the others go through ``rule``, once per distinct text."""
    stripped = pc.utf8_trim(column, _ASCII_SPACE)
    plain = pc.and_(
        pc.string_is_ascii(column),
        pc.match_substring_regex(stripped, f"^[\\x20\\x21\\x23-\\x5b\\x5d-\\x7e]{{1,{limit}}}$"),
    )
    given = {
        "value": stripped,
        "who": stripped,
        "who_json": stripped,
        "json": _join('"', stripped, '"'),
        "bad": pa.array([False] * len(column), pa.bool_()),
    }
    out = {name: given[name] for name in parts}
    other = pc.invert(plain)
    if not pc.any(other).as_py():
        return out
    results: dict[str, tuple] = {}
    values = [
        results.get(raw) or results.setdefault(raw, rule(raw))
        for raw in pc.filter(column, other).to_pylist()
    ]
    for name, part in parts.items():
        kind = pa.bool_() if name == "bad" else _TEXT
        out[name] = pc.replace_with_mask(out[name], other, pa.array(map(part, values), kind))
    return out


def _group(
    columns: list[pa.Array], index: MappingABC[str, int], fields: tuple[str, ...], rule: Callable
) -> tuple[list[int], list[Any]]:
    """(for each row the number of its group, ``rule(*cells)`` of each group): rows are grouped
    by the text of their cells in ``fields`` (the file's columns among them; ``rule()`` for all
    rows when it has none), numbered in order of first appearance."""
    present = [columns[index[f]] for f in fields if f in index]
    cells_of = [f in index for f in fields]
    n = len(columns[0]) if columns else 0
    if not present:
        return pa.array([0] * n, pa.int64()), [rule()]
    key = None
    for column in present:
        codes = pc.dictionary_encode(column)
        indices = pc.cast(codes.indices, pa.int64())
        if key is None:
            key = indices
        else:  # two columns' codes as one number, renumbered so it stays small
            key = pc.cast(
                pc.dictionary_encode(
                    pc.add(pc.multiply(key, len(codes.dictionary)), indices)
                ).indices,
                pa.int64(),
            )
    assert key is not None
    firsts = (
        pa.table({"k": key, "i": pa.array(range(n), pa.int64())})
        .group_by("k", use_threads=False)
        .aggregate([("i", "min")])
        .sort_by("k")
        .column("i_min")
    )
    texts = [pc.take(column, firsts).to_pylist() for column in present]
    values = []
    for cells in zip(*texts, strict=True):
        given = iter(cells)
        values.append(rule(*(next(given) if has else None for has in cells_of)))
    return key, values


class SalesReader(_Reader):
    """Iterate for :class:`SaleRow` or :class:`Rejection`. Attributes for a progress display:
    ``bytes_read``, ``total_bytes`` (``None`` for a pipe), ``rows``, ``accepted``,
    ``rejected``, ``line``; ``warnings`` once read."""

    kind = "sales"
    block_rows = BLOCK_ROWS

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

    # A block's rows are read column by column (Arrow): what a cell gives depends on its text
    # alone, and a file repeats its dates, amounts, branches and products over and over, so
    # each column — or group of columns that make one value together (date and time; the
    # money cells of a row) — is dictionary-encoded and each distinct text, or combination,
    # goes through the rules once; rows then only put the parts together.

    def _rows(self, lines: list[int], columns: list[pa.Array]) -> list[SaleRow | Rejection]:
        idx = self._idx
        g = {
            name: _group(columns, idx, fields, rule)
            for name, fields, rule in (
                ("date", ("date", "time"), self._date_cells),
                ("branch", ("branch",), self._branch_cells),
                ("money", _MONEY, self._money_cells),
                ("currency", ("currency",), self._currency_cells),
                ("channel", ("channel",), self._channel_cells),
            )
        }

        def per_row(name: str, part: Callable[[Any], Any], kind: pa.DataType = _TEXT):
            codes, values = g[name]
            return pc.take(pa.array([part(v) for v in values], kind), codes)

        # customer codes and order numbers are mostly distinct: plain ones (ASCII, nothing to
        # clean or escape) are taken as they are, column-wise; the others go through the rule
        customers = _codes(
            columns[idx["customer_id"]],
            180,
            self._customer_cells,
            value=itemgetter(0),
            who=itemgetter(1),
            bad=lambda v: bool(v[2]),
            json=lambda v: _json(v[0]),
            who_json=lambda v: _json(v[1])[1:-1],
        )
        i = idx.get("order_id")
        orders = _codes(
            pa.nulls(len(lines), _TEXT).fill_null("") if i is None else columns[i],
            200,
            self._order_cells,
            value=itemgetter(0),
            bad=lambda v: bool(v[1]),
            json=lambda v: _json(v[0]),
        )
        order = orders["value"]
        bad = pc.and_(per_row("money", attrgetter("void"), pa.bool_()), pc.equal(order, ""))
        bad = pc.or_(pc.or_(bad, customers["bad"]), orders["bad"])
        for name, problems in (
            ("date", itemgetter(0)),
            ("branch", itemgetter(1)),
            ("money", attrgetter("problems")),
            ("currency", itemgetter(1)),
        ):
            bad = pc.or_(bad, per_row(name, lambda v, p=problems: bool(p(v)), pa.bool_()))
        rejected = pc.indices_nonzero(bad).to_pylist()
        out: list[SaleRow | Rejection] = [None] * len(lines)  # type: ignore[list-item]
        for r in rejected:
            out[r] = self._rejection(columns, g, r, lines[r])
        keep = None
        if rejected:
            keep = pc.invert(bad)
            if not pc.any(keep).as_py():
                return out

        def kept(column: pa.Array) -> pa.Array:
            return column if keep is None else pc.filter(column, keep)

        def field(name: str, part: Callable[[Any], Any]) -> pa.Array:
            return kept(per_row(name, part))

        orders = {k: kept(v) for k, v in orders.items()}
        customers = {k: kept(v) for k, v in customers.items()}
        orders_json = orders["json"]
        orders, customer, who = orders["value"], customers["value"], customers["who"]
        occurred_at, day = field("date", itemgetter(1)), field("date", itemgetter(2))
        branch, currency = field("branch", itemgetter(0)), field("currency", itemgetter(0))
        channel = field("channel", lambda v: v or "")
        kind, amount = field("money", attrgetter("kind")), field("money", lambda m: m.amount or "")
        tax, item = field("money", lambda m: m.tax or ""), field("money", attrgetter("lines"))
        no_order = pc.equal(orders, "")
        order_id = pc.if_else(no_order, _join("d:", who, ":", day), orders)
        add = self._seen.add
        sha256 = hashlib.sha256
        ids = []
        for text in _join(
            self.namespace,
            branch,
            customer,
            occurred_at,
            kind,
            amount,
            tax,
            order_id,
            currency,
            channel,
            item,
            separator="\x1f",
        ).to_pylist():
            digest = sha256(text.encode()).digest()
            nth = add((int.from_bytes(digest[:8], "big") >> 1) or 1)
            ids.append(f"imp-{digest[:10].hex()}-{nth}")
        # the event as orjson writes it, each value's JSON made once per distinct value
        as_json = _json
        events = _join(
            '{"schema_version":1,"event_id":"',
            pa.array(ids, pa.string()),
            '","tenant_id":' + as_json(self.tenant) + ',"branch_id":',
            field("branch", lambda v: as_json(v[0])),
            ',"customer_id":',
            customers["json"],
            ',"occurred_at":',
            field("date", lambda v: as_json(v[1])),
            ',"amount":',
            field("money", lambda m: as_json(m.amount)),
            ',"kind":',
            field("money", lambda m: as_json(m.kind)),
            ',"order_id":',
            pc.if_else(
                no_order,
                _join('"d:', customers["who_json"], ":", day, '"'),
                orders_json,
            ),
            ',"tax":',
            field("money", lambda m: as_json(m.tax)),
            ',"currency":',
            field("currency", lambda v: as_json(v[0])),
            ',"channel":',
            field("channel", as_json),
            ',"lines":',
            field("money", lambda m: "[" + as_json(m.item) + "]" if m.item else "[]"),
            "}",
        )
        accepted = range(len(lines)) if keep is None else pc.indices_nonzero(keep).to_pylist()
        rows = zip(
            accepted,
            pc.cast(events, pa.binary()).to_pylist(),
            customer.to_pylist(),
            occurred_at.to_pylist(),
            strict=True,
        )
        for r, event, who_, at in rows:
            out[r] = SaleRow(lines[r], json=event, customer=who_, occurred_at=at)
        self._watch_orders(
            g, [r for r in accepted], orders.to_pylist(), customer.to_pylist(), lines
        )
        return out

    def _rejection(self, columns: list[pa.Array], g: dict, r: int, line: int) -> Rejection:
        """Row ``r`` of a block: the rejection with every problem, in column order."""
        value = {name: values[codes[r].as_py()] for name, (codes, values) in g.items()}
        idx = self._idx
        customer = self._customer_cells(columns[idx["customer_id"]][r].as_py())
        i = idx.get("order_id")
        order = self._order_cells(None if i is None else columns[i][r].as_py())
        money = value["money"]
        problems = [
            *customer[2],
            *value["date"][0],
            *value["branch"][1],
            *money.problems,
            *order[1],
        ]
        if money.void and not order[0]:
            problems.append(
                (
                    self._col.get("order_id"),
                    None,
                    "a void (取消) needs the order number of the sale it cancels",
                )
            )
        return self._problem(line, [*problems, *value["currency"][1]])

    def _watch_orders(self, g, accepted, orders, customers, lines) -> None:
        codes, moneys = g["money"]
        money_of = codes.to_pylist()
        for r, order, customer in zip(accepted, orders, customers, strict=True):
            if order:
                money = moneys[money_of[r]]
                self._watch_order(
                    order, customer, lines[r], money.amount, money.item, money.line_total
                )

    # -- the rules, one distinct cell (or combination of cells) at a time --------------------

    def _customer_cells(self, raw: str) -> tuple[str, str, tuple]:
        """(customer code, what the default order id names it by, problems)."""
        customer = raw.strip() if raw.isascii() else '="'
        if customer.startswith('="'):
            customer = _nfkc(_clean(raw))
        if not customer:
            return customer, customer, ((self._col["customer_id"], "", "missing customer code (顧客コード)"),)  # fmt: skip
        if len(customer) > 200:
            return customer, customer, ((self._col["customer_id"], customer, "customer code longer than 200"),)  # fmt: skip
        who = (
            customer if len(customer) <= 180 else hashlib.sha256(customer.encode()).hexdigest()[:32]
        )
        return customer, who, ()

    def _order_cells(self, raw: str | None = None) -> tuple[str, tuple]:
        if raw is None:
            return "", ()
        order = raw.strip() if raw.isascii() else '="'
        if order.startswith('="'):
            order = _code(_clean(raw))
        if len(order) > 200:
            return order, ((self._col["order_id"], order, "order number longer than 200"),)
        return order, ()

    def _date_cells(self, text: str, clock: str | None = None) -> tuple:
        """(problems, occurred_at, the tenant's calendar date) of a date (and time) text."""
        return self._date_cell(_clean(text), _clean(clock or ""))

    def _branch_cells(self, raw: str | None = None) -> tuple[str, tuple]:
        branch = "" if raw is None else _code(raw)
        if not branch:
            branch = self.branch or ""
        if not branch:
            return branch, ((self._col.get("branch"), "", "missing branch (店舗) and no --branch given"),)  # fmt: skip
        if len(branch) > 100:
            return branch, ((self._col["branch"], branch, "branch longer than 100"),)
        return branch, ()

    def _currency_cells(self, raw: str | None = None) -> tuple[str, tuple]:
        if raw is None:
            return "JPY", ()
        currency, problem = self._currency_cell("currency", raw)
        return currency, (problem,) if problem else ()

    def _channel_cells(self, raw: str | None = None) -> str | None:
        return (_text_cell("channel", raw)[:100] if raw is not None else "") or self.channel

    def _money_cells(self, *raw: str | None) -> _Money:
        """Kind, amount, tax and line item of a row from its money cells (_MONEY, ``None``
        for a column the file does not have): the amount column, else net amount + tax, else
        unit price × quantity (+ tax); a negative amount (or quantity) makes a return."""
        cells = dict(zip(_MONEY, raw, strict=True))
        col = self._col
        problems: list[tuple[str | None, str | None, str]] = []
        kind = "sale"
        if cells["kind"] is not None:
            kind, problem = self._kind_cell("kind", cells["kind"])
            if problem:
                problems.append(problem)
        number = self._number_cell
        price, qty, tax, given, net = (
            _NO_NUMBER if cells[name] is None else number(name, cells[name])
            for name in ("unit_price", "quantity", "tax", "amount", "net_amount")
        )
        problems += [entry[1] for entry in (price, qty, tax, given) if entry[1]]
        unit_price, quantity, amount = price[0], qty[0], given[0]
        computed = False
        if not given[4] and kind != "void":
            # no amount in the row: net amount + tax, else unit price × quantity (+ tax)
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
                idx = self._idx
                source = next(f for f in ("amount", "net_amount", "unit_price") if f in idx)
                reason = f"missing {_WHAT[source]}"
                if source != "amount":
                    reason += ": cannot compute the amount"
                elif {"net_amount", "unit_price"} & idx.keys():
                    reason += " (and nothing to compute it from)"
                problems.append((col[source], "", reason))
        void = kind == "void"
        if problems:
            return _Money(tuple(problems), void)
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
        negative = kind != "sale"
        tax_s = None if tax[0] is None else tax[3] if negative else tax[2]
        item = None
        line_total = None
        if self._has_lines:
            sku = "" if cells["sku"] is None else _text_cell("sku", cells["sku"])
            name = "" if cells["name"] is None else _name_cell("name", cells["name"])
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
        lines = (
            f"{item['sku']}\x1e{item['name']}\x1e{item['unit_price']}\x1e{item['quantity']}"
            if item
            else ""
        )
        return _Money((), void, kind, amount_s, tax_s, item, line_total, lines)

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
