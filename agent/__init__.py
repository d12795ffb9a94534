"""The node daemon: poll collectors, batch, spool, publish over MQTT (``kwatt agent``), and
``kwatt doctor``, which finds the collectors a node can run (docs/DESIGN.md §1, §5)."""
