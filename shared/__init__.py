"""What every Kizuna service shares: contracts, CPM rules, settings, Kafka and database helpers."""
