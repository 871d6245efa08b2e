"""Logging in, out and an expired session in a real browser: the dashboard sends a visitor
without a session to /login; a wrong password is said so and nothing opens; the right one
opens the page asked for; logging out ends the session on the server; an expired session leads
back to the login page and from there to where the person was."""

from __future__ import annotations

import pytest

from tests.e2e.browser.conftest import drawn, log_in
from tests.helpers import person

pytestmark = pytest.mark.e2e


async def test_login_logout_and_an_expired_session(browser, stack):
    email, password = await person(stack.pool, stack.tenant, "manager", ("shibuya",))
    context = await browser.new_context(viewport={"width": 1024, "height": 800})
    try:
        page = await context.new_page()
        await page.goto(stack.reports + "/#/followups")
        await page.wait_for_url("**/login?next=*")

        await page.fill("#email", email)
        await page.fill("#password", "not the password")
        await page.click("#submit")
        message = page.locator("#message")
        await message.wait_for(state="visible")
        assert "パスワードが違います" in await message.inner_text()
        assert "/login" in page.url

        await log_in(page, email, password)
        await drawn(page)
        assert page.url.endswith("/#/followups")  # back where the visitor was going
        [cookie] = [c for c in await context.cookies() if c["name"] == "kizuna_session"]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
        assert await page.locator("#logout").is_visible()

        # the session ends on the server: the dashboard, reloaded, asks for a login again
        await stack.pool.execute(
            "UPDATE sessions SET expires_at = now() - interval '1 second'"
            " WHERE token_hash = sha256($1::text::bytea)",
            cookie["value"],
        )
        await page.reload()
        await page.wait_for_url("**/login?next=*")
        await log_in(page, email, password)
        await drawn(page)
        assert page.url.endswith("/#/followups")

        [cookie] = [c for c in await context.cookies() if c["name"] == "kizuna_session"]
        async with page.expect_navigation(url="**/login"):
            await page.click("#logout")
        assert not await stack.pool.fetchval(
            "SELECT count(*) FROM sessions WHERE token_hash = sha256($1::text::bytea)",
            cookie["value"],
        )
        await page.goto(stack.reports + "/#/home")
        await page.wait_for_url("**/login?next=*")
    finally:
        await context.close()
