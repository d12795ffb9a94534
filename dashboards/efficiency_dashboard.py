"""The efficiency dashboard (``kwatt-efficiency.json``): the analytics' ``efficiency`` windows per
service and K-Cloud phase: PASS/MISS, the share of windows meeting the target, the ratio to the GPU
baseline with the target ratio dashed, work per joule, the latest verdicts."""

from __future__ import annotations

from blocks import (
    F_SVC,
    F_SVC_PHASE,
    HIDE_TIME,
    V_PHASE,
    V_SERVICE_EFF,
    V_SITE,
    Json,
    Layout,
    dashboard,
    line,
    ratio_panel,
    stat_options,
    target,
    ts_options,
    unit_override,
)


def efficiency() -> Json:
    lay = Layout()
    verdict: list[Json] = [
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
