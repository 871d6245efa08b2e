"""Kizuna's four services (ingest, classifier, reports, notifier) and the `kizuna` command."""
