"""What the reports' HTTP API returns, apart from the arithmetic: response bodies, amounts as
text, cursors, CSV."""

from .csv import (
    CSV_HEADERS,
    ENCODINGS,
    FORMULA_STARTS,
    csv_encoding,
    csv_row,
    csv_text,
    encode_csv,
    neutralise,
)
from .cursors import decode_cursor, encode_cursor
from .dashboard import preview_body
from .dm import DM_CSV_HEADERS, dm_body, dm_csv
from .history import history_body, transitions_body
from .ltv import simulation_body
from .portfolio import CONTACT_FIELDS, amount_text, customer_body, portfolio_body, share
from .questions import questions_body, sales_split, vip_item
from .rfm import RFM_CSV_EXTRA, rfm_cells_body, rfm_item

__all__ = [
    "CONTACT_FIELDS",
    "CSV_HEADERS",
    "DM_CSV_HEADERS",
    "ENCODINGS",
    "FORMULA_STARTS",
    "RFM_CSV_EXTRA",
    "amount_text",
    "csv_encoding",
    "csv_row",
    "csv_text",
    "customer_body",
    "decode_cursor",
    "dm_body",
    "dm_csv",
    "encode_csv",
    "encode_cursor",
    "history_body",
    "neutralise",
    "portfolio_body",
    "preview_body",
    "questions_body",
    "rfm_cells_body",
    "rfm_item",
    "sales_split",
    "share",
    "simulation_body",
    "transitions_body",
    "vip_item",
]
