"""The wire contract every room speaks (docs/DESIGN.md §3-§4): the sample model and its units,
the line protocol, the topics, the JSON documents, and the MQTT and InfluxDB client settings."""
