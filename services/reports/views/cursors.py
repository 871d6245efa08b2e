"""The cursor of a customer list (opaque to clients: a keyset of total and customer id)."""

from __future__ import annotations

import base64
import binascii
import json
from decimal import Decimal, InvalidOperation


def encode_cursor(total_amount: Decimal, customer_id: str) -> str:
    """An opaque keyset cursor: the last item's (total, customer_id)."""
    raw = json.dumps([str(total_amount), customer_id], ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[Decimal, str]:
    """The (total, customer_id) of a cursor; ``ValueError`` when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        total, customer_id = json.loads(raw)
        if not isinstance(customer_id, str):
            raise ValueError("bad customer id")
        return Decimal(total), customer_id
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError, InvalidOperation) as exc:
        raise ValueError("not a cursor returned by this API") from exc
