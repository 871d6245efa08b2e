"""The dashboard as people use it, in headless Chromium against the running services with the
demo chain: every page at phone, iPad and PC widths, the numbers against the API, the branch
and date controls, a task marked done, a CSV download, the language switch and the rules
preview against what saving does.

``KIZUNA_SCREENSHOTS=1`` also writes each page at iPad and PC widths to docs/screenshots/
(shown in the README); normal runs leave the tree as it is."""

from __future__ import annotations

import csv
import io
import math
import os
from collections import defaultdict
from itertools import pairwise

import httpx
import pytest

from services.reports.views.csv import CSV_HEADERS
from tests.e2e.browser.conftest import SCREENSHOTS, drawn, painted
from tests.helpers import wait_for

pytestmark = pytest.mark.e2e

WIDTHS = {"phone": 390, "ipad": 820, "desktop": 1440}
HEIGHTS = {"phone": 844, "ipad": 1180, "desktop": 1000}
PAGES = {
    "home": "#/home",
    "trends": "#/trends",
    "customers": "#/customers/loyal_active",
    "customer": None,  # the most valuable loyal customer, found through the API
    "followups": "#/followups",
    "rules": "#/rules",
    "rfm": "#/rfm",
    "ltv": "#/ltv",
    "dm": "#/dm",
    "questions": "#/questions",
    "imports": "#/imports",
    "people": "#/people",
}
SEGMENTS = [
    f"{tier}_{state}"
    for tier in ("first", "fledgling", "steady", "trendy", "loyal")
    for state in ("active", "lapsed")
]


def yen(amount) -> str:
    return f"¥{round(float(amount)):,}"


async def rerendered(page, action) -> None:
    """Do ``action`` (which changes the route) and wait until the next page is drawn."""
    before = await page.get_attribute("main", "data-render")
    await action()
    await page.wait_for_function(
        "b => { const m = document.querySelector('main');"
        " return m.dataset.render !== b && m.dataset.ready === 'true'; }",
        arg=before,
        timeout=30_000,
    )
    await painted(page)


async def matrix(page) -> dict[str, tuple[int, str]]:
    cells = await page.eval_on_selector_all(
        "#matrix .cell",
        "cells => cells.map(c => [c.dataset.segment, Number(c.dataset.customers),"
        " c.dataset.sales, c.innerText])",
    )
    return {seg: (n, sales, text) for seg, n, sales, text in cells}


def api_matrix(body: dict) -> dict[str, tuple[int, str]]:
    return {s["segment"]: (s["customers"], s["sales"]) for s in body["segments"]}


@pytest.mark.parametrize("size", list(WIDTHS))
@pytest.mark.parametrize("name", list(PAGES))
async def test_every_page_fits_the_screen_without_errors(page_at, stack, name, size):
    route = PAGES[name]
    if route is None:
        top = await stack.api("/v1/segments/loyal_active/customers", limit=1)
        route = f"#/customer/{top['items'][0]['customer_id']}"
    page = await page_at(WIDTHS[size], route, height=HEIGHTS[size])
    if os.environ.get("KIZUNA_SCREENSHOTS") and size != "phone":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=SCREENSHOTS / f"{name}-{size}.png")
    assert await page.get_attribute("main", "data-page") == name
    assert not await page.locator("main .message.error").count(), await page.inner_text("main")
    assert page.errors == []
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= WIDTHS[size], f"{name} is {width}px wide at {WIDTHS[size]}px"


async def test_the_matrix_equals_the_api_and_follows_branch_and_date(page_at, stack):
    page = await page_at(1440, "#/home")
    chain = await stack.api("/v1/portfolio", scope="all")
    shown = await matrix(page)
    assert {s: v[:2] for s, v in shown.items()} == {
        s: (n, sales) for s, (n, sales) in api_matrix(chain).items()
    }
    for s in chain["segments"]:  # what a person reads: ¥ amounts and counts with commas
        text = shown[s["segment"]][2]
        assert f"{s['customers']:,}" in text and yen(s["sales"]) in text
    assert chain["as_of"] == "2026-11-23"

    branch = next(s for s in (await stack.api("/v1/scopes"))["scopes"] if s != "all")
    await rerendered(page, lambda: page.select_option("#scope", branch))
    in_branch = await stack.api("/v1/portfolio", scope=branch)
    assert {s: v[:2] for s, v in (await matrix(page)).items()} == api_matrix(in_branch)
    assert api_matrix(in_branch) != api_matrix(chain)

    async def type_date():
        await page.fill("#as-of", "2025/11/23")
        await page.press("#as-of", "Enter")

    await rerendered(page, type_date)
    earlier = await stack.api("/v1/portfolio", scope=branch, as_of="2025-11-23")
    assert {s: v[:2] for s, v in (await matrix(page)).items()} == api_matrix(earlier)
    assert api_matrix(earlier) != api_matrix(in_branch)
    assert await page.input_value("#as-of") == "2025/11/23"
    assert "2025/11/23" in await page.inner_text("#totals")

    # a date that is not one is refused where it was typed, and nothing changes
    await page.fill("#as-of", "2025/13/40")
    await page.press("#as-of", "Enter")
    assert not await page.evaluate("document.querySelector('#as-of').checkValidity()")
    assert "as_of=2025-11-23" in page.url


async def test_the_language_switch_is_remembered(page_at):
    page = await page_at(820, "#/home")
    assert await page.get_attribute("html", "lang") == "ja"
    assert "顧客ポートフォリオ" in await page.inner_text("main")
    await rerendered(page, lambda: page.click("#lang"))
    assert "Customer portfolio" in await page.inner_text("main")
    await page.reload()
    await drawn(page)
    assert await page.get_attribute("html", "lang") == "en"
    assert "Customer portfolio" in await page.inner_text("main")


async def test_marking_a_task_done_removes_it_from_todays_list(page_at, stack):
    page = await page_at(390, "#/followups")
    tasks = page.locator("#tasks .task")
    before = await tasks.count()
    assert before > 0, "the demo chain has lapsed customers, so tasks for today"
    first = tasks.first
    task_id = await first.get_attribute("data-id")
    await first.locator("select[name=outcome]").select_option("reached")
    await first.locator("input[name=note]").fill("電話でお礼、来週来店予定")
    await first.locator("button[name=done]").click()
    await page.wait_for_selector(f"#tasks .task[data-id='{task_id}']", state="detached")
    assert await tasks.count() == before - 1

    await page.reload()
    await drawn(page)
    ids = await page.eval_on_selector_all("#tasks .task", "ts => ts.map(t => t.dataset.id)")
    assert task_id not in ids
    async with httpx.AsyncClient(headers=stack.auth) as c:
        open_today = (
            await c.get(stack.notifier + "/v1/followups", params={"due": "today", "limit": 500})
        ).json()
        done = (await c.get(stack.notifier + "/v1/followups", params={"status": "done"})).json()
    assert task_id not in {str(i["id"]) for i in open_today["items"]}

    # a task left from yesterday is still today's work, marked as carried over
    carried = ids[0]
    await stack.pool.execute("UPDATE followups SET due_on = due_on - 1 WHERE id = $1", int(carried))
    await page.reload()
    await drawn(page)
    marked = await page.eval_on_selector_all(
        "#tasks .task:has(.carried)", "ts => ts.map(t => t.dataset.id)"
    )
    assert marked == [carried]
    [item] = [i for i in done["items"] if str(i["id"]) == task_id]
    assert (item["staff_outcome"], item["staff_note"]) == ("reached", "電話でお礼、来週来店予定")


@pytest.mark.parametrize(
    ("button", "encoding", "bom"), [("#csv-utf8", "utf-8", "\ufeff"), ("#csv-sjis", "cp932", "")]
)
async def test_a_segment_csv_downloads_as_the_expected_text(
    page_at, stack, tmp_path, button, encoding, bom
):
    page = await page_at(1440, "#/customers/loyal_active")
    async with page.expect_download() as info:
        await page.click(button)
    download = await info.value
    path = tmp_path / download.suggested_filename
    await download.save_as(path)
    raw = path.read_bytes()
    text = raw.decode(encoding)
    assert text.startswith(bom) if bom else not text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text.removeprefix("\ufeff"))))
    assert rows[0] == list(CSV_HEADERS["ja"])
    listed = await stack.api("/v1/segments/loyal_active/customers", limit=1000)
    assert [r[0] for r in rows[1:]] == [i["customer_id"] for i in listed["items"]]
    shown = int(await page.get_attribute("#matched", "data-total"))
    assert shown == len(rows) - 1


async def test_customer_list_searches_sorts_and_pages_on_the_server(page_at, stack):
    page = await page_at(820, "#/customers/first_lapsed")
    total = int(await page.get_attribute("#matched", "data-total"))
    listed = await stack.api("/v1/segments/first_lapsed/customers", limit=1000)
    assert total == len(listed["items"]) > 50, "more than one page of first-time lapsed customers"
    first_page = await page.eval_on_selector_all(
        "table.customers tbody tr td:first-child", "tds => tds.map(t => t.innerText)"
    )
    assert first_page == [i["customer_id"] for i in listed["items"][:50]]
    await rerendered(page, lambda: page.get_by_role("button", name="次へ").click())
    second = await page.eval_on_selector_all(
        "table.customers tbody tr td:first-child", "tds => tds.map(t => t.innerText)"
    )
    assert second == [i["customer_id"] for i in listed["items"][50:100]]

    await rerendered(page, lambda: page.select_option("#sort", "id"))
    by_id = await page.eval_on_selector_all(
        "table.customers tbody tr td:first-child", "tds => tds.map(t => t.innerText)"
    )
    assert by_id == sorted(i["customer_id"] for i in listed["items"])[:50]

    wanted = listed["items"][7]["customer_id"]

    async def search():
        await page.fill("input[name=q]", wanted)
        await page.press("input[name=q]", "Enter")

    await rerendered(page, search)
    found = await page.eval_on_selector_all(
        "table.customers tbody tr td:first-child", "tds => tds.map(t => t.innerText)"
    )
    assert wanted in found and all(f.startswith(wanted) for f in found)

    await rerendered(page, lambda: page.get_by_role("link", name=wanted).click())
    assert await page.get_attribute("#customer-segment", "data-segment") == "first_lapsed"
    assert await page.locator("table.purchases tbody tr").count() >= 1
    causes = await page.eval_on_selector_all(
        "table.changes tbody tr td:nth-child(3)", "tds => tds.map(t => t.innerText)"
    )
    assert causes[0] == "離脱期間の経過" and causes[-1] == "購入"


async def test_an_import_shows_what_was_detected_then_its_progress_and_rejected_rows(
    page_at, stack, tmp_path
):
    sales = tmp_path / "売上.csv"
    sales.write_bytes(
        "日付,顧客番号,金額,店舗\r\n"
        '2026/11/20,IMP-1,"12,960",umeda\r\n'
        "2026/11/21,IMP-2,abc,umeda\r\n"
        "2026/11/22,IMP-3,5400,umeda\r\n".encode("cp932")
    )
    page = await page_at(1440, "#/imports")
    await page.set_input_files("input[name=file]", str(sales))
    await page.get_by_role("button", name="内容を確認").click()
    await page.wait_for_selector("#detected")
    detected = await page.inner_text("#detected")
    assert "cp932" in detected.lower() or "shift" in detected.lower(), detected
    mapped = await page.eval_on_selector_all(
        "#detected table.mapping tbody tr",
        "rs => rs.map(r => [...r.cells].map(c => c.innerText))",
    )
    assert [row[1:3] for row in mapped] == [
        ["日付", "date"],
        ["顧客番号", "customer_id"],
        ["金額", "amount"],
        ["店舗", "branch"],
    ]

    await page.get_by_role("button", name="取込開始").click()
    await page.wait_for_selector("#import-result dl[data-status=done]", timeout=60_000)
    progress = await page.inner_text("#import-result")
    assert "2 ✓ / 1 ✗" in progress
    async with page.expect_download() as info:
        await page.click("#import-result a")
    rejected = tmp_path / "rejected.csv"
    await (await info.value).save_as(rejected)
    rows = list(csv.reader(io.StringIO(rejected.read_bytes().decode("utf-8-sig"))))
    assert [r[:3] for r in rows[1:]] == [["3", "金額", "abc"]]  # the line of the file, as typed
    await stack.settle()


def percentile_disc(values: list, share: float):
    """PostgreSQL's percentile_disc: the first value whose cumulative share reaches ``share``."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


async def test_the_rules_figures_follow_their_plain_definition(stack):
    rows = await stack.pool.fetch(
        "SELECT customer_id, occurred_on FROM purchases WHERE tenant_id = $1 AND kind = 'sale'",
        stack.tenant,
    )
    days = defaultdict(set)
    for r in rows:
        days[r["customer_id"]].add(r["occurred_on"])
    gaps, seconds = [], []
    for visits in days.values():
        ordered = sorted(visits)
        gaps += [(b - a).days for a, b in pairwise(ordered)]
        if len(ordered) > 1:
            seconds.append((ordered[1] - ordered[0]).days)
    body = await stack.api("/v1/rules/distribution")
    for b in body["repurchase_gaps"]:
        inside = [g for g in gaps if g >= b["from"] and (b["to"] is None or g < b["to"])]
        assert b["count"] == len(inside), b
    assert sum(b["count"] for b in body["repurchase_gaps"]) == len(gaps)
    listed = await stack.api("/v1/portfolio", scope="all")
    assert sum(b["count"] for b in body["totals"]) == listed["total_customers"]

    suggested = (await stack.api("/v1/rules/suggestion"))["rules"]
    assert suggested["lapse_days"] == max(30, math.ceil(percentile_disc(gaps, 0.9) / 30) * 30)
    assert suggested["fledgling_tenure_days"] == max(
        30, math.ceil(percentile_disc(seconds, 0.75) / 30) * 30
    )


async def test_the_rules_preview_matches_what_saving_does(page_at, stack):
    """Last in the module: it changes the tenant's borders."""
    page = await page_at(1440, "#/rules")
    before = api_matrix(await stack.api("/v1/portfolio", scope="all"))
    await page.fill("input[name=lapse_days]", "150")
    await page.fill("input[name=amount_border]", "50000")
    await page.click("#preview-button")
    await page.wait_for_selector("#preview-moving")
    moving = int(await page.get_attribute("#preview-moving", "data-moving"))
    moves = await page.eval_on_selector_all(
        "table.moves tbody tr",
        "rs => rs.map(r => [r.dataset.from, r.dataset.to, Number(r.dataset.customers)])",
    )
    assert moving > 0 and sum(n for _, _, n in moves) == moving
    expected = {s: n for s, (n, _) in before.items()}
    for frm, to, n in moves:
        expected[frm] -= n
        expected[to] += n

    await page.click("#save-rules")
    await page.wait_for_selector("#rules-status .message.ok")
    version = int(await page.get_attribute("#rules-status", "data-version"))

    async def applied():
        return (await stack.api("/v1/rules"))["applied_version"] == version

    await wait_for(applied, timeout=120, interval=0.5, what="the classifier to apply the borders")
    await stack.settle()
    after = api_matrix(await stack.api("/v1/portfolio", scope="all"))
    assert {s: n for s, (n, _) in after.items()} == expected
