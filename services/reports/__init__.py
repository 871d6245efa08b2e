"""The reports service: the live portfolio, its daily history, segment lists and the dashboard."""
