"""Build kwatt's Grafana dashboards (dashboards/json/*.json) from this one description.

    .venv/bin/python dashboards/generate.py           # rewrite dashboards/json/*.json
    .venv/bin/python dashboards/generate.py --check   # exit 1 if a JSON file is out of date

The JSON files are what Grafana imports (and what provisioning points at); they are generated so that
every panel gets the same datasource variable, template-variable filters and a unit, and are checked in
so that no Python is needed to import them. tests/test_dashboards.py type-checks them against
Grafana's published schema (@grafana/schema) and runs every query against a real InfluxDB.

Queries are InfluxQL (InfluxDB 1.x, 2.x through its v1 API, 3.x). Template variables are multi-value
with an "All" of ``.*`` and are used only inside regular expressions (``=~ /^$node$/``), which is how
Grafana interpolates a multi-value variable for InfluxDB.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "json"
SCHEMA_VERSION = 41

Json = dict[str, Any]

DS: Json = {"type": "influxdb", "uid": "${datasource}"}

# Filters (template variables are regexes; "All" is .*)
F_SITE = '"site" =~ /^$site$/'
F_NODE = f'{F_SITE} AND "node" =~ /^$node$/'
F_DEV = f'{F_NODE} AND "vendor" =~ /^$vendor$/ AND "model" =~ /^$model$/'
F_SVC = f'{F_SITE} AND "service" =~ /^$service$/'
F_SVC_NODE = f'{F_NODE} AND "service" =~ /^$service$/'
#: The efficiency dashboard's phase filter (a window with no verdict has no phase tag: "All" keeps it).
F_SVC_PHASE = f'{F_SVC} AND "phase" =~ /^$phase$/'


# ------------------------------------------------------------------------------ building blocks


def target(ref: str, query: str, alias: str | None = None, fmt: str = "time_series") -> Json:
    t: Json = {
        "refId": ref,
        "datasource": DS,
        "query": query,
        "rawQuery": True,
        "resultFormat": fmt,
    }
    if alias is not None:
        t["alias"] = alias
    return t


class Layout:
    """Places panels left to right on Grafana's 24-column grid, wrapping to a new row."""

    def __init__(self) -> None:
        self.x = 0
        self.y = 0
        self.row_h = 0
        self.next_id = 1

    def place(self, w: int, h: int) -> Json:
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        pos = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.x += w
        self.row_h = max(self.row_h, h)
        return pos

    def newline(self) -> None:
        if self.x:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0

    def row(self, title: str) -> Json:
        self.newline()
        pos = {"h": 1, "w": 24, "x": 0, "y": self.y}
        self.y += 1
        panel = {
            "type": "row",
            "title": title,
            "id": self.next_id,
            "gridPos": pos,
            "collapsed": False,
            "panels": [],
        }
        self.next_id += 1
        return panel

    def panel(
        self,
        kind: str,
        title: str,
        w: int,
        h: int,
        targets: list[Json],
        *,
        unit: str,
        description: str,
        min_value: float | None = None,
        max_value: float | None = None,
        decimals: int | None = None,
        thresholds: list[tuple[float | None, str]] | None = None,
        mappings: list[Json] | None = None,
        overrides: list[Json] | None = None,
        options: Json | None = None,
        custom: Json | None = None,
        time_from: str | None = None,
        transformations: list[Json] | None = None,
    ) -> Json:
        defaults: Json = {"unit": unit}
        if min_value is not None:
            defaults["min"] = min_value
        if max_value is not None:
            defaults["max"] = max_value
        if decimals is not None:
            defaults["decimals"] = decimals
        steps = thresholds or [(None, "green")]
        defaults["thresholds"] = {
            "mode": "absolute",
            "steps": [{"color": color, "value": value} for value, color in steps],
        }
        if mappings:
            defaults["mappings"] = mappings
        if custom:
            defaults["custom"] = custom
        p: Json = {
            "type": kind,
            "title": title,
            "description": description,
            "id": self.next_id,
            "gridPos": self.place(w, h),
            "datasource": DS,
            "targets": targets,
            "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
            "options": options or {},
        }
        if time_from is not None:
            p["timeFrom"] = time_from
        if transformations:
            p["transformations"] = transformations
        self.next_id += 1
        return p


#: Hide the Time column of a table whose query uses several selectors or aggregates (InfluxQL then
#: returns the start of the range, not a point's time).
HIDE_TIME: list[Json] = [
    {"id": "organize", "options": {"excludeByName": {"Time": True}, "renameByName": {}}}
]


def stat_options(calc: str = "lastNotNull", text_mode: str = "auto") -> Json:
    return {
        "reduceOptions": {"calcs": [calc], "fields": "", "values": False},
        "colorMode": "value",
        "graphMode": "none",
        "justifyMode": "auto",
        "textMode": text_mode,
        "orientation": "auto",
    }


def ts_options() -> Json:
    return {
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }


def line(fill: int = 0) -> Json:
    return {"drawStyle": "line", "lineWidth": 1, "fillOpacity": fill, "spanNulls": False}


def dashed(regex: str) -> Json:
    """An override drawing series whose name matches ``regex`` as a dashed target line."""
    return {
        "matcher": {"id": "byRegexp", "options": regex},
        "properties": [
            {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
            {"id": "custom.lineWidth", "value": 2},
        ],
    }


def unit_override(field: str, unit: str) -> Json:
    return {
        "matcher": {"id": "byName", "options": field},
        "properties": [{"id": "unit", "value": unit}],
    }


def variable(
    name: str, label: str, query: str, *, multi: bool = True, description: str = ""
) -> Json:
    return {
        "type": "query",
        "name": name,
        "label": label,
        "description": description,
        "datasource": DS,
        "query": query,
        "refresh": 2,
        "includeAll": True,
        "allValue": ".*",
        "multi": multi,
        "sort": 1,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "regex": "",
        "hide": 0,
    }


DATASOURCE_VAR: Json = {
    "type": "datasource",
    "name": "datasource",
    "label": "InfluxDB",
    "description": "The InfluxDB (InfluxQL) datasource holding kwatt's database",
    "query": "influxdb",
    "refresh": 1,
    "regex": "",
    "hide": 0,
    "options": [],
}

V_SITE = variable("site", "Site", 'SHOW TAG VALUES FROM "agent" WITH KEY = "site"')
V_NODE = variable("node", "Node", f'SHOW TAG VALUES FROM "agent" WITH KEY = "node" WHERE {F_SITE}')
V_VENDOR = variable(
    "vendor", "Vendor", f'SHOW TAG VALUES FROM "accel" WITH KEY = "vendor" WHERE {F_NODE}'
)
V_MODEL = variable(
    "model",
    "Model",
    f'SHOW TAG VALUES FROM "accel" WITH KEY = "model" WHERE {F_NODE} AND "vendor" =~ /^$vendor$/',
)
V_SERVICE = variable(
    "service", "Service", f'SHOW TAG VALUES FROM "serving" WITH KEY = "service" WHERE {F_SITE}'
)
V_SERVICE_EFF = variable(
    "service",
    "Service",
    f'SHOW TAG VALUES FROM "efficiency" WITH KEY = "service" WHERE {F_SITE}',
)
V_PHASE = variable(
    "phase",
    "Phase",
    f'SHOW TAG VALUES FROM "efficiency" WITH KEY = "phase" WHERE {F_SVC}',
    description="K-Cloud phase of the verdicts (phase1_npu, phase2_dram_pim, "
    "phase3_nvm_analog_pim): every phase that has data",
)


def dashboard(
    uid: str, title: str, description: str, panels: list[Json], variables: list[Json]
) -> Json:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["kwatt", "energy", "accelerators"],
        "editable": True,
        "graphTooltip": 1,
        "timezone": "browser",
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "links": [
            {
                "title": "kwatt dashboards",
                "type": "dashboards",
                "tags": ["kwatt"],
                "asDropdown": True,
                "includeVars": True,
                "keepTime": True,
                "icon": "external link",
                "targetBlank": False,
                "tooltip": "",
                "url": "",
            }
        ],
        "annotations": {"list": []},
        "templating": {"list": [DATASOURCE_VAR, *variables]},
        "panels": panels,
    }


# ------------------------------------------------------------------------------ dashboards


def ratio_panel(lay: Layout, title: str, height: int, description: str, where: str = F_SVC) -> Json:
    """Work per joule relative to the GPU baseline per service and phase, with the target ratio
    dashed (on the fleet overview and the efficiency dashboards)."""
    return lay.panel(
        "timeseries",
        title,
        12,
        height,
        [
            target(
                "A",
                'SELECT mean("ratio_vs_baseline") AS "ratio", mean("target_ratio") AS "target" '
                f'FROM "efficiency" WHERE {where} AND $timeFilter '
                'GROUP BY time($__interval), "service", "phase" fill(none)',
                alias="$tag_service $tag_phase $col",
            )
        ],
        unit="suffix:×",
        description=description,
        min_value=0,
        custom=line(),
        overrides=[dashed(".*target$")],
        options=ts_options(),
    )


def _work_rate(field: str) -> str:
    """Fleet work rate per service: per-series rate of a serving counter, summed per service."""
    return (
        f'SELECT sum("rate") FROM (SELECT non_negative_derivative(last("{field}"), 1s) AS "rate" '
        f'FROM "serving" WHERE {F_SVC_NODE} AND $timeFilter GROUP BY time($__interval), * '
        'fill(none)) GROUP BY time($__interval), "service" fill(none)'
    )


def fleet() -> Json:
    lay = Layout()
    panels = [
        lay.panel(
            "stat",
            "Nodes reporting",
            4,
            4,
            [
                target(
                    "A",
                    'SELECT count("seq") AS "nodes" FROM (SELECT last("seq") AS "seq" FROM "agent" '
                    f'WHERE {F_NODE} AND $timeFilter GROUP BY "node")',
                )
            ],
            unit="short",
            description="Nodes whose agent published a batch in the last 2 minutes.",
            time_from="2m",
            decimals=0,
            options=stat_options(),
        ),
        lay.panel(
            "stat",
            "Devices reporting, by vendor",
            6,
            4,
            [
                target(
                    "A",
                    'SELECT count("power_w") FROM (SELECT last("power_w") AS "power_w" FROM "accel" '
                    f'WHERE {F_DEV} AND $timeFilter GROUP BY "node", "device", "vendor") '
                    'GROUP BY "vendor"',
                    alias="$tag_vendor",
                )
            ],
            unit="short",
            description="Accelerators that reported power in the last 2 minutes, per vendor.",
            time_from="2m",
            decimals=0,
            options=stat_options(text_mode="value_and_name"),
        ),
        lay.panel(
            "stat",
            "Accelerator power now",
            5,
            4,
            [
                target(
                    "A",
                    'SELECT sum("power_w") FROM (SELECT last("power_w") AS "power_w" FROM "accel" '
                    f'WHERE {F_DEV} AND $timeFilter GROUP BY "node", "device")',
                )
            ],
            unit="watt",
            description="Sum of every selected accelerator's latest power reading (last 2 min).",
            time_from="2m",
            options=stat_options(),
        ),
        lay.panel(
            "stat",
            "Accelerator energy today",
            5,
            4,
            [
                target(
                    "A",
                    'SELECT sum("energy") FROM (SELECT integral("power_w", 1h) AS "energy" '
                    f'FROM "accel" WHERE {F_DEV} AND $timeFilter GROUP BY "node", "device")',
                )
            ],
            unit="watth",
            description="Energy since midnight: power_w integrated over time per device "
            "(trapezoid), summed. The analytics report uses energy counters where devices have "
            "them.",
            time_from="now/d",
            options=stat_options(),
        ),
        lay.panel(
            "stat",
            "Throughput now",
            4,
            4,
            [target("A", _work_rate("tokens_total"), alias="$tag_service")],
            unit="suffix: tok/s",
            description="Generated tokens per second, per service (serving runtimes' counters).",
            options=stat_options(text_mode="value_and_name"),
        ),
        lay.panel(
            "timeseries",
            "Accelerator power by vendor",
            12,
            8,
            [
                target(
                    "A",
                    'SELECT sum("power") FROM (SELECT mean("power_w") AS "power" FROM "accel" '
                    f"WHERE {F_DEV} AND $timeFilter GROUP BY time($__interval), "
                    '"node", "device", "vendor" fill(none)) GROUP BY time($__interval), "vendor" '
                    "fill(none)",
                    alias="$tag_vendor",
                )
            ],
            unit="watt",
            description="Total accelerator power per vendor.",
            min_value=0,
            custom=line(10),
            options=ts_options(),
        ),
        lay.panel(
            "timeseries",
            "Throughput by service",
            12,
            8,
            [target("A", _work_rate("tokens_total"), alias="$tag_service")],
            unit="suffix: tok/s",
            description="Generated tokens per second per service, all selected nodes.",
            min_value=0,
            custom=line(),
            options=ts_options(),
        ),
        lay.panel(
            "timeseries",
            "Work per joule by service, against the target",
            12,
            8,
            [
                target(
                    "A",
                    'SELECT mean("work_per_j") AS "work/J", mean("work_per_j") / '
                    'mean("ratio_vs_baseline") * mean("target_ratio") AS "target" '
                    f'FROM "efficiency" WHERE {F_SVC} AND $timeFilter '
                    'GROUP BY time($__interval), "service" fill(none)',
                    alias="$tag_service $col",
                )
            ],
            unit="suffix: work/J",
            description="Useful work per joule (analytics' efficiency windows). The dashed line "
            "is the target: the GPU baseline's work per joule times the target ratio.",
            min_value=0,
            custom=line(),
            overrides=[dashed(".*target$")],
            options=ts_options(),
        ),
        ratio_panel(
            lay,
            "NPU vs GPU baseline, per service",
            8,
            "Work per joule relative to the GPU baseline on the same service "
            "(1× = as efficient as the GPU); dashed: the phase target.",
        ),
        lay.panel(
            "table",
            "Nodes now",
            24,
            8,
            [
                target(
                    "A",
                    'SELECT sum("power") AS "power", mean("util") AS "utilization", '
                    'max("temp") AS "hottest", count("power") AS "devices" FROM (SELECT '
                    'last("power_w") AS "power", last("util_ratio") AS "util", last("temp_c") '
                    f'AS "temp" FROM "accel" WHERE {F_DEV} AND $timeFilter '
                    'GROUP BY "node", "device") GROUP BY "node"',
                    fmt="table",
                )
            ],
            unit="watt",
            description="Latest readings per node (last 2 minutes).",
            time_from="2m",
            transformations=HIDE_TIME,
            overrides=[
                unit_override("utilization", "percentunit"),
                unit_override("hottest", "celsius"),
                unit_override("devices", "short"),
            ],
            options={"showHeader": True, "cellHeight": "sm"},
        ),
    ]
    return dashboard(
        "kwatt-fleet",
        "kwatt · Fleet overview",
        "Nodes and devices online, power, throughput and work per joule against the targets.",
        panels,
        [V_SITE, V_NODE, V_VENDOR, V_MODEL, V_SERVICE],
    )


def _per_device(field: str, agg: str = "mean") -> str:
    return (
        f'SELECT {agg}("{field}") FROM "accel" WHERE {F_DEV} AND $timeFilter '
        'GROUP BY time($__interval), "node", "device" fill(none)'
    )


def node_detail() -> Json:
    lay = Layout()
    dev_alias = "$tag_node $tag_device"
    panels = [
        lay.panel(
            "timeseries",
            "Utilization per device",
            12,
            8,
            [target("A", _per_device("util_ratio"), alias=dev_alias)],
            unit="percentunit",
            description="Busy share of each accelerator.",
            min_value=0,
            max_value=1,
            custom=line(),
            options=ts_options(),
        ),
        lay.panel(
            "timeseries",
            "Power per device",
            12,
            8,
            [target("A", _per_device("power_w"), alias=dev_alias)],
            unit="watt",
            description="Electrical power of each accelerator.",
            min_value=0,
            custom=line(),
            options=ts_options(),
        ),
        lay.panel(
            "timeseries",
            "Temperature per device",
            12,
            8,
            [target("A", _per_device("temp_c", "max"), alias=dev_alias)],
            unit="celsius",
            description="Hottest sensor of each accelerator.",
            thresholds=[(None, "green"), (75, "yellow"), (85, "red")],
            custom={**line(), "thresholdsStyle": {"mode": "line"}},
            options=ts_options(),
        ),
        lay.panel(
            "timeseries",
            "Core clock per device",
            12,
            8,
            [target("A", _per_device("clock_hz"), alias=dev_alias)],
            unit="hertz",
            description="Core clock; it drops when the device throttles.",
            min_value=0,
            custom=line(),
            options=ts_options(),
        ),
        lay.panel(
            "state-timeline",
            "Throttling",
            12,
            6,
            [target("A", _per_device("throttled", "max"), alias=dev_alias)],
            unit="bool_yes_no",
            description="Whether each device throttled (thermal or power limit) in the interval.",
            thresholds=[(None, "green"), (1, "red")],
            mappings=[
                {
                    "type": "value",
                    "options": {
                        "0": {"text": "ok", "color": "green", "index": 0},
                        "1": {"text": "throttled", "color": "red", "index": 1},
                    },
                }
            ],
            options={"showValue": "never", "mergeValues": True, "rowHeight": 0.9},
        ),
        lay.panel(
            "timeseries",
            "Device memory used",
            12,
            6,
            [target("A", _per_device("mem_used_bytes", "max"), alias=dev_alias)],
            unit="bytes",
            description="Device memory in use.",
            min_value=0,
            custom=line(),
            options=ts_options(),
        ),
        lay.panel(
            "timeseries",
            "Host power",
            12,
            8,
            [
                target(
                    "A",
                    f'SELECT mean("power_w") FROM "host" WHERE {F_NODE} AND $timeFilter '
                    'GROUP BY time($__interval), "node", "source", "zone" fill(none)',
                    alias="$tag_node $tag_source $tag_zone",
                )
            ],
            unit="watt",
            description="Whole-host power by source (RAPL, IPMI DCMI, Redfish, hwmon).",
            min_value=0,
            custom=line(),
            options=ts_options(),
        ),
        lay.panel(
            "timeseries",
            "Requests per second",
            12,
            8,
            [
                target(
                    "A",
                    'SELECT non_negative_derivative(last("requests_total"), 1s) FROM "serving" '
                    f"WHERE {F_SVC_NODE} AND $timeFilter GROUP BY time($__interval), "
                    '"node", "service" fill(none)',
                    alias="$tag_node $tag_service",
                )
            ],
            unit="reqps",
            description="Completed requests per second (serving runtime's counter).",
            min_value=0,
            custom=line(),
            options=ts_options(),
        ),
        lay.panel(
            "timeseries",
            "Tokens per second",
            12,
            8,
            [
                target(
                    "A",
                    'SELECT non_negative_derivative(last("tokens_total"), 1s) FROM "serving" '
                    f"WHERE {F_SVC_NODE} AND $timeFilter GROUP BY time($__interval), "
                    '"node", "service" fill(none)',
                    alias="$tag_node $tag_service",
                )
            ],
            unit="suffix: tok/s",
            description="Generated tokens per second.",
            min_value=0,
            custom=line(),
            options=ts_options(),
        ),
        lay.panel(
            "timeseries",
            "Request latency p50 / p99",
            12,
            8,
            [
                target(
                    "A",
                    'SELECT mean("latency_p50_s") AS "p50", max("latency_p99_s") AS "p99" '
                    f'FROM "serving" WHERE {F_SVC_NODE} AND $timeFilter '
                    'GROUP BY time($__interval), "node", "service" fill(none)',
                    alias="$tag_node $tag_service $col",
                )
            ],
            unit="s",
            description="Median and 99th percentile request latency over the collector window.",
            min_value=0,
            custom=line(),
            overrides=[dashed(".*p99$")],
            options=ts_options(),
        ),
    ]
    return dashboard(
        "kwatt-node",
        "kwatt · Node detail",
        "Per device utilization, power, temperature, clock and throttling; host power; serving "
        "throughput and latency.",
        panels,
        [V_SITE, V_NODE, V_VENDOR, V_MODEL, V_SERVICE],
    )


def efficiency() -> Json:
    lay = Layout()
    verdict = [
        {
            "type": "value",
            "options": {
                "0": {"text": "MISS", "color": "red", "index": 0},
                "1": {"text": "PASS", "color": "green", "index": 1},
            },
        }
    ]
    panels = [
        lay.panel(
            "stat",
            "Target met (latest window)",
            12,
            5,
            [
                target(
                    "A",
                    f'SELECT last("meets_target") FROM "efficiency" WHERE {F_SVC_PHASE} AND '
                    '$timeFilter GROUP BY "service", "phase"',
                    alias="$tag_service $tag_phase",
                )
            ],
            unit="bool_yes_no",
            description="PASS when the latest window's ratio to the GPU baseline reaches the "
            "target ratio.",
            thresholds=[(None, "red"), (1, "green")],
            mappings=verdict,
            options={**stat_options(text_mode="value_and_name"), "colorMode": "background"},
        ),
        lay.panel(
            "stat",
            "Windows meeting the target",
            12,
            5,
            [
                target(
                    "A",
                    f'SELECT mean("meets_target") FROM "efficiency" WHERE {F_SVC_PHASE} AND '
                    '$timeFilter GROUP BY "service", "phase"',
                    alias="$tag_service $tag_phase",
                )
            ],
            unit="percentunit",
            description="Share of the analysis windows in the time range that met the target.",
            min_value=0,
            max_value=1,
            thresholds=[(None, "red"), (0.9, "yellow"), (0.99, "green")],
            options=stat_options(text_mode="value_and_name"),
        ),
        ratio_panel(
            lay,
            "Ratio to the GPU baseline vs the target",
            9,
            "Work per joule relative to the GPU baseline, per service and phase; dashed: the "
            "target ratio of that phase.",
            where=F_SVC_PHASE,
        ),
        lay.panel(
            "timeseries",
            "Work per joule",
            12,
            9,
            [
                target(
                    "A",
                    f'SELECT mean("work_per_j") FROM "efficiency" WHERE {F_SVC} AND $timeFilter '
                    'GROUP BY time($__interval), "service", "window" fill(none)',
                    alias="$tag_service ($tag_window)",
                )
            ],
            unit="suffix: work/J",
            description="Units of work (tokens, inferences or requests, per service) per joule.",
            min_value=0,
            custom=line(),
            options=ts_options(),
        ),
        lay.panel(
            "table",
            "Latest verdicts",
            24,
            8,
            [
                target(
                    "A",
                    'SELECT last("work_per_j") AS "work/J", last("ratio_vs_baseline") AS "ratio", '
                    'last("target_ratio") AS "target", last("meets_target") AS "meets" '
                    f'FROM "efficiency" WHERE {F_SVC_PHASE} AND $timeFilter '
                    'GROUP BY "service", "phase", "window"',
                    fmt="table",
                )
            ],
            unit="suffix: work/J",
            description="The latest efficiency window per service, phase and window length.",
            transformations=HIDE_TIME,
            overrides=[
                unit_override("ratio", "suffix:×"),
                unit_override("target", "suffix:×"),
                {
                    "matcher": {"id": "byName", "options": "meets"},
                    "properties": [
                        {"id": "unit", "value": "bool_yes_no"},
                        {"id": "mappings", "value": verdict},
                        {"id": "custom.cellOptions", "value": {"type": "color-background"}},
                    ],
                },
            ],
            options={"showHeader": True, "cellHeight": "sm"},
        ),
    ]
    return dashboard(
        "kwatt-efficiency",
        "kwatt · Efficiency vs targets",
        "The analytics' efficiency windows: work per joule, ratio to the GPU baseline, target "
        "lines and pass/miss per service and K-Cloud phase.",
        panels,
        [V_SITE, V_SERVICE_EFF, V_PHASE],
    )


def agent_health() -> Json:
    lay = Layout()
    collector = f'{F_NODE} AND "collector" =~ /.+/'
    per_collector = 'GROUP BY time($__interval), "node", "collector" fill(none)'
    batch = f"{F_NODE} AND \"collector\" = ''"
    panels = [
        lay.panel(
            "state-timeline",
            "Nodes reporting (batches per interval; red: none = offline)",
            24,
            7,
            [
                target(
                    "A",
                    f'SELECT count("seq") FROM "agent" WHERE {F_NODE} AND $timeFilter '
                    'GROUP BY time($__interval), "node" fill(0)',
                    alias="$tag_node",
                )
            ],
            unit="short",
            description="Batches each agent published per interval. An interval with none "
            "means the node was offline or cut off from the broker (its spool replays later).",
            thresholds=[(None, "red"), (1, "green")],
            options={"showValue": "never", "mergeValues": False, "rowHeight": 0.9},
        ),
        lay.panel(
            "timeseries",
            "Collector success ratio",
            12,
            8,
            [
                target(
                    "A",
                    f'SELECT mean("collect_ok") FROM "agent" WHERE {collector} AND $timeFilter '
                    + per_collector,
                    alias="$tag_node $tag_collector",
                )
            ],
            unit="percentunit",
            description="Share of polls that succeeded, per node and collector.",
            min_value=0,
            max_value=1,
            custom=line(),
            options=ts_options(),
        ),
        lay.panel(
            "timeseries",
            "Collector poll duration (max)",
            12,
            8,
            [
                target(
                    "A",
                    f'SELECT max("collect_duration_s") FROM "agent" WHERE {collector} AND '
                    "$timeFilter " + per_collector,
                    alias="$tag_node $tag_collector",
                )
            ],
            unit="s",
            description="Longest poll per interval; near the collector's timeout means trouble.",
            min_value=0,
            custom=line(),
            options=ts_options(),
        ),
        lay.panel(
            "timeseries",
            "Collector errors per interval",
            8,
            8,
            [
                target(
                    "A",
                    'SELECT non_negative_difference(max("collect_errors_total")) FROM "agent" '
                    f"WHERE {collector} AND $timeFilter " + per_collector,
                    alias="$tag_node $tag_collector",
                )
            ],
            unit="short",
            description="Failed polls per interval (increase of collect_errors_total).",
            min_value=0,
            custom={**line(), "drawStyle": "bars", "fillOpacity": 60},
            options=ts_options(),
        ),
        lay.panel(
            "timeseries",
            "Spool size",
            8,
            8,
            [
                target(
                    "A",
                    f'SELECT max("spool_bytes") FROM "agent" WHERE {batch} AND $timeFilter '
                    'GROUP BY time($__interval), "node" fill(none)',
                    alias="$tag_node",
                )
            ],
            unit="bytes",
            description="Bytes waiting in each agent's outbound spool (grows while the broker "
            "is unreachable).",
            min_value=0,
            custom=line(10),
            options=ts_options(),
        ),
        lay.panel(
            "timeseries",
            "Points dropped per interval",
            8,
            8,
            [
                target(
                    "A",
                    'SELECT non_negative_difference(max("dropped_total")) FROM "agent" '
                    f'WHERE {batch} AND $timeFilter GROUP BY time($__interval), "node" fill(none)',
                    alias="$tag_node",
                )
            ],
            unit="short",
            description="Points an agent dropped because its spool quota was full.",
            min_value=0,
            thresholds=[(None, "green"), (1, "red")],
            custom={**line(), "drawStyle": "bars", "fillOpacity": 60},
            options=ts_options(),
        ),
        lay.panel(
            "timeseries",
            "Sequence gaps (batches missing)",
            12,
            8,
            [
                target(
                    "A",
                    'SELECT non_negative_difference(max("seq")) - count("seq") AS "missing" '
                    f'FROM "agent" WHERE {batch} AND $timeFilter GROUP BY time($__interval), '
                    '"node" fill(none)',
                    alias="$tag_node",
                )
            ],
            unit="short",
            description="Batch numbers that advanced without their batch arriving: "
            "increase of max(seq) minus batches received, per interval. Above 0 means loss "
            "(or batches still to be replayed from a spool).",
            thresholds=[(None, "green"), (1, "red")],
            custom={**line(), "drawStyle": "bars", "fillOpacity": 60},
            options=ts_options(),
        ),
        lay.panel(
            "table",
            "Last batch per node",
            12,
            8,
            [
                target(
                    "A",
                    # one selector only: then InfluxQL returns the point's own time
                    f'SELECT last("seq") AS "last seq" FROM "agent" WHERE {batch} AND '
                    '$timeFilter GROUP BY "node"',
                    fmt="table",
                )
            ],
            unit="short",
            description="When each node's last batch arrived (Time column) and its number: the "
            "oldest first are the nodes that went silent.",
            options={
                "showHeader": True,
                "cellHeight": "sm",
                "sortBy": [{"displayName": "Time", "desc": False}],
            },
        ),
    ]
    return dashboard(
        "kwatt-agents",
        "kwatt · Agent health",
        "Collectors' success and durations, spool, drops, sequence gaps and silent nodes.",
        panels,
        [V_SITE, V_NODE],
    )


DASHBOARDS = {
    "kwatt-fleet.json": fleet,
    "kwatt-node.json": node_detail,
    "kwatt-efficiency.json": efficiency,
    "kwatt-agents.json": agent_health,
}


def render(build: Any) -> str:
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
