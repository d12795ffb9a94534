"""``kwatt ingest``: MQTT to InfluxDB, at least once, with dead letters and per-node seq and clock
figures (docs/DESIGN.md §5, docs/delivery.md)."""
