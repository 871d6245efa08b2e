"""Accounts over the real stack (every service a process): two tenants that share customer codes
and branch names; keys and logins made with `kizuna keys|users create` as an operator would. A
manager of branch b1 sees b1's portfolio, lists, CSV, customers and tasks and nothing of b2 or of
the chain; an ingest key of b1 cannot write to b2 (nothing of that request is accepted); the
owner sees the whole chain; every export is in the audit log; no key or password reaches a log.
"""

from __future__ import annotations

import csv
import io
import uuid

import asyncpg
import httpx
import pytest

from tests.helpers import run_kizuna, sale, wait_for

pytestmark = pytest.mark.e2e


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def chain(tenant: str, factor: int) -> list[dict]:
    """The same codes and branches in each tenant; amounts differ (factor) so that one
    tenant's figures can never pass for the other's."""
    return [
        sale(tenant, "v1", "VIP", "2025-01-10T10:00:00", str(50000 * factor), "b1"),
        sale(tenant, "v2", "VIP", "2025-10-05T10:00:00", str(30000 * factor), "b1"),
        sale(tenant, "w1", "VIP2", "2025-01-11T10:00:00", str(50000 * factor), "b2"),
        sale(tenant, "w2", "VIP2", "2025-10-05T11:00:00", str(30000 * factor), "b2"),
        sale(tenant, "n1", "NEW", "2026-05-30T15:00:00", str(4000 * factor), "b1"),
    ]


async def test_branch_manager_sees_only_their_branch_over_the_real_stack(services, database_url):
    suffix = uuid.uuid4().hex[:8]
    t1, t2 = f"acme{suffix}", f"bravo{suffix}"
    clock = {"KIZUNA_NOW": "2026-06-01T12:00:00+09:00", "KIZUNA_SWEEP_INTERVAL_SECONDS": "0.2"}
    procs = {n: services(n, **clock) for n in ("ingest", "classifier", "reports", "notifier")}
    for p in procs.values():
        p.start()

    keys = {
        "t1": last_line(await run_kizuna("keys", "create", "--tenant", t1, "--role", "ingest")),
        "t1-b1": last_line(
            await run_kizuna(
                "keys",
                "create",
                "--tenant",
                t1,
                "--role",
                "ingest",
                "--branch",
                "b1",
                "--name",
                "POS b1",
            )
        ),
        "t2": last_line(await run_kizuna("keys", "create", "--tenant", t2, "--role", "ingest")),
    }
    owner = (
        f"owner@{t1}.jp",
        last_line(
            await run_kizuna(
                "users", "create", "--tenant", t1, "--email", f"owner@{t1}.jp", "--role", "owner"
            )
        ),
    )
    manager = (f"manager-b1@{t1}.jp", f"pw-{uuid.uuid4().hex}")
    await run_kizuna(
        "users",
        "create",
        "--tenant",
        t1,
        "--email",
        manager[0],
        "--role",
        "manager",
        "--branch",
        "b1",
        "--password-stdin",
        stdin=manager[1] + "\n",
    )
    for p in procs.values():
        await p.ready()
    ingest, reports, notifier = (procs[n].url for n in ("ingest", "reports", "notifier"))

    def bearer(name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {keys[name]}"}

    async with httpx.AsyncClient(timeout=15) as http:
        # the b1 key: an event for b2 or for another tenant refuses the whole request
        mixed = [
            sale(t1, "x1", "POS1", "2026-05-31T10:00:00", "1000", "b1"),
            sale(t1, "x2", "POS1", "2026-05-31T10:05:00", "1000", "b2"),
        ]
        r = await http.post(
            ingest + "/v1/purchases", json={"events": mixed}, headers=bearer("t1-b1")
        )
        assert r.status_code == 403, r.text
        assert [(p["index"], p["field"]) for p in r.json()["error"]["problems"]] == [
            (1, "branch_id")
        ]
        foreign = sale(t2, "x3", "POS1", "2026-05-31T10:00:00", "1000", "b1")
        r = await http.post(ingest + "/v1/purchases", json=foreign, headers=bearer("t1-b1"))
        assert r.status_code == 403 and r.json()["error"]["problems"][0]["field"] == "tenant_id"
        # …and its own branch goes in (branch_id may be left out: the key has one branch)
        own = sale(t1, "x4", "POS1", "2026-05-31T10:00:00", "1000", "b1")
        del own["branch_id"]
        r = await http.post(ingest + "/v1/purchases", json=own, headers=bearer("t1-b1"))
        assert r.status_code == 202, r.text

        for name, tenant, factor in (("t1", t1, 1), ("t2", t2, 2)):
            r = await http.post(
                ingest + "/v1/purchases",
                json={"events": chain(tenant, factor)},
                headers=bearer(name),
            )
            assert r.status_code == 202, r.text

    owner_http = httpx.AsyncClient(base_url=reports, timeout=15)
    manager_http = httpx.AsyncClient(base_url=reports, timeout=15)
    async with owner_http, manager_http:
        for client, (email, password) in ((owner_http, owner), (manager_http, manager)):
            r = await client.post("/v1/session", json={"email": email, "password": password})
            assert r.status_code == 200, r.text
            client.headers["X-CSRF-Token"] = r.json()["csrf_token"]

        async def counted():
            body = (await owner_http.get("/v1/portfolio", params={"scope": "all"})).json()
            return body if body.get("total_customers") == 4 else None

        await wait_for(counted, timeout=120, what="the owner's portfolio to count four")

        # time passes: the VIPs of b1 and b2 lapse on 2026-06-02, each opens a follow-up (the
        # logins made "on 2026-06-01" still hold: sessions run on the real clock, not KIZUNA_NOW)
        for name in ("classifier", "reports", "notifier"):
            procs[name].stop()
            procs[name].start(KIZUNA_NOW="2026-06-03T09:00:00+09:00")
        for name in ("classifier", "reports", "notifier"):
            await procs[name].ready()

        seen: dict = {}

        async def two_tasks():
            r = await owner_http.get(notifier + "/v1/followups")
            seen["last"] = (r.status_code, r.text[:500])
            items = r.json()["items"] if r.status_code == 200 else []
            return items if len(items) == 2 else None

        try:
            found = await wait_for(two_tasks, timeout=120, what="two follow-up tasks")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last answer: {seen.get('last')}") from None
        tasks = {t["customer_id"]: t for t in found}
        assert {(c, t["branch_id"]) for c, t in tasks.items()} == {("VIP", "b1"), ("VIP2", "b2")}
        whole = (await owner_http.get("/v1/portfolio", params={"scope": "all"})).json()
        assert (whole["total_customers"], float(whole["total_sales"])) == (4, 165000)

        # the manager of b1: b1's portfolio, lists, CSV, customers and tasks; nothing else
        m = manager_http
        assert (await m.get("/v1/scopes")).json() == {"scopes": ["b1"]}
        b1 = (await m.get("/v1/portfolio", params={"scope": "b1"})).json()
        assert (b1["total_customers"], float(b1["total_sales"])) == (3, 85000)
        for scope in ("all", "b2"):
            assert (await m.get("/v1/portfolio", params={"scope": scope})).status_code == 403
            assert (
                await m.get(notifier + "/v1/followups", params={"scope": scope})
            ).status_code == 403
        listed = (await m.get("/v1/segments/loyal_lapsed/customers", params={"scope": "b1"})).json()
        assert [(c["customer_id"], float(c["total_amount"])) for c in listed["items"]] == [
            ("VIP", 80000)
        ]
        exported = await m.get(
            "/v1/segments/loyal_lapsed/customers", params={"scope": "b1", "format": "csv"}
        )
        rows = list(csv.reader(io.StringIO(exported.content.decode("utf-8-sig"))))
        assert [r[0] for r in rows[1:]] == ["VIP"]
        vip = (await m.get("/v1/customers/VIP", params={"scope": "b1"})).json()
        assert float(vip["total_amount"]) == 80000  # acme's VIP, not bravo's (160,000)
        assert (await m.get("/v1/customers/VIP2", params={"scope": "b1"})).status_code == 404
        assert (await m.get("/v1/customers/VIP2", params={"scope": "b2"})).status_code == 403
        mine = (await m.get(notifier + "/v1/followups", params={"scope": "b1"})).json()["items"]
        assert [t["customer_id"] for t in mine] == ["VIP"]
        other = await m.post(notifier + f"/v1/followups/{tasks['VIP2']['id']}/done")
        assert other.status_code == 404
        done = await m.post(notifier + f"/v1/followups/{tasks['VIP']['id']}/done")
        assert done.status_code == 200 and done.json()["status"] == "done"
        assert (await m.get("/v1/audit")).status_code == 403

        # every export is in the audit log, with who, which list, rows and format
        audit = (await owner_http.get("/v1/audit")).json()["items"]
        assert [(e["actor"], e["subject"], e["rows"], e["format"]) for e in audit] == [
            (manager[0], "/v1/segments/loyal_lapsed/customers?scope=b1&format=csv", 1, "csv"),
            (manager[0], "/v1/segments/loyal_lapsed/customers?scope=b1", 1, "json"),
        ]

    conn = await asyncpg.connect(database_url)
    try:
        refused = await conn.fetchval(
            "SELECT count(*) FROM purchases WHERE tenant_id = ANY($1::text[])"
            " AND event_id IN ('x1', 'x2', 'x3')",
            [t1, t2],
        )
        accepted = await conn.fetchval(
            "SELECT count(*) FROM purchases WHERE tenant_id = $1 AND event_id = 'x4'", t1
        )
    finally:
        await conn.close()
    assert (refused, accepted) == (0, 1)

    for p in procs.values():
        p.stop()
    logged = "".join(p.log.read_text("utf-8", "replace") for p in procs.values())
    for secret in (*keys.values(), owner[1], manager[1]):
        assert secret not in logged
