"""The owners' page: a new login and a new API key made in the browser work at once and are
shown once; disabling the login and revoking the key end them; the audit log lists exports."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.browser.test_dashboard import rerendered

pytestmark = pytest.mark.e2e


async def test_owners_make_and_end_logins_and_keys(page_at, stack):
    page = await page_at(1440, "#/customers/loyal_active")  # a list seen: an export
    await rerendered(page, lambda: page.click("#menu a[data-page=people]"))
    scopes = (await stack.api("/v1/scopes"))["scopes"]
    branch = [s for s in scopes if s != "all"][0]
    email = f"tencho@{stack.tenant}.example"

    async def add_person():
        await page.fill("#new-person input[name=email]", email)
        await page.select_option("#new-person select[name=role]", "manager")
        await page.fill("#new-person input[name=branches]", branch)
        await page.click("#new-person button[type=submit]")

    await rerendered(page, add_person)
    password = await page.inner_text("#new-password code")
    assert await page.locator(f"table.people tr[data-email='{email}']").count() == 1
    async with httpx.AsyncClient(base_url=stack.reports) as c:
        login = await c.post("/v1/session", json={"email": email, "password": password})
        assert login.status_code == 200
        mine = await c.get("/v1/session")
        assert (mine.json()["role"], mine.json()["branches"]) == ("manager", [branch])

    row = page.locator(f"table.people tr[data-email='{email}']")
    await rerendered(page, lambda: row.get_by_role("button").click())
    async with httpx.AsyncClient(base_url=stack.reports) as c:
        refused = await c.post("/v1/session", json={"email": email, "password": password})
        assert refused.status_code == 401

    async def add_key():
        await page.fill("#new-key input[name=name]", "POS 梅田")
        await page.select_option("#new-key select[name=role]", "ingest")
        await page.fill("#new-key input[name=branches]", branch)
        await page.click("#new-key button[type=submit]")

    await rerendered(page, add_key)
    key = await page.inner_text("#new-key-value code")
    key_id = await page.eval_on_selector(
        "#keys-status .message", "m => m.firstChild.textContent.replace(': ', '')"
    )
    async with httpx.AsyncClient(base_url=stack.ingest) as c:
        ok = await c.post(
            "/v1/purchases",
            headers={"Authorization": f"Bearer {key}"},
            json={"events": []},
        )
        assert ok.status_code != 401
    await rerendered(
        page, lambda: page.locator(f"table.keys tr[data-key='{key_id}'] button").click()
    )
    async with httpx.AsyncClient(base_url=stack.ingest) as c:
        revoked = await c.post(
            "/v1/purchases", headers={"Authorization": f"Bearer {key}"}, json={"events": []}
        )
        assert revoked.status_code == 401

    # the segment lists opened in this session were exports: the audit log names them
    audit = await page.eval_on_selector_all(
        "table.audit tbody tr td:nth-child(3)", "tds => tds.map(t => t.innerText)"
    )
    assert audit and set(audit) <= {"export", "erase"}
