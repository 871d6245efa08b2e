"""Ingest: purchase events over HTTP into Kafka, acknowledged only once the broker has them."""
