"""Parsing one cell of a CSV file: amounts (``105,607``, ``△1,200``, ``¥3,000``), dates and times
(``2003/3/30``, ``令和5年4月1日``, Excel serials), mail consent; and the cleaning every cell gets
(NFKC, Excel's ``="0001"``). Pure; each failure is a reason a person can act on."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal

MAX_AMOUNT = Decimal(10) ** 12  # PurchaseEvent: 14 digits, 2 decimals
MAX_QUANTITY = Decimal(10) ** 9  # LineItem: 12 digits, 3 decimals


def _show(value: str | None, limit: int = 40) -> str:
    if value is None:
        return ""
    return repr(value if len(value) <= limit else value[: limit - 1] + "…")


_DASHES = "-−‐‑–—"  # hyphen-minus, minus sign, hyphens, dashes (full-width ones NFKC to "-")
_NEG_MARKS = "△▲"  # Japanese accounting: △1,200 is -1,200
_CURRENCY = ("¥", "\\", "$", "JPY", "円")  # a CP932 0x5C is shown as ¥ and decoded as "\"
_NUMBER_RE = re.compile(r"\d+(?:\.\d+)?|\d{1,3}(?:,\d{3})+(?:\.\d+)?|\.\d+")
_EXCEL_TEXT_RE = re.compile(r'^="(.*)"$', re.S)  # ="0001": Excel-safe exports of codes


def _nfkc(text: str) -> str:
    return text if text.isascii() else unicodedata.normalize("NFKC", text)


def parse_number(text: str, *, places: int = 2, what: str = "amount") -> Decimal:
    """A number as Japanese business software writes it: ``105607``, ``105,607``,
    ``¥105,607``, ``105,607円``, full-width ``１０５６０７``, negatives ``-1,200``, ``△1,200``,
    ``▲1,200``, ``(1,200)``, ``1,200-``. At most ``places`` decimals. Raises ``ValueError``
    with the reason."""
    s = text.strip()
    if s.isdigit() and s.isascii():
        return Decimal(s)
    s = _nfkc(s).strip()
    if not s:
        raise ValueError(f"empty {what}")
    body, negative = s, False
    if body.startswith("(") and body.endswith(")"):
        body, negative = body[1:-1].strip(), True
    changed = True
    while changed and body:  # signs and currency marks, in whatever order they come
        changed = False
        if body[0] in _NEG_MARKS or body[0] in _DASHES:
            if negative:
                raise ValueError(f"not a number: two minus signs in {s!r}")
            body, negative, changed = body[1:].strip(), True, True
        elif body[0] == "+":
            body, changed = body[1:].strip(), True
        for mark in _CURRENCY:
            if body.startswith(mark):
                body, changed = body[len(mark) :].strip(), True
            if body.endswith(mark):
                body, changed = body[: -len(mark)].strip(), True
    if body and body[-1] in _DASHES and not negative:  # 1,200- (trailing minus)
        body, negative = body[:-1].strip(), True
    if not _NUMBER_RE.fullmatch(body):
        if re.fullmatch(r"[\d.,]*\d[eE][+-]?\d+", body):
            raise ValueError(
                f"{what} in scientific notation ({s}): format the column as a number before exporting"
            )
        if re.fullmatch(r"[\d,]+(?:\.\d+)?", body):
            raise ValueError(f"not a number: misplaced thousands separator in {s!r}")
        raise ValueError(
            f"not a number: expected digits such as 105,607, ¥105,607, -1,200 or △1,200, got {s!r}"
        )
    value = Decimal(body.replace(",", ""))
    if -value.as_tuple().exponent > places and value != value.quantize(Decimal(1).scaleb(-places)):
        raise ValueError(f"{what} has more than {places} decimal places: {s!r}")
    return -value if negative else value


def parse_amount(text: str) -> Decimal:
    """A money amount (see :func:`parse_number`); negative for returns."""
    return parse_number(text, places=2, what="amount")


_ERAS = {
    "明治": 1867, "大正": 1911, "昭和": 1925, "平成": 1988, "令和": 2018,
    "m": 1867, "t": 1911, "s": 1925, "h": 1988, "r": 2018,
}  # fmt: skip


_TIME = (
    r"(?:[\st]+(?P<H>\d{1,2})[:時](?P<M>\d{1,2})(?:[:分](?P<S>\d{1,2})(?:\.(?P<F>\d{1,6})\d*)?秒?)?分?"
    r"\s*(?P<Z>z|[+-]\d{2}:?\d{2})?)?"
)


_WEEKDAY = r"(?:\s*\(\s*[^)]{1,3}\s*\))?"  # 2003/3/30(日)


_DATE_RES = (
    re.compile(
        r"(?P<y>\d{4})\s*[/.\-年]\s*(?P<m>\d{1,2})\s*[/.\-月]\s*(?P<d>\d{1,2})\s*日?"
        + _WEEKDAY
        + _TIME
    ),
    re.compile(
        r"(?P<era>明治|大正|昭和|平成|令和|[mtshr])\s*(?P<ey>\d{1,2}|元)\s*[/.\-年]\s*(?P<m>\d{1,2})"
        r"\s*[/.\-月]\s*(?P<d>\d{1,2})\s*日?" + _WEEKDAY + _TIME
    ),
    re.compile(r"(?P<y>\d{4})(?P<m>\d{2})(?P<d>\d{2})(?:(?P<H>\d{2})(?P<M>\d{2})(?P<S>\d{2})?)?"),
)


def parse_datetime(text: str) -> datetime:
    """A date, optionally with a time: ``2003/3/30``, ``2003-03-30``, ``2003.3.30``,
    ``2003年3月30日``, ``20030330``, ``2003/3/30(日)``, ``平成15年3月30日``, ``H15.3.30``, and any of
    them followed by ``14:03`` or ``14:03:05``; ISO 8601 with ``T`` and an offset. Naive unless
    the text has an offset; midnight when there is no time. Raises ``ValueError`` with the
    reason."""
    s = _nfkc(text).strip()
    if not s:
        raise ValueError("empty date")
    low = s.lower()
    for pattern in _DATE_RES:
        m = pattern.fullmatch(low)
        if m:
            break
    else:
        raise ValueError(_date_failure(s))
    g = m.groupdict()
    if g.get("era"):
        n = 1 if g["ey"] == "元" else int(g["ey"])
        year = _ERAS[g["era"]] + n
    else:
        year = int(g["y"])
    if not 1900 <= year <= 2100:
        raise ValueError(f"year {year} is out of range in {s!r}")
    try:
        day = date(year, int(g["m"]), int(g["d"]))
    except ValueError:
        raise ValueError(f"no such date: {s!r}") from None
    tz = None
    if g.get("Z"):
        z = g["Z"].replace(":", "")
        if z == "z":
            tz = UTC
        else:
            sign = -1 if z[0] == "-" else 1
            tz = timezone(sign * timedelta(hours=int(z[1:3]), minutes=int(z[3:5])))
    if g.get("H") is None:
        return datetime(day.year, day.month, day.day, tzinfo=tz)
    try:
        at = time(
            int(g["H"]), int(g["M"]), int(g["S"] or 0), int((g.get("F") or "0").ljust(6, "0"))
        )
    except ValueError:
        raise ValueError(f"no such time: {s!r}") from None
    return datetime.combine(day, at, tzinfo=tz)


def parse_date(text: str) -> date:
    """The calendar date of :func:`parse_datetime` (a time, if any, is checked and dropped)."""
    return parse_datetime(text).date()


def _date_failure(s: str) -> str:
    if re.fullmatch(r"\d{5}(?:\.\d+)?", s) and 10000 <= float(s) < 80000:
        return (
            f"{s!r} looks like an Excel serial date: format the column as a date before exporting"
        )
    if re.fullmatch(r"\d{1,2}[/.\-]\d{1,2}[/.\-]\d{4}.*", s):
        return f"{s!r}: the year must come first (YYYY/M/D); day/month order is ambiguous"
    if re.fullmatch(r"\d{2}[/.\-]\d{1,2}[/.\-]\d{1,2}.*", s):
        return f"{s!r}: two-digit year; write the year in full (YYYY/M/D)"
    if re.fullmatch(r"\d+", s):
        return f"{s!r} is not a date: 8 digits (YYYYMMDD) expected"
    return f"not a date: {s!r}; expected YYYY/M/D, YYYY-MM-DD, YYYY年M月D日 or YYYYMMDD"


_CONSENT = {
    True: ("可", "許可", "同意", "希望", "希望する", "する", "受け取る", "配信", "配信する", "要",
           "有", "あり", "はい", "○", "〇", "◯", "●", "◎", "y", "yes", "true", "t", "1", "ok",
           "on", "opt-in", "optin", "subscribed"),
    False: ("不可", "拒否", "不同意", "希望しない", "しない", "受け取らない", "配信しない",
            "停止", "配信停止", "不要", "否", "無", "なし", "いいえ", "×", "✕", "x", "n",
            "no", "false", "f", "0", "ng", "off", "opt-out", "optout", "unsubscribed"),
}  # fmt: skip


_CONSENT_MAP = {v: k for k, vs in _CONSENT.items() for v in vs}


def parse_consent(text: str) -> bool | None:
    """Mail consent: 可/不可, 希望/不要, yes/no, 1/0, ○/× and the like; ``None`` when empty."""
    s = _nfkc(text).strip().lower()
    if not s:
        return None
    if s in _CONSENT_MAP:
        return _CONSENT_MAP[s]
    raise ValueError(f"not a yes/no value: {text.strip()!r}; expected 可/不可, yes/no, 1/0 or ○/×")


def _clean(cell: str) -> str:
    s = cell.strip()
    if s.startswith('="'):
        m = _EXCEL_TEXT_RE.match(s)
        if m:
            s = m.group(1).strip()
    return s


def _code(cell: str) -> str:
    return _nfkc(_clean(cell))


def _fmt(d: Decimal) -> str:
    return format(d.normalize(), "f") if d else "0"
