"""The fleet overview dashboard (``kwatt-fleet.json``): nodes and devices reporting, accelerator
power and energy, throughput and work per joule per service against the target, the NPU-vs-GPU
ratio, a table of nodes."""

from __future__ import annotations

from blocks import (
    F_DEV,
    F_NODE,
    F_SVC,
    F_SVC_NODE,
    HIDE_TIME,
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
    ratio_panel,
    stat_options,
    target,
    ts_options,
    unit_override,
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
