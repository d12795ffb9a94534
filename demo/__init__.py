"""``kwatt demo``: the whole pipeline on emulated hardware, with private throw-away servers
(Mosquitto, InfluxDB, VictoriaMetrics) that the tests and benchmarks use too."""
