"""The node detail dashboard (``kwatt-node.json``): per device utilization, power, temperature,
clock, throttling and memory; host power by source; requests/s, tokens/s, p50/p99 latency."""

from __future__ import annotations

from blocks import (
    F_DEV,
    F_NODE,
    F_SVC_NODE,
    V_MODEL,
    V_NODE,
    V_SERVICE,
    V_SITE,
    V_VENDOR,
    Json,
    Layout,
    dashboard,
    dashed,
    line,
    target,
    ts_options,
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
