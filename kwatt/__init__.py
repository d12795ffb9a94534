"""kwatt: energy telemetry for AI accelerators (docs/DESIGN.md). Import submodules explicitly.

One import namespace; each room is a folder at the top of the repository, linked here:

* ``kwatt.wire``: the wire contract (samples and units, line protocol, topics, the JSON documents,
  the MQTT and InfluxDB client settings) that every other room speaks;
* ``kwatt.collectors``: one module (or folder) per telemetry source;
* ``kwatt.agent``: the node daemon (runtime, spool, batching, MQTT, sd_notify, doctor);
* ``kwatt.ingest``: MQTT to InfluxDB; ``kwatt.live``: ``kwatt top``; ``kwatt.analytics``: numpy;
* ``kwatt.emulators``: emulated hardware; ``kwatt.demo``: the demo and its throw-away servers;
* ``kwatt.cli``: the ``kwatt`` command.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__: str = version("kwatt")
except PackageNotFoundError:
    __version__ = "0+unknown"

__all__ = ["__version__"]
