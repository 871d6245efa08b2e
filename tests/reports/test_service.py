"""The reports service against the real broker and PostgreSQL: customer states published to
``kizuna.customer-states.v1`` are consumed in-process by a ``PgOffsetConsumer`` with the service's
handler, and read back through the HTTP API (ASGI, in-process)."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import date, timedelta
from decimal import Decimal

import pytest

from services.reports.app import app
from shared.events import DEADLETTER, CustomerState, message_key
from shared.outbox import pending_outbox
from tests.helpers import api_key
from tests.reports.service import TODAY, processed, publish

pytestmark = pytest.mark.integration

# --- helpers --------------------------------------------------------------------------------------


def cs(
    tenant,
    customer,
    seq,
    to,
    total,
    on,
    *,
    scope="all",
    frm=None,
    count=1,
    first=None,
    cause="purchase",
    corrects_from=None,
) -> CustomerState:
    first = first or on
    return CustomerState(
        tenant_id=tenant,
        scope=scope,
        customer_id=customer,
        seq=seq,
        from_segment=frm,
        to_segment=to,
        effective_on=on,
        cause=cause,
        purchase_count=count,
        total_amount=Decimal(total),
        first_purchase_on=first if to else None,
        last_purchase_on=on if to and cause != "lapse" else (first if to else None),
        tenure_days=(on - first).days if to else None,
        lapse_days=0 if to else None,
        corrects_from=corrects_from,
        schema_version=2,
    )


SNAPSHOT = (
    "SELECT tenant_id, scope, customer_id, seq, segment, purchase_count, total_amount,"
    " first_purchase_on, last_purchase_on, effective_on, prev_segment, prev_total_amount"
    " FROM report_customers WHERE tenant_id = $1 ORDER BY scope, customer_id",
    "SELECT scope, segment, customers, sales FROM portfolio_current WHERE tenant_id = $1"
    " ORDER BY scope, segment",
    "SELECT scope, day, segment, customers, sales FROM portfolio_daily_deltas"
    " WHERE tenant_id = $1 ORDER BY scope, day, segment",
)


async def snapshot(service_pool, tenant) -> list:
    """Everything reports store for a tenant, for before/after comparisons."""
    return [[tuple(r) for r in await service_pool.fetch(sql, tenant)] for sql in SNAPSHOT]


async def assert_consistent(service_pool, tenant) -> None:
    """The invariant of the aggregates: current = sum of deltas = sum over customers."""
    for sql in (
        "SELECT scope, segment, sum(customers) AS c, sum(sales) AS s FROM portfolio_daily_deltas"
        " WHERE tenant_id = $1 GROUP BY scope, segment",
        "SELECT scope, segment, count(*) AS c, sum(total_amount) AS s FROM report_customers"
        " WHERE tenant_id = $1 AND segment IS NOT NULL GROUP BY scope, segment",
    ):
        other = {
            (r["scope"], r["segment"]): (r["c"], r["s"])
            for r in await service_pool.fetch(sql, tenant)
        }
        current = {
            (r["scope"], r["segment"]): (r["customers"], r["sales"])
            for r in await service_pool.fetch(
                "SELECT scope, segment, customers, sales FROM portfolio_current WHERE tenant_id = $1",
                tenant,
            )
        }
        assert {k: v for k, v in other.items() if v != (0, 0)} == {
            k: v for k, v in current.items() if v != (0, 0)
        }


def counts(body) -> dict:
    return {
        s["segment"]: (s["customers"], Decimal(s["sales"]))
        for s in body["segments"]
        if s["customers"]
    }


def d(text: str) -> date:
    return date.fromisoformat(text)


def history(tenant) -> list[CustomerState]:
    return [
        cs(tenant, "c1", 1, "first_active", 10000, d("2025-01-10")),
        cs(tenant, "c1", 1, "first_active", 10000, d("2025-01-10"), scope="b1"),
        cs(tenant, "c2", 1, "first_active", 20000, d("2025-01-10")),
        cs(
            tenant,
            "c2",
            2,
            "fledgling_active",
            50000,
            d("2025-02-01"),
            frm="first_active",
            count=2,
            first=d("2025-01-10"),
        ),
        cs(tenant, "c2", 1, "first_active", 30000, d("2025-02-01"), scope="b2"),
        cs(tenant, "c3", 1, "first_active", 8000, d("2024-05-01")),
        cs(
            tenant,
            "c3",
            2,
            "first_lapsed",
            8000,
            d("2024-05-01") + timedelta(days=240),
            frm="first_active",
            cause="lapse",
            first=d("2024-05-01"),
        ),
    ]


# --- tests ----------------------------------------------------------------------------------------


async def test_portfolio_now_and_as_of_past_dates(client, producer, service_pool, tenant, auth):
    await processed(service_pool, await publish(producer, history(tenant)))
    headers = auth

    now = (await client.get("/v1/portfolio", headers=headers)).json()
    assert now["scope"] == "all" and now["as_of"] == TODAY.isoformat()
    assert now["total_customers"] == 3 and Decimal(now["total_sales"]) == 68000
    assert counts(now) == {
        "first_active": (1, 10000),
        "fledgling_active": (1, 50000),
        "first_lapsed": (1, 8000),
    }
    assert len(now["segments"]) == 10
    share = {s["segment"]: s for s in now["segments"]}
    assert share["fledgling_active"]["customer_share"] == 0.3333
    assert share["fledgling_active"]["sales_share"] == round(50000 / 68000, 4)
    assert share["fledgling_active"]["name_ja"] == "よちよち客"

    jan = (
        await client.get("/v1/portfolio", params={"as_of": "2025-01-20"}, headers=headers)
    ).json()
    assert jan["as_of"] == "2025-01-20"
    assert counts(jan) == {"first_active": (2, 30000), "first_lapsed": (1, 8000)}
    before_lapse = (
        await client.get("/v1/portfolio", params={"as_of": "2024-12-26"}, headers=headers)
    ).json()
    assert counts(before_lapse) == {"first_active": (1, 8000)}
    empty = (
        await client.get("/v1/portfolio", params={"as_of": "2024-01-01"}, headers=headers)
    ).json()
    assert empty["total_customers"] == 0 and empty["total_sales"] == "0"
    assert all(s["customer_share"] == 0 for s in empty["segments"])

    branch = (await client.get("/v1/portfolio", params={"scope": "b2"}, headers=headers)).json()
    assert branch["scope"] == "b2" and counts(branch) == {"first_active": (1, 30000)}
    other = (await client.get("/v1/portfolio", params={"scope": "nowhere"}, headers=headers)).json()
    assert other["total_customers"] == 0
    assert (await client.get("/v1/scopes", headers=headers)).json() == {
        "scopes": ["all", "b1", "b2"]
    }

    bad = await client.get("/v1/portfolio", params={"as_of": "30/06/2025"}, headers=headers)
    assert bad.status_code == 422 and bad.json()["error"]["problems"][0]["field"] == "query.as_of"
    await assert_consistent(service_pool, tenant)


async def test_redelivering_the_same_states_changes_nothing(
    client, producer, service_pool, tenant, auth
):
    states = history(tenant)
    await processed(service_pool, await publish(producer, states))
    before = await snapshot(service_pool, tenant)
    body = (await client.get("/v1/portfolio", headers=auth)).json()

    # Everything again, then again in reverse order: seq makes each state count once.
    await processed(service_pool, await publish(producer, states + states[::-1]))
    assert await snapshot(service_pool, tenant) == before
    assert (await client.get("/v1/portfolio", headers=auth)).json() == body
    await assert_consistent(service_pool, tenant)


async def test_customer_figures_and_404s(client, producer, service_pool, tenant, auth):
    await processed(
        service_pool,
        await publish(
            producer,
            [
                *history(tenant),
                cs(tenant, "gone", 1, "first_active", 5000, d("2025-03-01")),
                cs(
                    tenant,
                    "gone",
                    2,
                    None,
                    0,
                    d("2025-03-02"),
                    frm="first_active",
                    count=0,
                    cause="void",
                ),
            ],
        ),
    )
    headers = auth
    r = await client.get("/v1/customers/c2", headers=headers)
    assert r.status_code == 200
    assert r.json() == {
        "customer_id": "c2",
        "scope": "all",
        "segment": "fledgling_active",
        "name_ja": "よちよち客",
        "purchase_count": 2,
        "total_amount": "50000",
        "first_purchase_on": "2025-01-10",
        "last_purchase_on": "2025-02-01",
        "tenure_days": 22,
        "lapse_days": (TODAY - d("2025-02-01")).days,
        "home_branch_id": None,
    }
    in_branch = (
        await client.get("/v1/customers/c2", params={"scope": "b2"}, headers=headers)
    ).json()
    assert in_branch["segment"] == "first_active" and in_branch["total_amount"] == "30000"

    for path, params in (
        ("/v1/customers/nobody", {}),
        ("/v1/customers/c3", {"scope": "b1"}),  # known, but not in that branch
        ("/v1/customers/gone", {}),  # every purchase voided: in no segment
    ):
        r = await client.get(path, params=params, headers=headers)
        assert r.status_code == 404, path
        assert r.json()["error"]["code"] == "customer_not_found"
    other_tenant = await client.get(
        "/v1/customers/c2", headers=await api_key(service_pool, tenant + "x")
    )
    assert other_tenant.status_code == 404
    gone = (
        await client.get("/v1/portfolio", params={"as_of": "2025-03-01"}, headers=headers)
    ).json()
    assert counts(gone)["first_active"] == (2, Decimal(15000))
    await assert_consistent(service_pool, tenant)


async def test_a_withdrawn_lapse_is_undone_in_history(client, producer, service_pool, tenant, auth):
    first = d("2024-01-01")
    lapse_on = first + timedelta(days=240)
    await processed(
        service_pool,
        await publish(
            producer,
            [
                cs(tenant, "c", 1, "first_active", 10000, first),
                cs(
                    tenant,
                    "c",
                    2,
                    "first_lapsed",
                    10000,
                    lapse_on,
                    frm="first_active",
                    cause="lapse",
                    first=first,
                ),
            ],
        ),
    )
    headers = auth
    lapsed = (await client.get("/v1/portfolio", headers=headers)).json()
    assert counts(lapsed) == {"first_lapsed": (1, 10000)}

    # Late history: a purchase on March 1st, before the lapse date; the correction withdraws
    # the lapse (on its own day) and applies the purchase on its day.
    late = cs(
        tenant,
        "c",
        3,
        "fledgling_active",
        25000,
        d("2024-03-01"),
        frm="first_active",
        count=2,
        first=first,
        corrects_from=d("2024-03-01"),
    )
    await processed(service_pool, await publish(producer, [late]))
    for as_of, expected in (
        (None, {"fledgling_active": (1, 25000)}),
        ("2024-02-01", {"first_active": (1, 10000)}),
        ("2024-03-01", {"fledgling_active": (1, 25000)}),
        (lapse_on.isoformat(), {"fledgling_active": (1, 25000)}),
    ):
        params = {"as_of": as_of} if as_of else {}
        body = (await client.get("/v1/portfolio", params=params, headers=headers)).json()
        assert counts(body) == expected, as_of
    await assert_consistent(service_pool, tenant)


async def test_segment_list_json_pages(client, producer, service_pool, tenant, auth):
    totals = {"a": 90000, "b": 120000, "c": 90000, "d": 75000, "e": 300000}
    states = [
        cs(tenant, cid, 1, "loyal_active", total, d("2025-05-01"), count=5, first=d("2024-01-01"))
        for cid, total in totals.items()
    ]
    await processed(service_pool, await publish(producer, states))
    headers = auth

    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        body = (
            await client.get("/v1/segments/loyal_active/customers", params=params, headers=headers)
        ).json()
        assert body["segment"] == "loyal_active" and body["scope"] == "all"
        seen += [(i["customer_id"], i["total_amount"]) for i in body["items"]]
        pages += 1
        cursor = body["next"]
        if cursor is None:
            break
    assert seen == [
        ("e", "300000"),
        ("b", "120000"),
        ("a", "90000"),
        ("c", "90000"),
        ("d", "75000"),
    ]
    assert pages == 3
    item = body["items"][0]
    assert item["tenure_days"] == (d("2025-05-01") - d("2024-01-01")).days
    assert item["lapse_days"] == (TODAY - d("2025-05-01")).days

    empty = (await client.get("/v1/segments/first_lapsed/customers", headers=headers)).json()
    assert empty["items"] == [] and empty["next"] is None
    unknown = await client.get("/v1/segments/vip/customers", headers=headers)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_segment"
    bad_cursor = await client.get(
        "/v1/segments/loyal_active/customers", params={"cursor": "nope"}, headers=headers
    )
    assert bad_cursor.status_code == 422
    assert bad_cursor.json()["error"]["problems"][0]["field"] == "cursor"
    bad_format = await client.get(
        "/v1/segments/loyal_active/customers", params={"format": "xml"}, headers=headers
    )
    assert bad_format.status_code == 422


async def test_csv_export_in_utf8_and_cp932_is_inert(client, producer, service_pool, tenant, auth):
    states = [
        cs(
            tenant,
            "=cmd()",
            1,
            "steady_active",
            40000,
            d("2025-04-01"),
            count=3,
            first=d("2024-12-01"),
        ),
        cs(
            tenant,
            "顧客-漢字",
            1,
            "steady_active",
            60000,
            d("2025-04-02"),
            count=4,
            first=d("2024-11-01"),
        ),
        cs(
            tenant,
            "+SUM(1)",
            1,
            "steady_active",
            20000,
            d("2025-04-03"),
            count=2,
            first=d("2024-12-24"),
        ),
    ]
    await processed(service_pool, await publish(producer, states))
    headers = auth
    url = "/v1/segments/steady_active/customers"
    # customer master data from a customers import, joined into lists and exports
    await service_pool.execute(
        "INSERT INTO customers (tenant_id, customer_id, name, kana, email, mail_consent)"
        " VALUES ($1, '顧客-漢字', '=HYPERLINK(\"x\")', 'ヤマダ', 'yamada@example.jp', false)",
        tenant,
    )
    listed = (await client.get(url, headers=headers)).json()["items"]
    assert (
        listed[0]["customer_name"] == '=HYPERLINK("x")'
        and listed[0]["email"] == "yamada@example.jp"
    )

    utf8 = await client.get(url, params={"format": "csv"}, headers=headers)
    assert utf8.status_code == 200
    assert utf8.headers["content-type"].startswith("text/csv; charset=utf-8")
    assert "attachment" in utf8.headers["content-disposition"]
    assert utf8.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(utf8.content.decode("utf-8-sig"), newline="")))
    assert rows[0] == [
        "顧客コード",
        "氏名",
        "フリガナ",
        "メールアドレス",
        "電話番号",
        "郵便番号",
        "住所",
        "DM可否",
        "売上累計",
        "購入回数",
        "初回購入日",
        "最終購入日",
        "在籍期間",
        "離脱期間",
        "顧客層",
    ]
    assert [r[0] for r in rows[1:]] == ["顧客-漢字", "'=cmd()", "'+SUM(1)"]
    assert rows[1][1:4] == [
        '\'=HYPERLINK("x")',
        "ヤマダ",
        "yamada@example.jp",
    ]  # master data joined
    assert rows[1][7] == "不可"
    assert rows[2] == [
        "'=cmd()",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "40000",
        "3",
        "2024-12-01",
        "2025-04-01",
        str((d("2025-04-01") - d("2024-12-01")).days),
        str((TODAY - d("2025-04-01")).days),
        "コツコツ客",
    ]
    assert utf8.content.count(b"\r\n") == 4

    sjis = await client.get(url, params={"format": "csv", "encoding": "cp932"}, headers=headers)
    assert sjis.status_code == 200
    assert "shift_jis" in sjis.headers["content-type"].lower()
    assert not sjis.content.startswith(b"\xef\xbb\xbf")
    sjis_rows = list(csv.reader(io.StringIO(sjis.content.decode("cp932"), newline="")))
    assert sjis_rows == rows
    assert "顧客コード".encode("cp932") in sjis.content

    english = await client.get(
        url, params={"format": "csv", "header": "en", "bom": "false", "limit": 1}, headers=headers
    )
    lines = english.content.decode("utf-8").splitlines()
    assert lines[0].startswith("customer_id,name,kana,email") and lines[1].endswith(
        ",steady_active"
    )
    assert len(lines) == 2

    bad = await client.get(url, params={"format": "csv", "encoding": "latin-1"}, headers=headers)
    assert bad.status_code == 422 and bad.json()["error"]["problems"][0]["field"] == "encoding"


async def test_undecodable_records_go_to_the_dead_letter_topic(
    client, producer, service_pool, tenant, auth
):
    good = cs(tenant, "ok", 1, "first_active", 1000, d("2025-06-01"))
    bad_segment = cs(tenant, "odd", 1, "first_active", 1000, d("2025-06-01")).model_dump(
        mode="json"
    )
    bad_segment["to_segment"] = "vip_active"
    await processed(
        service_pool,
        await publish(
            producer,
            [
                (message_key(tenant, "junk"), b"not json at all"),
                (message_key(tenant, "odd"), json.dumps(bad_segment).encode()),
                good,
            ],
        ),
    )
    letters = {
        key: json.loads(payload)
        for topic, key, payload in await pending_outbox(service_pool)
        if topic == DEADLETTER and key.startswith(f"{tenant}:")
    }
    assert set(letters) == {f"{tenant}:junk", f"{tenant}:odd"}
    assert letters[f"{tenant}:junk"]["service"] == "reports"
    assert letters[f"{tenant}:junk"]["value"] == "not json at all"
    assert "vip_active" in letters[f"{tenant}:odd"]["reason"]
    body = (await client.get("/v1/portfolio", headers=auth)).json()
    assert counts(body) == {"first_active": (1, 1000)}


async def test_rules_are_versioned(client, service_pool, tenant, auth):
    headers = auth
    defaults = (await client.get("/v1/rules", headers=headers)).json()
    assert defaults["version"] == 0
    assert (
        defaults["rules"]["lapse_days"] == 240
        and Decimal(defaults["rules"]["amount_border"]) == 70000
    )

    rules = {**defaults["rules"], "amount_border": "50000", "lapse_days": 180}
    saved = await client.put("/v1/rules", json=rules, headers=headers)
    assert saved.status_code == 200
    assert saved.json()["version"] == 1 and saved.json()["rules"]["lapse_days"] == 180
    assert (
        await service_pool.fetchval(
            "SELECT rules_version FROM tenants WHERE tenant_id = $1", tenant
        )
        == 1
    )

    bad = await client.put(
        "/v1/rules", json={**rules, "loyal_tenure_days": 30, "lapse_days": -1}, headers=headers
    )
    assert bad.status_code == 422
    problems = {p["field"]: p["reason"] for p in bad.json()["error"]["problems"]}
    assert set(problems) == {"lapse_days"}
    bad = await client.put("/v1/rules", json={**rules, "loyal_tenure_days": 30}, headers=headers)
    assert bad.json()["error"]["problems"] == [
        {
            "field": "loyal_tenure_days",
            "reason": "loyal_tenure_days must be greater than fledgling_tenure_days",
        }
    ]
    not_json = await client.put(
        "/v1/rules", content=b"{", headers={**headers, "content-type": "application/json"}
    )
    assert not_json.status_code == 422

    current = (await client.get("/v1/rules", headers=headers)).json()
    assert current["version"] == 1 and current["rules"]["lapse_days"] == 180
    assert current["applied_version"] == 0  # the classifier has not applied it yet


# Each body as its route declares it: something else is 422 invalid_request naming the field.
WRONG_BODIES = [
    ("PUT", "/v1/rules", {"lapse_days": -1}, "lapse_days"),
    ("POST", "/v1/rules/preview", {"colour": "red"}, "colour"),
    ("PUT", "/v1/rfm/thresholds", {"frequency": [1, 2]}, "frequency.2"),
    ("POST", "/v1/ltv/simulations", {"horizons": [0]}, "horizons"),
    ("POST", "/v1/dm-tables", {"scope": "all"}, "name"),
    ("PUT", "/v1/dm-tables/1/months/2025-03", {"segments": "x"}, "segments"),
    (
        "PUT",
        "/v1/dashboard/settings",
        {"first_to_fledgling_target": 2},
        "first_to_fledgling_target",
    ),
    ("POST", "/v1/people", {"email": "a@b.jp", "role": "boss"}, "role"),
    ("PATCH", "/v1/people/a@b.jp", {"enabled": "perhaps"}, "enabled"),
    ("POST", "/v1/keys", {"role": "read", "name": "x" * 201}, "name"),
]


@pytest.mark.parametrize(("method", "path", "body", "field"), WRONG_BODIES)
async def test_a_body_that_is_not_the_model_is_invalid_request(
    client, auth, method, path, body, field
):
    wrong = await client.request(method, path, json=body, headers=auth)
    assert wrong.status_code == 422, wrong.text
    error = wrong.json()["error"]
    assert error["code"] == "invalid_request"
    assert field in {p["field"] for p in error["problems"]}, error
    missing = await client.request(method, path, headers=auth)
    if path == "/v1/ltv/simulations":  # its body is optional: the baseline
        assert missing.status_code == 200, missing.text
    else:
        assert missing.status_code == 422
        assert missing.json()["error"]["problems"] == [
            {"field": "body", "reason": "Field required"}
        ]
    template = re.sub(r"/1/months/2025-03$", "/{table_id}/months/{month}", path)
    template = template.replace("/a@b.jp", "/{email}")
    documented = app.openapi()["paths"][template][method.lower()]["requestBody"]
    assert "#/components/schemas/" in json.dumps(documented["content"]["application/json"])


async def test_dashboard_target_is_saved(client, auth):
    saved = await client.put(
        "/v1/dashboard/settings", json={"first_to_fledgling_target": "0.4"}, headers=auth
    )
    assert saved.json() == {"first_to_fledgling_target": "0.4"}
    shown = (await client.get("/v1/dashboard/settings", headers=auth)).json()
    assert Decimal(shown["first_to_fledgling_target"]) == Decimal("0.4")


async def test_health_readiness_metrics_and_dashboard(client):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {
        "database": True,
        "consumer": True,
    }
    metrics = (await client.get("/metrics")).text
    assert "kizuna_reports_states_applied_total" in metrics
    page = await client.get("/")
    assert page.status_code == 200 and "顧客ポートフォリオ" in page.text
    for asset in ("/static/js/app.js", "/static/style.css", "/static/vendor/chart.umd.min.js"):
        assert (await client.get(asset)).status_code == 200
    missing = await client.get("/nope")
    assert missing.status_code == 404 and "error" in missing.json()
