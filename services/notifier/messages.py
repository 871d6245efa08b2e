"""What the notifier says and how it goes on the wire: templates (Japanese by default), the
e-mail message with its deterministic Message-ID, the webhook body and its HMAC signature.

Pure: no I/O, no clock. Everything a delivery sends is rendered once, when the alert is
raised, and stored with the delivery, so a resend carries the very same bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from email.header import Header
from email.message import Message
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr, parseaddr

from shared.cpm import SEGMENT_NAMES_JA

# --- Templates -----------------------------------------------------------------------------------

# The fields a template may use, with what they hold. `{name}` is the customer's name from the
# customer master data (``store.customer_names``), or the customer id when there is none.
FIELDS: dict[str, str] = {
    "name": "顧客名 (customer name; the customer id until customer master data exists)",
    "customer_id": "顧客番号",
    "segment": "segment id, e.g. loyal_lapsed",
    "segment_ja": "顧客層, e.g. 優良離脱客",
    "last_purchase_on": "最終購入日 (YYYY-MM-DD)",
    "branch": "店舗 (home branch id; 全社 when unknown)",
    "total_amount": "累計購入金額 (e.g. 154,000)",
    "effective_on": "the day the customer entered the segment / lapsed / was noticed",
    "due_on": "sequence steps: the day the step is due",
    "silence_days": "days since the last purchase",
    "usual_gap_days": "at-risk: the customer's usual days between purchases",
}

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

DEFAULT_TEMPLATES: dict[str, tuple[str, str]] = {
    "lapsed": (
        "【離脱】{segment_ja} {name} 様（{branch}）",
        "{name} 様（顧客番号 {customer_id}）が{segment_ja}になりました。\n"
        "最終購入日: {last_purchase_on}（{silence_days}日前）\n"
        "累計購入金額: {total_amount}円\n"
        "店舗: {branch}\n"
        "\n"
        "売り込みではなく、サービスでお客様との絆を取り戻しましょう。\n"
        "本日のフォロー一覧: /v1/followups?due=today\n",
    ),
    "at_risk": (
        "【離脱予兆】{segment_ja} {name} 様 — 最終購入から{silence_days}日（{branch}）",
        "{name} 様（顧客番号 {customer_id}、{segment_ja}）は最終購入日 {last_purchase_on} から"
        " {silence_days} 日、ご購入がありません。\n"
        "いつもの購入間隔はおよそ {usual_gap_days} 日です。離脱する前にご連絡をお願いします。\n"
        "累計購入金額: {total_amount}円\n"
        "店舗: {branch}\n",
    ),
}


def render(template: str, fields: Mapping[str, object]) -> str:
    """Fill ``{field}`` placeholders. A placeholder without a value stays as written, so a typo
    shows in the text instead of failing a batch. Unlike ``str.format``, nothing is evaluated:
    no attribute or index access, no format specs; values are plain text."""
    return PLACEHOLDER.sub(
        lambda m: str(fields[m[1]]) if fields.get(m[1]) is not None else m[0], template
    )


def unknown_fields(template: str) -> list[str]:
    """Placeholders a template uses that no alert or step fills (for validating input)."""
    return sorted({m for m in PLACEHOLDER.findall(template) if m not in FIELDS})


def yen(amount: Decimal | int) -> str:
    return f"{Decimal(amount):,.0f}"


def customer_fields(
    *,
    customer_id: str,
    name: str | None,
    segment: str | None,
    last_purchase_on: date | None,
    branch_id: str | None,
    total_amount: Decimal,
    today: date | None = None,
    **extra: object,
) -> dict[str, str]:
    """The template fields of one customer."""
    fields = {
        "name": name or customer_id,
        "customer_id": customer_id,
        "segment": segment or "",
        "segment_ja": SEGMENT_NAMES_JA.get(segment or "", segment or ""),
        "last_purchase_on": last_purchase_on.isoformat() if last_purchase_on else "—",
        "branch": branch_id or "全社",
        "total_amount": yen(total_amount),
    }
    if today is not None and last_purchase_on is not None:
        fields["silence_days"] = str((today - last_purchase_on).days)
    for key, value in extra.items():
        if value is not None:
            fields[key] = value.isoformat() if isinstance(value, date) else str(value)
    return fields


# --- E-mail --------------------------------------------------------------------------------------

MESSAGE_ID_DOMAIN = "kizuna.notifier"


def message_id(delivery_id: str) -> str:
    """The e-mail's Message-ID: the delivery's id, so every send of it carries the same one."""
    return f"<{delivery_id}@{MESSAGE_ID_DOMAIN}>"


def email_message(
    *,
    delivery_id: str,
    sender: str,
    recipients: list[str],
    subject: str,
    body: str,
    created_at: datetime,
) -> Message:
    """The message as sent; the same delivery always gives the same bytes.

    Built with ``email.header.Header`` (the compat32 API) on purpose: the newer
    ``EmailMessage`` folder drops the space at a fold between encoded words, which turns
    "2026-11-23 — 2件" into "2026-11-23— 2件" in every mail client."""
    msg = MIMEText(body, "plain", "utf-8")  # base64: Japanese passes any relay, 8BITMIME or not
    msg["Message-ID"] = message_id(delivery_id)
    msg["Date"] = format_datetime(created_at)
    msg["From"] = formataddr(parseaddr(sender), "utf-8")
    msg["To"] = ", ".join(recipients)
    msg["Subject"] = Header(subject, "utf-8")
    msg["X-Kizuna-Delivery"] = delivery_id
    return msg


def digest_text(
    branch_id: str | None, day: date, items: list[tuple[str, Decimal, date | None]]
) -> tuple[str, str]:
    """Subject and text of a morning digest: ``items`` are (alert subject, total, last
    purchase), already most valuable first."""
    where = branch_id or "全社"
    subject = f"【フォロー一覧】{where} {day.isoformat()} — {len(items)}件"
    lines = [f"{where} の本日のフォロー対象です（価値の高い順）。", ""]
    for n, (line, total, last) in enumerate(items, 1):
        lines.append(f"{n}. {line}")
        lines.append(f"    累計 {yen(total)}円 / 最終購入 {last.isoformat() if last else '—'}")
    lines += ["", "本日のフォロー一覧: /v1/followups?due=today", ""]
    return subject, "\n".join(lines)


# --- Webhooks ------------------------------------------------------------------------------------

EVENT_ID_HEADER = "X-Kizuna-Event-Id"
SIGNATURE_HEADER = "X-Kizuna-Signature"


def webhook_body(delivery_id: str, event_type: str, tenant_id: str, alert: Mapping) -> str:
    """The JSON body, compact and with sorted keys: rendered once, stored, resent unchanged."""
    return json.dumps(
        {"id": delivery_id, "type": event_type, "tenant_id": tenant_id, "alert": dict(alert)},
        ensure_ascii=False,
        separators=(",", ":"),
        sort_keys=True,
        default=str,
    )


def sign(secret: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of the exact body bytes with the tenant's secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, signature: str | None) -> bool:
    """What a receiver does: recompute and compare in constant time."""
    return signature is not None and hmac.compare_digest(sign(secret, body), signature)


def webhook_headers(delivery_id: str, body: bytes, secret: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "kizuna-notifier",
        EVENT_ID_HEADER: delivery_id,
        SIGNATURE_HEADER: sign(secret, body),
    }
