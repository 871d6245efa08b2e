"""The reports service's HTTP routers by area (the rest still lives in services/reports/app.py
until the reports split)."""
