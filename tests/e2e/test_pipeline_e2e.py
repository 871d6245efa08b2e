"""End to end over HTTP, every service a real process: a purchase reaches the portfolio, the
customer's figures and the segment list; time passes and a valued customer's lapse opens one
follow-up task; a comeback purchase closes it."""

from __future__ import annotations

import csv
import io

import httpx
import pytest

from tests.helpers import sale, wait_for

pytestmark = pytest.mark.e2e


async def test_purchase_to_portfolio_customer_list_and_followup(services, tenant, auth):
    clock = {"KIZUNA_NOW": "2026-06-01T12:00:00+09:00", "KIZUNA_SWEEP_INTERVAL_SECONDS": "0.2"}
    procs = {
        name: services(name, **clock) for name in ("ingest", "classifier", "reports", "notifier")
    }
    for p in procs.values():
        p.start()
    for p in procs.values():
        await p.ready()
    h = auth
    ingest, reports, notifier = (procs[n].url for n in ("ingest", "reports", "notifier"))

    async with httpx.AsyncClient(timeout=10, headers=h) as http:
        # a loyal customer (tenure ≥ 210, total ≥ 70,000) and a first-timer at another branch
        r = await http.post(
            ingest + "/v1/purchases",
            json={
                "events": [
                    sale(tenant, "a1", "VIP", "2025-01-10T10:00:00", "50000"),
                    sale(tenant, "a2", "VIP", "2025-10-05T10:00:00", "30000"),
                    sale(tenant, "b1", "NEW", "2026-05-30T15:00:00", "4000", branch="umeda"),
                ]
            },
        )
        assert r.status_code == 202 and r.json() == {"accepted": 3}

        async def portfolio_has_two():
            body = (await http.get(reports + "/v1/portfolio", params={"scope": "all"})).json()
            return body if body.get("total_customers") == 2 else None

        body = await wait_for(
            portfolio_has_two, timeout=120, what="the portfolio to count both customers"
        )
        segments = {s["segment"]: s for s in body["segments"]}
        assert len(body["segments"]) == 10
        assert (
            segments["loyal_active"]["customers"] == 1
            and segments["first_active"]["customers"] == 1
        )
        assert float(body["total_sales"]) == 84000
        assert float(segments["loyal_active"]["sales_share"]) == pytest.approx(
            80000 / 84000, abs=1e-3
        )
        umeda = (await http.get(reports + "/v1/portfolio", params={"scope": "umeda"})).json()
        assert umeda["total_customers"] == 1

        vip = (await http.get(reports + "/v1/customers/VIP", params={"scope": "all"})).json()
        assert vip["segment"] == "loyal_active"
        assert (vip["purchase_count"], float(vip["total_amount"]), vip["tenure_days"]) == (
            2,
            80000,
            268,
        )
        assert vip["first_purchase_on"] == "2025-01-10" and vip["last_purchase_on"] == "2025-10-05"
        assert vip["lapse_days"] == 239
        assert (
            await http.get(reports + "/v1/customers/NOPE", params={"scope": "all"})
        ).status_code == 404
        assert (
            await http.get(reports + "/v1/customers/VIP", params={"scope": "umeda"})
        ).status_code == 404

        listed = (
            await http.get(reports + "/v1/segments/loyal_active/customers", params={"scope": "all"})
        ).json()
        assert [c["customer_id"] for c in listed["items"]] == ["VIP"]
        exported = await http.get(
            reports + "/v1/segments/loyal_active/customers",
            params={"scope": "all", "format": "csv"},
        )
        rows = list(csv.reader(io.StringIO(exported.content.decode("utf-8-sig"))))
        assert rows[0][0] == "顧客コード" and rows[1][0] == "VIP"

        assert (await http.get(notifier + "/v1/followups", params={"status": "open"})).json()[
            "items"
        ] == []

        # time passes: 2025-10-05 + 240 days = 2026-06-02, the VIP's lapse date. No event is
        # needed: restarted with the clock on 2026-06-03, the sweep lapses the VIP.
        for name in ("classifier", "reports", "notifier"):
            procs[name].stop()
            procs[name].start(KIZUNA_NOW="2026-06-03T09:00:00+09:00")
        for name in ("classifier", "reports", "notifier"):
            await procs[name].ready()

        async def task_for_vip():
            items = (await http.get(notifier + "/v1/followups", params={"status": "open"})).json()[
                "items"
            ]
            return [i for i in items if i["customer_id"] == "VIP"]

        tasks = await wait_for(
            task_for_vip, timeout=120, what="a follow-up task for the lapsed VIP"
        )
        assert len(tasks) == 1
        task = tasks[0]
        assert (task["segment"], task["reason"], task["branch_id"]) == (
            "loyal_lapsed",
            "lapsed",
            "shibuya",
        )

        # a comeback purchase closes the task; redelivering it changes nothing
        comeback = sale(tenant, "a3", "VIP", "2026-06-03T08:00:00", "12000")
        for _ in range(2):
            assert (await http.post(ingest + "/v1/purchases", json=comeback)).status_code == 202

        async def closed():
            items = (await http.get(notifier + "/v1/followups", params={"status": "done"})).json()[
                "items"
            ]
            return [i for i in items if i["id"] == task["id"]]

        await wait_for(closed, timeout=120, what="the comeback to close the task")

        async def vip_back():
            vip = (await http.get(reports + "/v1/customers/VIP", params={"scope": "all"})).json()
            return vip if vip["purchase_count"] == 3 else None

        vip = await wait_for(vip_back, timeout=120, what="the reports to count the comeback")
        assert (vip["segment"], float(vip["total_amount"])) == ("loyal_active", 92000)
        open_tasks = (await http.get(notifier + "/v1/followups", params={"status": "open"})).json()[
            "items"
        ]
        assert not [i for i in open_tasks if i["customer_id"] == "VIP"]
