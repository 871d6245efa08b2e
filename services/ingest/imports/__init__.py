"""CSV imports: a sales file becomes purchase events, a customer file rows of ``customers``;
every rejected row recorded with its line, column, value and reason.

- routes.py — the HTTP API (``/v1/imports``): upload, dry run, progress, rejections, cancel.
- runner.py — running an import: claim, read and stage, publish in date order, checkpoints.
- store.py — all its SQL (``imports``, rejections, staging tables, ``customers``).
- views.py — what the API and the command line show of an import.
- Reading a file (pure, streaming): dialect.py (encoding, delimiter), headers.py (which column
  is which field), cells.py (amounts, dates), reader.py (lines and records), sales.py,
  customers.py, preview.py (the dry run).
"""
