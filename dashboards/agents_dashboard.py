"""The agent health dashboard (``kwatt-agents.json``): which nodes report, collector success ratio,
poll duration and errors, spool size, dropped points, sequence gaps, the last batch per node."""

from __future__ import annotations

from blocks import (
    F_NODE,
    V_NODE,
    V_SITE,
    Json,
    Layout,
    dashboard,
    line,
    target,
    ts_options,
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
