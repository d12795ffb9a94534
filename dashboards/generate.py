"""Build kwatt's Grafana dashboards (dashboards/json/*.json) from their descriptions.

    .venv/bin/python dashboards/generate.py           # rewrite dashboards/json/*.json
    .venv/bin/python dashboards/generate.py --check   # exit 1 if a JSON file is out of date

The JSON files are what Grafana imports (and what provisioning points at); they are generated so that
every panel gets the same datasource variable, template-variable filters and a unit, and are checked in
so that no Python is needed to import them. tests/system/test_dashboards.py type-checks them against
Grafana's published schema (@grafana/schema) and runs every query against a real InfluxDB.

Queries are InfluxQL (InfluxDB 1.x, 2.x through its v1 API, 3.x). Template variables are multi-value
with an "All" of ``.*`` and are used only inside regular expressions (``=~ /^$node$/``), which is how
Grafana interpolates a multi-value variable for InfluxDB.

One module per dashboard (``fleet_dashboard``, ``node_dashboard``, ``efficiency_dashboard``,
``agents_dashboard``) on the shared building blocks of ``blocks``; this script renders each to
``json/`` (:data:`DASHBOARDS`). dashboards/README.md says why the JSON is not built with Grafana's
grafana-foundation-sdk.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from agents_dashboard import agent_health
from blocks import Json
from efficiency_dashboard import efficiency
from fleet_dashboard import fleet
from node_dashboard import node_detail

HERE = Path(__file__).resolve().parent


OUT = HERE / "json"


DASHBOARDS: dict[str, Callable[[], Json]] = {
    "kwatt-fleet.json": fleet,
    "kwatt-node.json": node_detail,
    "kwatt-efficiency.json": efficiency,
    "kwatt-agents.json": agent_health,
}


def render(build: Callable[[], Json]) -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="fail if a JSON file is out of date")
    args = p.parse_args(argv)
    stale = []
    OUT.mkdir(exist_ok=True)
    for name, build in DASHBOARDS.items():
        path = OUT / name
        text = render(build)
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print(
            f"out of date: {', '.join(stale)}; run python dashboards/generate.py", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
