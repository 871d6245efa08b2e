"""The dashboard as people use it, in headless Chromium against the running services with the
demo chain: every page at phone, iPad and PC widths, the numbers against the API, the branch
and date controls, a task marked done, a CSV download, the language switch and the rules
preview against what saving does.

``KIZUNA_SCREENSHOTS=1`` also writes each page at iPad and PC widths to docs/screenshots/
(shown in the README); normal runs leave the tree as it is."""

from __future__ import annotations

import csv
import io
import os

import httpx
import pytest

from services.reports.domain import CSV_HEADERS
from tests.e2e.browser.conftest import SCREENSHOTS, drawn
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
    await page.wait_for_load_state("networkidle")


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
    assert await page.get_attribute("main", "data-page") == name
    assert not await page.locator("main .message.error").count(), await page.inner_text("main")
    assert page.errors == []
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= WIDTHS[size], f"{name} is {width}px wide at {WIDTHS[size]}px"
    if os.environ.get("KIZUNA_SCREENSHOTS") and size != "phone":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=SCREENSHOTS / f"{name}-{size}.png")


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
    async with httpx.AsyncClient(headers={"X-Kizuna-Tenant": stack.tenant}) as c:
        open_today = (
            await c.get(stack.notifier + "/v1/followups", params={"due": "today", "limit": 500})
        ).json()
        done = (await c.get(stack.notifier + "/v1/followups", params={"status": "done"})).json()
    assert task_id not in {str(i["id"]) for i in open_today["items"]}
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
