"""Which column is which field: Japanese and English headers mapped to the fields of a sales or
customer file (synonyms, normalisation, ``COLUMN=field`` overrides); :class:`MappingError`
names a missing field and the closest header."""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Iterable
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    label: str  # how the message names it (Japanese first)
    synonyms: tuple[str, ...]  # in order of preference when several columns match


def _spec(name: str, label: str, synonyms: str) -> FieldSpec:
    return FieldSpec(name, label, tuple(s.strip() for s in synonyms.split("|") if s.strip()))


_CUSTOMER_ID = _spec(
    "customer_id",
    "顧客コード",
    "顧客コード|顧客番号|顧客ID|顧客No|会員番号|会員コード|会員ID|お客様番号|お客様コード|"
    "お客様ID|得意先コード|取引先コード|customer_id|customer id|customer code|customer no|"
    "customer number|member id|member no|client id|client code|customer|client|member",
)


_BRANCH = _spec(
    "branch",
    "店舗コード",
    "店舗コード|店舗|店舗ID|店舗番号|店コード|店番|支店コード|支店|営業所コード|営業所|"
    "拠点コード|拠点|店舗名|branch|branch_id|branch id|branch code|store|store id|store code|"
    "shop|shop id|shop code|location",
)


SALES_FIELDS: tuple[FieldSpec, ...] = (
    _CUSTOMER_ID,
    _spec(
        "date",
        "購入日",
        "購入日|受注日|注文日|売上日|販売日|取引日|購入日付|受注日付|注文日付|売上日付|販売日付|"
        "取引日付|購入年月日|受注年月日|注文年月日|売上年月日|伝票日付|計上日|日付|年月日|購入日時|"
        "受注日時|注文日時|売上日時|販売日時|取引日時|日時|date|order date|purchase date|"
        "sale date|sales date|transaction date|invoice date|occurred_at|datetime|timestamp",
    ),
    _spec("time", "時刻", "時刻|購入時刻|売上時刻|受注時刻|時間|time"),
    _spec(
        "amount",
        "購入金額",
        "購入金額|売上金額|販売金額|税込金額|金額税込|明細金額|金額|購入額|売上額|売上|"
        "合計金額|受注金額|注文金額|請求金額|税込合計|合計|総額|amount|line amount|sales amount|"
        "sale amount|amount incl tax|total amount|total|gross",
    ),
    _spec(
        "net_amount",
        "税抜金額",
        "税抜金額|金額税抜|本体金額|税抜合計|税抜|小計|net amount|amount excl tax|subtotal|net",
    ),
    _spec(
        "order_id",
        "受注番号",
        "受注番号|注文番号|伝票番号|受注ID|注文ID|伝票ID|オーダー番号|オーダーID|受付番号|"
        "売上番号|取引番号|レシート番号|order_id|order id|order no|order number|order|"
        "invoice no|invoice number|receipt no|receipt number|transaction id",
    ),
    _BRANCH,
    _spec(
        "sku",
        "商品コード",
        "商品コード|商品番号|品番|商品ID|品目コード|JANコード|JAN|型番|sku|product code|"
        "product id|item code|item id|item no|article",
    ),
    _spec(
        "name",
        "商品名",
        "商品名|品名|商品名称|品目名|品目|商品|product name|product|item name|item|description",
    ),
    _spec(
        "unit_price",
        "単価",
        "単価|販売単価|売価|税込単価|価格|販売価格|unit price|unit_price|price",
    ),
    _spec(
        "quantity",
        "数量",
        "数量|個数|数|点数|販売数|受注数|注文数|購入数|qty|quantity|units",
    ),
    _spec("tax", "消費税", "消費税|消費税額|税額|内消費税|税|tax|tax amount|consumption tax|vat"),
    _spec(
        "kind",
        "区分",
        "売上区分|取引区分|伝票区分|明細区分|処理区分|区分|種別|kind|type|transaction type",
    ),
    _spec(
        "channel",
        "販売チャネル",
        "販売チャネル|チャネル|受注経路|販売経路|経路|channel|sales channel",
    ),
    _spec("currency", "通貨", "通貨|通貨コード|currency"),
)


CUSTOMER_FIELDS: tuple[FieldSpec, ...] = (
    _CUSTOMER_ID,
    _spec(
        "name",
        "氏名",
        "氏名|名前|顧客名|お名前|氏名漢字|姓名|会員名|お客様名|得意先名|宛名|name|full name|"
        "customer name",
    ),
    _spec(
        "kana",
        "フリガナ",
        "フリガナ|ふりがな|カナ|氏名カナ|氏名フリガナ|カナ氏名|フリガナ氏名|ヨミ|よみ|読み|"
        "読みがな|顧客名カナ|顧客カナ|kana|furigana|name kana|reading",
    ),
    _spec("family_name", "姓", "姓|苗字|名字|last name|family name|surname"),
    _spec("given_name", "名", "名|first name|given name"),
    _spec("family_kana", "セイ", "セイ|姓カナ|姓フリガナ|せい"),
    _spec("given_kana", "メイ", "メイ|名カナ|名フリガナ|めい"),
    _spec(
        "company",
        "会社名",
        "会社名|会社|法人名|企業名|社名|勤務先|勤務先名|団体名|company|company name|organization|"
        "organisation",
    ),
    _spec(
        "postal_code", "郵便番号", "郵便番号|〒|郵便|zip|zip code|postal code|postcode|post code"
    ),
    _spec("prefecture", "都道府県", "都道府県|県|prefecture|state"),
    _spec("city", "市区町村", "市区町村|市区郡町村|市町村|市区郡|city"),
    _spec(
        "address1",
        "住所1",
        "住所1|住所|住所上段|address1|address|address line 1|street",
    ),
    _spec("address2", "住所2", "住所2|番地|住所下段|address2|address line 2"),
    _spec(
        "address3",
        "住所3",
        "住所3|建物名|建物|アパートマンション名|マンション名|address3|address line 3|building",
    ),
    _spec(
        "phone",
        "電話番号",
        "電話番号|電話|TEL|TEL番号|電話番号1|携帯電話|携帯番号|携帯|phone|phone number|telephone|"
        "tel|mobile",
    ),
    _spec("fax", "FAX", "FAX|FAX番号|ファックス|ファクス|ファックス番号|fax number"),
    _spec(
        "email",
        "メールアドレス",
        "メールアドレス|メール|Eメール|E-mail|Eメールアドレス|PCメール|携帯メール|email|"
        "email address|mail|mail address",
    ),
    _spec(
        "mail_consent",
        "メール配信",
        "メール配信|メール配信可否|メール可否|メルマガ|メルマガ配信|メールマガジン|DM可否|DM送付|"
        "DM送付可否|DM希望|DM|案内可否|配信可否|配信希望|mail consent|email consent|"
        "marketing consent|consent|opt in|newsletter",
    ),
    _BRANCH,
)


_FIELD_ALIASES = {
    "customer": "customer_id",
    "occurred_at": "date",
    "purchase_date": "date",
    "order": "order_id",
    "order_no": "order_id",
    "branch_id": "branch",
    "store": "branch",
    "product_code": "sku",
    "product_name": "name",
    "product": "name",
    "price": "unit_price",
    "qty": "quantity",
    "total": "amount",
}


_IGNORE = {"", "-", "ignore", "skip", "none"}
_BRACKETS = str.maketrans("", "", "()[]{}<>「」『』【】〔〕〈〉《》")
_DROP = re.compile(r"[\s_\-.・:*※'\"/]+")
_BRACKETED = re.compile(r"[(\[{<「『【〔〈《][^)\]}>」』】〕〉》]*[)\]}>」』】〕〉》]")


def normalize_header(text: str) -> str:
    """Header text as compared: NFKC (full/half width), lower case, no spaces, ``_ - . ・ *``,
    brackets dropped (contents kept), ``#``/trailing ``no`` read as 番号, trailing ``cd`` as
    コード (``得意先CD`` = ``得意先コード``)."""
    s = unicodedata.normalize("NFKC", text).lower().replace("\ufeff", "")
    s = _DROP.sub("", s.translate(_BRACKETS))
    s = s.replace("#", "番号")
    if s.endswith("no") and len(s) > 2:
        s = s[:-2] + "番号"
    if s.endswith("cd") and len(s) > 2:
        s = s[:-2] + "コード"
    return s


def _header_keys(text: str) -> list[str]:
    """The normalised forms tried for one header: as is, then without bracketed parts
    (``金額(税込)`` → ``金額税込`` → ``金額``)."""
    keys = [normalize_header(text)]
    stripped = _BRACKETED.sub("", unicodedata.normalize("NFKC", text))
    if stripped.strip() and stripped != text:
        key = normalize_header(stripped)
        if key not in keys:
            keys.append(key)
    return keys


def _index(specs: tuple[FieldSpec, ...]) -> dict[str, tuple[str, int]]:
    index: dict[str, tuple[str, int]] = {}
    for spec in specs:
        for rank, synonym in enumerate(spec.synonyms):
            index.setdefault(normalize_header(synonym), (spec.name, rank))
    return index


_SPECS = {"sales": SALES_FIELDS, "customers": CUSTOMER_FIELDS}
_INDEX = {kind: _index(specs) for kind, specs in _SPECS.items()}


class MappingError(ValueError):
    """The header cannot be mapped: a required field has no column, or ``--map`` names an
    unknown column or field. ``field`` is the field concerned, ``suggestion`` the closest
    header (or field name), ``columns`` the file's headers."""

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        suggestion: str | None = None,
        columns: tuple[str, ...] = (),
    ):
        super().__init__(message)
        self.field = field
        self.suggestion = suggestion
        self.columns = columns


@dataclass
class Mapping:
    """Which column feeds which field. ``fields``: field → 0-based column index."""

    kind: str
    headers: list[str]
    fields: dict[str, int]
    ignored: dict[int, str] = field(default_factory=dict)  # column index → why
    notes: list[str] = field(default_factory=list)

    def field_of(self, index: int) -> str | None:
        for name, i in self.fields.items():
            if i == index:
                return name
        return None

    def describe(self) -> list[dict[str, Any]]:
        """One entry per column: ``{"column": 1, "header": ..., "field": ... | None, "note": ...}``."""
        return [
            {
                "column": i + 1,
                "header": h,
                "field": self.field_of(i),
                "note": self.ignored.get(i, ""),
            }
            for i, h in enumerate(self.headers)
        ]

    def column(self, name: str) -> str:
        """The header of the column feeding ``name`` (for messages)."""
        i = self.fields.get(name)
        return self.headers[i] if i is not None else name


def _parse_overrides(
    overrides: MappingABC[str, str] | Iterable[str] | None,
) -> list[tuple[str, str]]:
    if not overrides:
        return []
    if isinstance(overrides, MappingABC):
        return [(str(k), str(v)) for k, v in overrides.items()]
    pairs = []
    for item in overrides:
        if "=" not in item:
            raise MappingError(f"--map {item!r}: expected COLUMN=field")
        column, name = item.rsplit("=", 1)
        pairs.append((column.strip(), name.strip()))
    return pairs


def _resolve_field(kind: str, name: str, headers: tuple[str, ...]) -> str | None:
    specs = _SPECS[kind]
    names = [s.name for s in specs]
    key = name.strip().lower()
    if key in _IGNORE:
        return None
    if key in names:
        return key
    if _FIELD_ALIASES.get(key) in names:
        return _FIELD_ALIASES[key]
    for k in _header_keys(name):
        if k in _INDEX[kind]:
            return _INDEX[kind][k][0]
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise MappingError(
        f"--map: unknown field {name!r}.{hint} Fields: {', '.join(names)} (or '-' to ignore a column).",
        field=name,
        suggestion=close[0] if close else None,
        columns=headers,
    )


def _find_column(column: str, headers: list[str]) -> int | None:
    for i, h in enumerate(headers):
        if h == column:
            return i
    key = normalize_header(column)
    for i, h in enumerate(headers):
        if normalize_header(h) == key:
            return i
    if column.isdigit() and 1 <= int(column) <= len(headers):
        return int(column) - 1
    return None


def _closest(spec: FieldSpec, headers: list[str], taken: set[int]) -> tuple[int, float] | None:
    """The free column whose header is nearest to one of the field's names."""
    best: tuple[int, float] | None = None
    synonyms = [normalize_header(s) for s in spec.synonyms]
    for i, h in enumerate(headers):
        if i in taken or not h.strip():
            continue
        key = normalize_header(h)
        score = max(difflib.SequenceMatcher(None, key, s).ratio() for s in synonyms)
        if any(len(s) >= 2 and (s in key or key in s) for s in synonyms if key):
            score = max(score, 0.75)
        if best is None or score > best[1]:
            best = (i, score)
    return best if best and best[1] >= 0.4 else None


def _missing(spec: FieldSpec, headers: list[str], taken: set[int], what: str = "") -> MappingError:
    near = _closest(spec, headers, taken)
    known = ", ".join(spec.synonyms[:4])
    message = (
        f"no column for {spec.label} ({spec.name}){what}: none of the headers is a known name "
        f"for it ({known}, …)."
    )
    suggestion = None
    if near:
        suggestion = headers[near[0]]
        message += (
            f" Closest header: {suggestion!r} (column {near[0] + 1}); if that is it, "
            f"use --map '{suggestion}={spec.name}'."
        )
    else:
        message += (
            f" Headers are: {', '.join(repr(h) for h in headers)}. "
            f"Name the column with --map 'COLUMN={spec.name}'."
        )
    return MappingError(message, field=spec.name, suggestion=suggestion, columns=tuple(headers))


def map_headers(
    headers: list[str],
    kind: Literal["sales", "customers"] = "sales",
    overrides: MappingABC[str, str] | Iterable[str] | None = None,
    *,
    branch_given: bool = False,
) -> Mapping:
    """Map a header row to fields. ``overrides`` (``{"COLUMN": "field"}`` or ``["COLUMN=field"]``;
    COLUMN is a header or a 1-based column number; field a field name, one of its Japanese or
    English names, or ``-`` to ignore the column) win over the tables. When several columns
    match a field the most specific name wins (``売上金額`` over ``合計金額``), then the
    leftmost. Raises :class:`MappingError` when a required field has no column."""
    specs = {s.name: s for s in _SPECS[kind]}
    index = _INDEX[kind]
    headers = [h.strip().replace("\ufeff", "") for h in headers]
    fields: dict[str, int] = {}
    ignored: dict[int, str] = {}
    fixed: set[int] = set()
    for column, name in _parse_overrides(overrides):
        i = _find_column(column, headers)
        if i is None:
            near = difflib.get_close_matches(column, headers, n=1, cutoff=0.3)
            raise MappingError(
                f"--map: no column {column!r} in the header"
                + (f"; did you mean {near[0]!r}?" if near else "")
                + f" Headers are: {', '.join(repr(h) for h in headers)}.",
                field=name,
                suggestion=near[0] if near else None,
                columns=tuple(headers),
            )
        target = _resolve_field(kind, name, tuple(headers))
        fixed.add(i)
        if target is None:
            ignored[i] = "ignored (--map)"
            continue
        if target in fields:
            raise MappingError(
                f"--map: two columns mapped to {target}: {headers[fields[target]]!r} and {column!r}",
                field=target,
                columns=tuple(headers),
            )
        fields[target] = i
    candidates: dict[str, list[tuple[int, int]]] = {}
    for i, h in enumerate(headers):
        if i in fixed:
            continue
        for key in _header_keys(h):
            if key in index:
                name, rank = index[key]
                candidates.setdefault(name, []).append((rank, i))
                break
        else:
            ignored[i] = "no field of that name" if h else "no header"
    notes: list[str] = []
    for name, found in candidates.items():
        found.sort()
        if name in fields:
            for _, i in found:
                ignored[i] = f"{name} comes from --map"
            continue
        fields[name] = found[0][1]
        for _, i in found[1:]:
            ignored[i] = (
                f"also looks like {name}; using column {found[0][1] + 1} ({headers[found[0][1]]})"
            )
    if kind == "customers":
        names = candidates.get("name", [])
        if "kana" not in fields and len(names) >= 2 and "name" in fields:
            second = sorted(i for _, i in names if i != fields["name"])[0]
            fields["kana"] = second
            ignored.pop(second, None)
            notes.append(
                f"column {second + 1} ({headers[second]}), a second name column, read as kana"
            )
    taken = set(fields.values())
    if "customer_id" not in fields:
        raise _missing(specs["customer_id"], headers, taken)
    if kind == "sales":
        if "date" not in fields:
            raise _missing(specs["date"], headers, taken)
        if not {"amount", "net_amount", "unit_price"} & fields.keys():
            raise _missing(
                specs["amount"], headers, taken, " and no 単価 (unit_price) to compute it from"
            )
        if "amount" not in fields:
            parts = [
                headers[fields["net_amount"]]
                if "net_amount" in fields
                else " × ".join(
                    headers[fields[f]] for f in ("unit_price", "quantity") if f in fields
                )
            ]
            if "tax" in fields:
                parts.append(headers[fields["tax"]])
            notes.append(f"no amount column: amount = {' + '.join(parts)}")
        if "order_id" not in fields:
            notes.append(
                "no order number column: a customer's rows on the same date are one purchase"
            )
    if "branch" not in fields and not branch_given and kind == "sales":
        raise MappingError(
            f"no branch column ({', '.join(_BRANCH.synonyms[:3])}, branch) and no branch given: "
            "pass --branch BRANCH_ID for a file of one branch.",
            field="branch",
            columns=tuple(headers),
        )
    for i in fields.values():
        ignored.pop(i, None)
    return Mapping(kind=kind, headers=headers, fields=fields, ignored=ignored, notes=notes)
