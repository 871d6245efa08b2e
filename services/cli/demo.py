"""Demo data: a believable Japanese tea and health-food chain (茶と健康食品の「絆屋」).

``generate`` is pure and seeded: the same arguments give the same events, byte for byte, in
chronological order (the classifier replays history in order). It works a month at a time, so
memory stays at one month of events plus a few numbers per customer.

The story the numbers tell:

- Five shops (渋谷, 梅田, 栄, 天神, 札幌) and an online shop. Every customer has a home branch and
  now and then buys at another one (a trip, or online).
- Customers arrive over the years (the point card started with the data, so sign-ups are
  strongest in the first months), more on weekends and in the gift seasons: お中元 in July and
  お歳暮 in December.
- Most never come back (about two thirds); some return a few times and stop; steady customers
  buy every two or three months; a core of regulars every one or two months (and a few tea
  lovers every two or three weeks); bursty "trendy" buyers spend a lot over a few months and
  stop. Everyone may quit (so lapsed segments fill up) and a few lapsed customers come back.
- Baskets are built from a small catalogue (tax included, about 10,000 yen on average, with a
  long tail of gift orders in the gift seasons). About 2% of sales are returned a few days
  later (``kind=return``, same ``order_id``) and about 0.5% are voided at the till on the same
  day (``kind=void``), usually followed by the corrected sale.

``load`` sends events to ingest's ``POST /v1/purchases``; ``write_ndjson`` writes them to a file.
Event ids are stable (``{tenant}-0000001`` …), so loading the same data twice is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import math
import random
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from itertools import accumulate
from pathlib import Path

import httpx

JST = timezone(timedelta(hours=9), "JST")

# (branch_id, slip-number prefix, 店名, weight as a home branch)
BRANCHES: tuple[tuple[str, str, str, float], ...] = (
    ("shibuya", "SBY", "渋谷店", 0.29),
    ("umeda", "UMD", "梅田店", 0.23),
    ("sakae", "SKE", "栄店", 0.17),
    ("tenjin", "TJN", "天神店", 0.15),
    ("sapporo", "SPR", "札幌店", 0.13),
    ("yokohama", "YKH", "横浜店", 0.14),
    ("kyoto", "KYT", "京都店", 0.11),
    ("sendai", "SND", "仙台店", 0.10),
    ("hiroshima", "HRS", "広島店", 0.10),
    ("kobe", "KOB", "神戸店", 0.09),
    ("kanazawa", "KNZ", "金沢店", 0.07),
    ("naha", "NAH", "那覇店", 0.06),
)
ONLINE = ("online", "WEB", "オンラインショップ")
ONLINE_HOME_SHARE = 0.12  # customers who buy online first and mostly

# (sku, 商品名, 税込単価, popularity, gift item)
CATALOGUE: tuple[tuple[str, str, int, float, bool], ...] = (
    ("T-101", "静岡深蒸し煎茶 100g", 1296, 9.0, False),
    ("T-102", "宇治玉露 80g", 2700, 4.0, False),
    ("T-103", "知覧茶 100g", 1620, 6.0, False),
    ("T-104", "ほうじ茶ティーバッグ 30包", 864, 7.0, False),
    ("T-105", "宇治抹茶 薄茶 40g", 2160, 4.0, False),
    ("T-106", "玄米茶 200g", 972, 5.0, False),
    ("T-107", "国産和紅茶 50g", 1512, 3.0, False),
    ("T-108", "ごぼう茶ティーバッグ 30包", 1620, 4.0, False),
    ("H-201", "黒酢にんにく 62粒（約1ヶ月分）", 3240, 8.0, False),
    ("H-202", "熟成黒酢 720ml", 3780, 5.0, False),
    ("H-203", "国産大麦若葉の青汁 30包", 4320, 8.0, False),
    ("H-204", "しじみエキス粒 60粒", 3024, 5.0, False),
    ("H-205", "発芽玄米 2kg", 2592, 3.0, False),
    ("H-206", "DHA・EPA 120粒", 5400, 4.0, False),
    ("H-207", "グルコサミン＆コンドロイチン 240粒", 4860, 4.0, False),
    ("H-208", "乳酸菌サプリ 60粒", 3980, 4.0, False),
    ("H-209", "ローヤルゼリー 90粒", 8640, 2.0, False),
    ("H-210", "国産プロポリス 120粒", 12960, 1.0, False),
    ("G-301", "煎茶ギフト 2本箱", 3240, 2.0, True),
    ("G-302", "玉露・煎茶詰合せ", 5400, 2.0, True),
    ("G-303", "健康茶ギフトセット", 4320, 1.5, True),
    ("G-304", "黒酢ドリンク詰合せ", 6480, 1.0, True),
    ("G-305", "特選玉露 桐箱入り", 10800, 0.5, True),
    ("A-401", "常滑焼 急須", 5500, 0.8, False),
    ("A-402", "有田焼 湯呑みペア", 3300, 0.8, False),
    ("A-403", "桜皮細工 茶筒", 7700, 0.4, False),
)
_GIFTS = [i for i, p in enumerate(CATALOGUE) if p[4]]
_REPEATABLE = [i for i, p in enumerate(CATALOGUE) if p[0][0] in "TH"]  # what regulars re-buy
_CUM_NORMAL = list(accumulate(p[3] for p in CATALOGUE))
_CUM_SEASON = list(accumulate(p[3] * (5 if p[4] else 1) for p in CATALOGUE))

# Arrivals and purchases by month (1..12): お中元 (July) and お歳暮 (December) stand out.
MONTH_WEIGHT = (0, 1.1, 0.8, 0.9, 0.9, 1.0, 1.15, 1.6, 1.0, 0.95, 0.9, 1.1, 1.8)
# Monday..Sunday, for the shops; online is flat through the week.
WEEKDAY_WEIGHT = (0.8, 0.8, 0.85, 0.85, 1.0, 1.4, 1.3)

# Customer kinds: share of new customers, and how they behave after the first purchase.
ONCE, FEW, STEADY, REGULAR, DEVOTED, TRENDY = range(6)
KIND_SHARE = (
    (ONCE, 0.65),  # never come back
    (FEW, 0.09),  # one to three more purchases, then gone
    (STEADY, 0.095),  # every one to three months, modest baskets
    (REGULAR, 0.09),  # every three to seven weeks
    (DEVOTED, 0.04),  # tea lovers, every two or three weeks
    (TRENDY, 0.025),  # a burst of big baskets over a few months, then gone
)
_CUM_KIND = list(accumulate(s for _, s in KIND_SHARE))
# The data starts when the point card did: customers the shops already had sign up at their
# next visit, so the first weeks bring in a base that is mostly repeat buyers.
EXISTING_SHARE = 0.18
_CUM_BASE_KIND = list(accumulate((0.12, 0.08, 0.30, 0.33, 0.15, 0.02)))
NEVER = 1 << 30


def _prior_date(end: date, years: int) -> date:
    try:
        return end.replace(year=end.year - years)
    except ValueError:  # 29 February
        return end.replace(year=end.year - years, day=28)


def _month_starts(start: date, end: date) -> Iterator[tuple[int, int]]:
    """(first ordinal, last ordinal) of each calendar month touched by [start, end]."""
    first = start
    while first <= end:
        nxt = date(first.year + first.month // 12, first.month % 12 + 1, 1)
        yield first.toordinal(), min(nxt - timedelta(days=1), end).toordinal()
        first = nxt


class _Chain:
    """The generator's state: per-customer numbers in flat lists, the calendar, the RNG."""

    def __init__(
        self, customers: int, branches: int, years: int, seed: int, tenant: str, end: date
    ):
        if customers < 0 or years < 1 or branches < 1:
            raise ValueError("customers must be ≥ 0, years ≥ 1 and branches ≥ 1")
        self.rng = random.Random(seed)
        self.tenant = tenant
        self.end = end
        self.start = _prior_date(end, years) + timedelta(days=1)
        self.start_ord, self.end_ord = self.start.toordinal(), end.toordinal()
        shops = [b[:3] for b in BRANCHES[:branches]]
        shops += [
            (f"store{n}", f"S{n:02d}", f"{n}号店") for n in range(len(shops) + 1, branches + 1)
        ]
        self.shops = shops
        self.branch = shops + [ONLINE]  # index len(shops) is online
        self.online = len(shops)
        home_w = [b[3] for b in BRANCHES[: len(shops)]] + [0.06] * (branches - len(BRANCHES))
        scale = (1 - ONLINE_HOME_SHARE) / sum(home_w)
        self.cum_home = list(accumulate([w * scale for w in home_w] + [ONLINE_HOME_SHARE]))

        # The calendar: per day of the window, its date parts and weights (shop and online).
        n_days = self.end_ord - self.start_ord + 1
        self.day_str, self.shop_w, self.web_w, self.gift_season = [], [], [], []
        for k in range(n_days + 1):
            d = date.fromordinal(self.start_ord + k)
            self.day_str.append(d.isoformat())
            m = MONTH_WEIGHT[d.month]
            self.shop_w.append(m * WEEKDAY_WEIGHT[d.weekday()])
            self.web_w.append(m)
            self.gift_season.append(
                (d.month == 6 and d.day >= 15)
                or (d.month == 7 and d.day <= 20)
                or (d.month == 11 and d.day >= 20)
                or (d.month == 12 and d.day <= 25)
            )
        self.max_shop_w = max(self.shop_w)
        self.max_web_w = max(self.web_w)

        self._customers(customers, n_days)

    # -- who the customers are ------------------------------------------------------------------
    def _customers(self, n: int, n_days: int) -> None:
        rng = self.rng
        # New customers: by day, season × weekday, a little more while the card was new.
        arrival_w = [
            (0.5 * self.shop_w[k] + 0.5 * self.web_w[k]) * (1.0 + 0.6 * math.exp(-k / 90.0))
            for k in range(n_days)
        ]
        cum = list(accumulate(arrival_w))
        n_base = round(n * EXISTING_SHARE)
        people = []
        for i in range(n):
            existing = i < n_base
            shares = _CUM_BASE_KIND if existing else _CUM_KIND
            kind = KIND_SHARE[_bisect(shares, rng.random() * shares[-1])][0]
            gap, left, hazard, spend = self._profile(kind)
            if existing:  # already a customer: shows up at their next visit
                span = min(n_days, 120.0 if kind in (ONCE, FEW) else gap * 1.3)
                day = int(rng.random() * span)
            else:
                day = _bisect(cum, rng.random() * cum[-1])
            home = _bisect(self.cum_home, rng.random() * self.cum_home[-1])
            fav = _REPEATABLE[rng.randrange(len(_REPEATABLE))]
            people.append((day, i, kind, gap, left, hazard, spend, home, fav))
        people.sort()  # customer ids in order of first purchase
        self.arrival = [self.start_ord + p[0] for p in people]
        self.kind = [p[2] for p in people]
        self.gap = [p[3] for p in people]
        self.left = [p[4] for p in people]
        self.hazard = [p[5] for p in people]
        self.spend = [p[6] for p in people]
        self.home = [p[7] for p in people]
        self.fav = [p[8] for p in people]
        self.comeback = [False] * n

    def _profile(self, kind: int) -> tuple[float, int, float, float]:
        """(mean days between purchases, purchases left, chance to quit after each, basket size)."""
        rng = self.rng
        if kind == ONCE:
            return 0.0, 0, 1.0, rng.lognormvariate(0.0, 0.45)
        if kind == FEW:
            return rng.uniform(25, 110), rng.randint(1, 3), 0.0, rng.uniform(0.7, 1.2)
        if kind == STEADY:
            return rng.uniform(40, 95), NEVER, 0.05, rng.uniform(0.5, 0.85)
        if kind == REGULAR:
            return rng.uniform(22, 50), NEVER, 0.015, rng.uniform(0.9, 1.4)
        if kind == DEVOTED:
            return rng.uniform(12, 24), NEVER, 0.008, rng.uniform(0.5, 0.8)
        return rng.uniform(14, 30), rng.randint(4, 8), 0.0, rng.uniform(1.9, 2.8)  # TRENDY

    # -- when they buy next ---------------------------------------------------------------------
    def _next_day(self, c: int, today: int) -> int | None:
        """The ordinal of customer ``c``'s next purchase after one on ``today``, or None."""
        rng = self.rng
        if self.left[c] <= 0 or rng.random() < self.hazard[c]:
            # They stop. A few come back after a long while (a comeback from lapsed).
            if self.comeback[c] or rng.random() >= (0.04 if self.kind[c] == ONCE else 0.15):
                return None
            self.comeback[c] = True
            self.left[c] = rng.randint(1, 3) if self.kind[c] in (ONCE, FEW, TRENDY) else NEVER
            if self.kind[c] == ONCE:
                self.gap[c] = rng.uniform(40, 120)
            return today + int(rng.uniform(150, 700))
        self.left[c] -= 1
        if rng.random() < 0.008:
            return today  # forgot something: a second order the same day
        online = self.home[c] == self.online
        weights, top = (self.web_w, self.max_web_w) if online else (self.shop_w, self.max_shop_w)
        mean = self.gap[c]
        for _ in range(4):  # thinning: busier seasons and weekends draw purchases to them
            day = today + max(1, round(rng.gammavariate(3.0, mean / 3.0)))
            k = day - self.start_ord
            if k >= len(weights) or rng.random() * top < weights[k]:
                break
        return day

    # -- what they buy --------------------------------------------------------------------------
    def _basket(self, c: int, k: int) -> list[tuple[int, int]]:
        """[(catalogue index, quantity)] for customer ``c`` on window day ``k``."""
        rng = self.rng
        spend = self.spend[c]
        season = self.gift_season[k]
        cum = _CUM_SEASON if season else _CUM_NORMAL
        n_lines = 1 + min(5, int(rng.expovariate(1.0) * 1.45 * spend))
        picked: dict[int, int] = {}
        fav_p = 0.75 if self.kind[c] in (REGULAR, DEVOTED, STEADY) else 0.35
        for i in range(n_lines):
            if i == 0 and rng.random() < fav_p:
                item = self.fav[c]
            else:
                item = _bisect(cum, rng.random() * cum[-1])
            r = rng.random()
            qty = 1 if r < 0.78 else 2 if r < 0.94 else 3
            if spend > 1.5 and rng.random() < 0.5:
                qty += 1
            picked[item] = picked.get(item, 0) + qty
        if season and rng.random() < 0.3:  # gift orders: the same box to several people
            gift = _GIFTS[rng.randrange(len(_GIFTS))]
            picked[gift] = picked.get(gift, 0) + 1 + int(rng.expovariate(1 / 2.5))
        return list(picked.items())

    def _time(self, online: bool) -> int:
        """Seconds after midnight: shops 10:00–20:00 (busiest at lunch and after work)."""
        rng = self.rng
        if online:
            hour = int(rng.triangular(0, 24, 21)) if rng.random() < 0.85 else rng.randrange(24)
        else:
            hour = 10 + _bisect(_SHOP_HOURS_CUM, rng.random() * _SHOP_HOURS_CUM[-1])
        return hour * 3600 + rng.randrange(3600)

    # -- the events -----------------------------------------------------------------------------
    def months(self) -> Iterator[list[tuple]]:
        """Per calendar month, its events as (ordinal, second, seq, dict) sorted by time."""
        rng = self.rng
        due = [(self.arrival[c], c) for c in range(len(self.arrival))]
        heapq.heapify(due)
        later: list[tuple] = []  # returns that fall in a later month
        seq = 0
        for _first, last in _month_starts(self.start, self.end):
            month: list[tuple] = []
            while due and due[0][0] <= last:
                day, c = heapq.heappop(due)
                k = day - self.start_ord
                b = self._branch_for(c)
                online = b == self.online
                sec = self._time(online)
                lines = self._basket(c, k)
                r = rng.random()
                if r < 0.005:  # to be voided: leave time before closing for the void and re-ring
                    sec = min(sec, (86400 if online else 20 * 3600) - 1800)
                sale = self._event(c, b, day, sec, "sale", None, lines)
                month.append((day, sec, seq, sale))
                seq += 1
                if r < 0.005:  # voided at the till (or an online order cancelled), same day
                    vsec = sec + rng.randint(60, 900)
                    void = self._event(c, b, day, vsec, "void", sale, None, amount=sale["amount"])
                    month.append((day, vsec, seq, void))
                    seq += 1
                    if rng.random() < 0.7:  # rung up again, correctly
                        rsec = vsec + rng.randint(30, 600)
                        again = self._event(c, b, day, rsec, "sale", None, lines)
                        month.append((day, rsec, seq, again))
                        seq += 1
                elif r < 0.025:  # returned a few days later at the same branch
                    rday = day + rng.randint(1, 14)
                    if rday <= self.end_ord:
                        if len(lines) > 1 and rng.random() < 0.6:
                            back = [lines[rng.randrange(len(lines))]]
                        else:
                            back = lines
                        ret = self._event(c, b, rday, self._time(online), "return", sale, back)
                        if rday <= last:
                            month.append((rday, _sec(ret), seq, ret))
                        else:
                            heapq.heappush(later, (rday, _sec(ret), seq, ret))
                        seq += 1
                nxt = self._next_day(c, day)
                if nxt is not None and nxt <= self.end_ord:
                    heapq.heappush(due, (nxt, c))
            while later and later[0][0] <= last:
                month.append(heapq.heappop(later))
            month.sort(key=lambda e: e[:3])
            yield month

    def _branch_for(self, c: int) -> int:
        home = self.home[c]
        r = self.rng.random()
        if home == self.online:
            return self.rng.randrange(len(self.shops)) if r < 0.05 else home
        if r < 0.06:
            return self.online
        if r < 0.12 and len(self.shops) > 1:
            other = self.rng.randrange(len(self.shops) - 1)
            return other + (other >= home)
        return home

    def _event(self, c, b, day, sec, kind, order: dict | None, lines, amount=None) -> dict:
        """An event dict; ``order`` is the sale a return or void refers to (its ``order_id``
        is filled in when events are numbered, in time order)."""
        if lines is not None:
            total = 0
            out = []
            for item, qty in lines:
                sku, name, price, _, _ = CATALOGUE[item]
                total += price * qty
                out.append({"sku": sku, "name": name, "unit_price": str(price), "quantity": qty})
            amount = str(total)
        else:
            out = []
        yen = int(amount)
        hh, rest = divmod(sec, 3600)
        mm, ss = divmod(rest, 60)
        return {
            "event_id": "",  # numbered in output order
            "tenant_id": self.tenant,
            "branch_id": self.branch[b][0],
            "customer_id": f"C{c + 1:06d}",
            "occurred_at": f"{self.day_str[day - self.start_ord]}T{hh:02d}:{mm:02d}:{ss:02d}+09:00",
            "amount": amount,
            "kind": kind,
            "order_id": order,  # a sale's slip number is given in output order
            "tax": str((yen * 10 + 55) // 110),  # 10/110 of the tax-included amount, rounded
            "currency": "JPY",
            "channel": "online" if b == self.online else "store",
            "lines": out,
        }


_SHOP_HOURS_CUM = list(accumulate((5, 8, 11, 10, 8, 8, 9, 11, 12, 8)))


def _sec(event: dict) -> int:
    t = event["occurred_at"][11:19]
    return int(t[:2]) * 3600 + int(t[3:5]) * 60 + int(t[6:8])


def _bisect(cum: list[float], x: float) -> int:
    lo, hi = 0, len(cum) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if cum[mid] <= x:
            lo = mid + 1
        else:
            hi = mid
    return lo


def generate(
    customers: int = 20000,
    branches: int = 5,
    years: int = 3,
    seed: int = 7,
    tenant: str = "demo",
    end: date | None = None,
) -> Iterator[dict]:
    """PurchaseEvent dicts (JSON-ready) for a demo chain, in chronological order.

    ``end`` is "today", the last day with data (default: today in Asia/Tokyo; pass it for
    reproducible output). The window is the ``years`` years up to and including ``end``.
    Same arguments, same events. About 150k events for the defaults, in about 3 s.
    """
    if end is None:
        end = datetime.now(JST).date()
    chain = _Chain(customers, branches, years, seed, tenant, end)
    codes = {b[0]: b[1] for b in chain.branch}
    n = 0
    slips: dict[str, int] = {}
    today = ""
    ids: dict[str, str] = {}  # customer numbers in order of first purchase: C000001 came first
    for month in chain.months():
        for _, _, _, event in month:
            n += 1
            event["event_id"] = f"{tenant}-{n:07d}"
            c = event["customer_id"]
            event["customer_id"] = ids.get(c) or ids.setdefault(c, f"C{len(ids) + 1:06d}")
            if event["kind"] == "sale":  # slip numbers per branch and day: SBY-20260531-0042
                day = event["occurred_at"][:10]
                if day != today:
                    today, slips = day, {}
                branch = event["branch_id"]
                slips[branch] = k = slips.get(branch, 0) + 1
                event["order_id"] = f"{codes[branch]}-{day.replace('-', '')}-{k:04d}"
            else:  # the sale it refers to came out earlier
                event["order_id"] = event["order_id"]["order_id"]
            yield event


# -- sending and writing ------------------------------------------------------------------------
class DemoLoadError(RuntimeError):
    """Ingest refused the demo data (or stayed unavailable)."""


RETRY_STATUSES = frozenset({429, 502, 503, 504})


async def load(
    ingest_url: str,
    key: str,
    events: Iterable[dict],
    batch: int = 5000,
    progress: Callable[[int, int | None], None] | None = None,
    *,
    concurrency: int = 2,
    attempts: int = 10,
    backoff: float = 0.5,
    timeout: float = 120.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> int:
    """POST ``{"events": [...]}`` batches to ``{ingest_url}/v1/purchases``; the number accepted.

    Up to ``concurrency`` requests in flight (batches may then land slightly out of order; the
    CPM figures do not depend on arrival order, use ``concurrency=1`` for strict order). A 503
    (broker unavailable), 429/502/504 or a connection error is retried with exponential back-off
    — resending is harmless, event ids are the idempotency key. A 422 raises ``DemoLoadError``
    naming the first problems. ``progress(sent, total)`` after each accepted batch; ``total`` is
    ``len(events)`` when it has one, else None. ``key``: an ingest API key of the events'
    tenant. ``transport`` is for tests (an httpx transport).
    """
    if batch < 1 or concurrency < 1:
        raise ValueError("batch and concurrency must be ≥ 1")
    try:
        total: int | None = len(events)  # type: ignore[arg-type]
    except TypeError:
        total = None
    url = ingest_url.rstrip("/") + "/v1/purchases"
    headers = {"Authorization": f"Bearer {key}"}
    accepted = 0
    gate = asyncio.Semaphore(concurrency)
    running: set[asyncio.Task] = set()
    failure: list[BaseException] = []

    async def send(client: httpx.AsyncClient, chunk: list[dict]) -> None:
        nonlocal accepted
        try:
            for attempt in range(1, attempts + 1):
                try:
                    r = await client.post(url, json={"events": chunk}, headers=headers)
                except httpx.TransportError as exc:
                    if attempt == attempts:
                        raise DemoLoadError(f"ingest at {url} is not reachable: {exc!r}") from exc
                else:
                    if r.status_code < 300:
                        try:
                            accepted += int(r.json().get("accepted", len(chunk)))
                        except (ValueError, AttributeError, TypeError):
                            accepted += len(chunk)
                        if progress is not None:
                            progress(accepted, total)
                        return
                    if r.status_code == 422:
                        raise DemoLoadError(_describe_422(r, chunk))
                    if r.status_code not in RETRY_STATUSES or attempt == attempts:
                        raise DemoLoadError(
                            f"ingest answered {r.status_code} to {url} "
                            f"(after {attempt} attempt(s)): {r.text[:500]}"
                        )
                await asyncio.sleep(min(backoff * 2 ** (attempt - 1), 15.0))
        except Exception as exc:  # reported by load(); the other batches are cancelled
            failure.append(exc)
        finally:
            gate.release()

    kwargs: dict = {"timeout": timeout}
    if transport is not None:
        kwargs["transport"] = transport
    async with httpx.AsyncClient(**kwargs) as client:
        try:
            for chunk in _chunks(events, batch):
                await gate.acquire()
                if failure:
                    gate.release()
                    break
                task = asyncio.create_task(send(client, chunk))
                running.add(task)
                task.add_done_callback(running.discard)
            while running and not failure:
                await asyncio.wait(set(running), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in list(running):
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)
    if failure:
        raise failure[0]
    return accepted


def _describe_422(response, chunk: list[dict]) -> str:
    try:
        error = response.json().get("error", {})
    except ValueError:
        return f"ingest rejected a batch (422): {response.text[:500]}"
    problems = error.get("problems") or []
    shown = []
    for p in problems[:5]:
        index = p.get("index")
        event_id = p.get("event_id") or (
            chunk[index].get("event_id")
            if isinstance(index, int) and 0 <= index < len(chunk)
            else None
        )
        shown.append(
            f"  #{index} {event_id or ''} {p.get('field', '')}: {p.get('reason', '')}".rstrip()
        )
    more = f"\n  … and {len(problems) - 5} more" if len(problems) > 5 else ""
    message = error.get("message") or "invalid events"
    return (
        f"ingest rejected a batch (422): {message}"
        + ("\n" + "\n".join(shown) if shown else "")
        + more
    )


def _chunks(events: Iterable[dict], size: int) -> Iterator[list[dict]]:
    chunk: list[dict] = []
    for event in events:
        chunk.append(event)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def write_ndjson(events: Iterable[dict], path: str | Path) -> int:
    """Write one JSON event per line (UTF-8; ``-`` is standard output); the number written."""
    n = 0
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    if str(path) == "-":
        target = contextlib.nullcontext(sys.stdout)
    else:
        target = open(path, "w", encoding="utf-8", newline="\n")
    with target as out:
        for event in events:
            out.write(dumps(event))
            out.write("\n")
            n += 1
    return n


@dataclass(frozen=True)
class DemoLogin:
    email: str
    password: str
    role: str
    branches: tuple[str, ...]


async def demo_accounts(database_url: str, tenant: str) -> tuple[list[DemoLogin], str, str]:
    """The demo chain's people and a key to load it with: the owner (whole chain) and the
    manager of its first shop, with fresh passwords each run (shown once, by ``kizuna up
    --demo``), and a new ingest key. Returns (logins, key_id, key); revoke the key after
    loading."""
    import asyncpg

    from shared.access import store as access
    from shared.access.credentials import new_password

    people = [
        ("owner", ()),
        ("manager", (BRANCHES[0][0],)),
    ]
    logins = []
    conn = await asyncpg.connect(database_url)
    try:
        for role, branches in people:
            email = f"{role}@{tenant}.example"
            password = new_password()
            try:
                await access.create_person(conn, tenant, email, role, password, branches)
            except access.AccessError:  # a database from an earlier demo: a new password
                await access.update_person(
                    conn, email, role=role, branches=branches, password=password, enabled=True
                )
            logins.append(DemoLogin(email, password, role, branches))
        key = await access.create_key(conn, tenant, "ingest", name="demo loader")
    finally:
        await conn.close()
    return logins, key.key_id, key.key


async def revoke_key(database_url: str, key_id: str) -> None:
    import asyncpg

    from shared.access import store as access

    conn = await asyncpg.connect(database_url)
    try:
        await access.revoke_key(conn, key_id)
    finally:
        await conn.close()
