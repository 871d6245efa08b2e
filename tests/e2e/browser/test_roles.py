"""What a login sees follows its role and branches: a branch manager sees their branch only
(the chain's numbers are refused), shop staff start the day on their branch's task list and
see nothing else."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.e2e.browser.conftest import drawn, log_in
from tests.helpers import person

pytestmark = pytest.mark.e2e


async def fresh_page(browser, stack, width=1440, route="#/home"):
    context = await browser.new_context(viewport={"width": width, "height": 900})
    page = await context.new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    await page.goto(stack.reports + "/" + route)
    return context, page


async def logged_in(page, email: str, password: str) -> None:
    await log_in(page, email, password)
    await drawn(page)


async def test_a_branch_manager_sees_only_their_branch(browser, stack):
    scopes = (await stack.api("/v1/scopes"))["scopes"]
    branch = [s for s in scopes if s != "all"][1]
    email, password = await person(stack.pool, stack.tenant, "manager", (branch,))
    context, page = await fresh_page(browser, stack, width=820)
    try:
        await logged_in(page, email, password)
        options = await page.eval_on_selector_all("#scope option", "os => os.map(o => o.value)")
        assert options == [branch]
        cells = await page.eval_on_selector_all(
            "#matrix .cell", "cs => cs.map(c => [c.dataset.segment, Number(c.dataset.customers)])"
        )
        mine = await stack.api("/v1/portfolio", scope=branch)
        assert dict(cells) == {s["segment"]: s["customers"] for s in mine["segments"]}
        chain = await page.request.get(stack.reports + "/v1/portfolio?scope=all")
        assert chain.status == 403
        menu = await page.eval_on_selector_all("#menu a", "as => as.map(a => a.dataset.page)")
        assert "imports" not in menu and "home" in menu
    finally:
        await context.close()


async def test_staff_start_on_their_branchs_tasks(browser, stack):
    today = await stack.api("/notifier/v1/followups", due="today", limit=500)
    branch = Counter(i["branch_id"] for i in today["items"]).most_common(1)[0][0]
    email, password = await person(stack.pool, stack.tenant, "staff", (branch,))
    context, page = await fresh_page(browser, stack, width=390, route="")
    try:
        await logged_in(page, email, password)
        assert await page.get_attribute("main", "data-page") == "followups"
        branches = await page.eval_on_selector_all(
            "#tasks .task", "ts => ts.map(t => t.dataset.branch)"
        )
        assert branches and set(branches) == {branch}
        menu = await page.eval_on_selector_all("#menu a", "as => as.map(a => a.dataset.page)")
        assert menu == ["followups"]
    finally:
        await context.close()
