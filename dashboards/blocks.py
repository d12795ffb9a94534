"""The building blocks of kwatt's Grafana dashboards: the JSON every dashboard shares.

:data:`DS` is the datasource variable every panel and query uses; the ``F_*`` strings are the
InfluxQL filters on the template variables (multi-value regexes; "All" is ``.*``). :func:`target`
is one InfluxQL query; :class:`Layout` places panels left to right on Grafana's 24-column grid and
numbers them; :func:`stat_options`, :func:`ts_options`, :func:`line`, :func:`dashed` and
:func:`unit_override` are the panel options and overrides the dashboards repeat; :func:`variable` and
the ``V_*`` constants are the template variables; :func:`dashboard` wraps panels and variables into
one dashboard (schema version :data:`SCHEMA_VERSION`); :func:`ratio_panel` is the ratio-to-GPU panel
the fleet and efficiency dashboards share.
"""

from __future__ import annotations

SCHEMA_VERSION = 41


Json = dict[str, object]


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
        pos: Json = {"h": h, "w": w, "x": self.x, "y": self.y}
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
