"""The Grafana dashboards (dashboards/): generated files up to date, Grafana's schema (strict TypeScript
against @grafana/schema), layout and units, provisioning, and every panel and template-variable query
run on a real influxd after an emulator run, with Grafana's macros expanded, returning data.

No Grafana server can be installed here (no Debian, PyPI or npm package ships one), so Grafana's part, interpolation,
is done here the way Grafana does it for InfluxQL: ``$timeFilter`` becomes
``time >= <from>ms and time <= <to>ms`` (with the panel's relative time when it has one),
``$__interval`` a GROUP BY duration, and a multi-value variable a regex: its ``allValue`` (``.*``) for
"All", or the regex-escaped value (Grafana's escaping) for one selected value.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from kwatt import collectors
from kwatt.agent.config import agent_config_from
from kwatt.agent.runtime import Agent
from kwatt.emulators.rngd_node import EmulatedNode
from kwatt.ingest.config import BatchConfig, IngestConfig
from kwatt.ingest.worker import Ingest
from kwatt.wire.model import MEASUREMENTS
from kwatt.wire.settings import InfluxConfig, MqttConfig

REPO = Path(__file__).resolve().parents[2]
DASH_DIR = REPO / "dashboards" / "json"
DASHBOARDS = sorted(DASH_DIR.glob("*.json"))
CHECK_SH = REPO / "tests" / "grafana" / "check.sh"

#: Grafana unit ids the dashboards may use (Grafana's unit catalogue; custom "suffix:" units too).
KNOWN_UNITS = {
    "watt",
    "watth",
    "kwatt",
    "joule",
    "percentunit",
    "celsius",
    "hertz",
    "s",
    "ms",
    "bytes",
    "short",
    "reqps",
    "bool_yes_no",
}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def load(path: Path) -> dict[str, Any]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def panels(dash: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for p in dash["panels"]:
        yield p
        yield from p.get("panels", [])


def data_panels(dash: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in panels(dash) if p["type"] != "row"]


def variables(dash: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for v in dash["templating"]["list"] if v["type"] == "query"]


# --------------------------------------------------------------------------- static checks


def test_the_four_dashboards_exist_and_are_generated_from_generate_py() -> None:
    assert [p.name for p in DASHBOARDS] == [
        "kwatt-agents.json",
        "kwatt-efficiency.json",
        "kwatt-fleet.json",
        "kwatt-node.json",
    ]
    out = subprocess.run(
        [sys.executable, str(REPO / "dashboards" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr


def test_dashboards_type_check_against_grafana_schema() -> None:
    """tsc --strict: each dashboard is a `Dashboard` of @grafana/schema (pinned in package-lock)."""
    if shutil.which("npm") is None or shutil.which("node") is None:
        if in_ci():
            pytest.fail("npm/node missing, and CI is set: install nodejs and npm")
        pytest.skip("npm/node not installed: apt-get install -y nodejs npm")
    out = subprocess.run(
        ["bash", str(CHECK_SH), *map(str, DASHBOARDS)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if out.returncode == 2 and not in_ci() and "npm ci failed" in out.stderr:
        pytest.skip(f"could not install @grafana/schema + typescript: {out.stderr[-500:]}")
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_type_check_rejects_what_grafana_rejects(tmp_path: Path) -> None:
    """The check can fail: a string graphTooltip, a misspelt gridPos key and a bad enum value."""
    if shutil.which("npm") is None:
        pytest.skip("npm not installed")
    dash = load(DASHBOARDS[0])
    dash["graphTooltip"] = "shared"
    grid = dash["panels"][0]["gridPos"]
    grid["width"] = grid.pop("w")
    dash["panels"][1]["fieldConfig"]["defaults"]["thresholds"]["mode"] = "absolut"
    bad = tmp_path / "broken.json"
    bad.write_text(json.dumps(dash))
    out = subprocess.run(
        ["bash", str(CHECK_SH), str(bad)], capture_output=True, text=True, timeout=600
    )
    if out.returncode == 2 and not in_ci():
        pytest.skip(out.stderr[-300:])
    assert out.returncode == 1
    assert "DashboardCursorSync" in out.stdout
    assert "'\"width\"' does not exist" in out.stdout
    assert '"absolut"' in out.stdout


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_layout_units_datasource_and_variables(path: Path) -> None:
    dash = load(path)
    assert dash["uid"].startswith("kwatt-") and dash["schemaVersion"] >= 36
    names = [v["name"] for v in dash["templating"]["list"]]
    assert names[0] == "datasource" and dash["templating"]["list"][0]["query"] == "influxdb"
    assert "site" in names
    cells: dict[tuple[int, int], str] = {}
    ids = set()
    for p in panels(dash):
        assert p["id"] not in ids, f"duplicate panel id {p['id']}"
        ids.add(p["id"])
        g = p["gridPos"]
        assert set(g) == {"h", "w", "x", "y"} and all(isinstance(g[k], int) for k in g)
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0 and g["w"] > 0
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                other = cells.setdefault((x, y), p["title"])
                assert other == p["title"], f"{p['title']!r} overlaps {other!r} at x={x} y={y}"
        if p["type"] == "row":
            continue
        unit = p["fieldConfig"]["defaults"].get("unit")
        assert unit, f"panel {p['title']!r} has no unit"
        assert unit in KNOWN_UNITS or unit.startswith("suffix:"), unit
        for o in p["fieldConfig"].get("overrides", []):
            for prop in o["properties"]:
                if prop["id"] == "unit":
                    assert prop["value"] in KNOWN_UNITS or prop["value"].startswith("suffix:")
        assert p["datasource"] == {"type": "influxdb", "uid": "${datasource}"}
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"] == p["datasource"] and t["rawQuery"] is True
            assert "$timeFilter" in t["query"], (p["title"], t["query"])
            assert (
                "$__interval" in t["query"]
                or p.get("timeFrom")
                or "GROUP BY time" not in (t["query"])
            )
    for v in variables(dash):
        assert v["datasource"] == {"type": "influxdb", "uid": "${datasource}"}
        assert v["includeAll"] and v["allValue"] == ".*"
    used = {
        m
        for p in data_panels(dash)
        for t in p["targets"]
        for m in re.findall(r"\$(\w+)", t["query"])
    }
    defined = {v["name"] for v in variables(dash)}
    assert used - {"timeFilter", "__interval"} <= defined


def _identifiers(query: str) -> tuple[set[str], set[str]]:
    """(measurements, other double-quoted identifiers) of an InfluxQL query."""
    measurements = set(re.findall(r'FROM "(\w+)"', query))
    quoted = set(re.findall(r'"([^"]+)"', query)) - measurements
    aliases = set(re.findall(r'AS "([^"]+)"', query))
    return measurements, quoted - aliases


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_queries_use_only_measurements_tags_and_fields_of_the_model(path: Path) -> None:
    dash = load(path)
    queries = [t["query"] for p in data_panels(dash) for t in p["targets"]]
    queries += [v["query"] for v in variables(dash)]
    tags = {t for spec in MEASUREMENTS.values() for t in spec.tags}
    for q in queries:
        measurements, names = _identifiers(q)
        assert measurements, q
        for m in measurements:
            assert m in {str(k) for k in MEASUREMENTS}, (m, q)
        allowed = set(tags)
        for m in measurements:
            spec = next(s for k, s in MEASUREMENTS.items() if str(k) == m)
            allowed |= spec.fields | spec.tags
        for name in names:
            assert name in allowed, (name, q)


def test_provisioning_points_at_the_dashboards_and_an_influxql_datasource() -> None:
    ds = yaml.safe_load(
        (REPO / "dashboards/provisioning/datasources/kwatt-influxdb.yaml").read_text()
    )
    assert ds["apiVersion"] == 1
    (source,) = ds["datasources"]
    assert source["type"] == "influxdb" and source["access"] == "proxy"
    assert source["jsonData"].get("version", "InfluxQL") == "InfluxQL"
    assert "password" not in source and "${" in json.dumps(source.get("secureJsonData", {}))
    prov = yaml.safe_load((REPO / "dashboards/provisioning/dashboards/kwatt.yaml").read_text())
    assert prov["apiVersion"] == 1
    (provider,) = prov["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]


# --------------------------------------------------------------------------- against InfluxDB

_GRAFANA_REGEX_SPECIALS = re.compile(r"[\\^$*+?.()|\[\]{}/]")


def grafana_regex_escape(value: str) -> str:
    """What Grafana's InfluxDB datasource does to a variable value inside a regex."""
    return _GRAFANA_REGEX_SPECIALS.sub(lambda m: "\\" + m.group(0), value)


def time_range(now_ms: int, time_from: str | None) -> tuple[int, int]:
    if time_from is None:
        return now_ms - 3_600_000, now_ms
    if time_from == "now/d":
        return now_ms - now_ms % 86_400_000, now_ms
    m = re.fullmatch(r"(\d+)([smhd])", time_from)
    assert m, time_from
    scale = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}[m.group(2)]
    return now_ms - int(m.group(1)) * scale, now_ms


def expand(query: str, values: dict[str, str], *, now_ms: int, time_from: str | None) -> str:
    start, end = time_range(now_ms, time_from)
    q = query.replace("$timeFilter", f"time >= {start}ms and time <= {end}ms")
    q = q.replace("$__interval", "1s")
    for name in sorted(values, key=len, reverse=True):
        q = q.replace("${" + name + "}", values[name]).replace("$" + name, values[name])
    assert not re.search(r"\$[\w{]", q), f"unexpanded macro in {q}"
    return q


def has_data(series: list[Any]) -> bool:
    return any(any(v is not None for v in row[1:]) for s in series for row in s.values)


@dataclass
class Fleet:
    influxd: Any
    db: str
    site: str
    nodes: tuple[str, ...]


def uniq(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def fleet(mosquitto: Any, influxd: Any, tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    """Two emulated nodes with real agents → Mosquitto → ingest → influxd for ~6 s; plus the
    points no collector writes yet: `efficiency` (the analytics writer) and `host` (RAPL/DCMI)."""

    tmp = tmp_path_factory.mktemp("dash")
    site, db = uniq("dsite"), uniq("dash")
    nodes = ("dn-01", "dn-02")
    influxd.create_database(db)

    async def main() -> int:
        ingest = Ingest(
            IngestConfig(
                mqtt=MqttConfig(url=mosquitto.url, client_id=uniq("ingest")),
                influx=InfluxConfig(url=influxd.url, database=db),
                batch=BatchConfig(max_delay_s=0.1),
                group=uniq("grp"),
                deadletter_dir=str(tmp / "deadletter"),
            )
        )
        stop_i = asyncio.Event()
        run_i = asyncio.create_task(ingest.run(stop_i))
        deadline = time.monotonic() + 10
        while not ingest.connected.is_set():
            assert time.monotonic() < deadline, "ingest never subscribed"
            await asyncio.sleep(0.05)
        emus, runs, stops = [], [], []
        for i, node in enumerate(nodes):
            emu = EmulatedNode(tmp / node, devices=2, seed=i, serving_port=0, workload="steady")
            await emu.start()
            emu_stop = asyncio.Event()
            emus.append((emu, emu_stop, asyncio.create_task(emu.run(emu_stop, period_s=0.1))))
            cfg = agent_config_from(
                {
                    "site": site,
                    "node": node,
                    "mqtt": {"url": mosquitto.url},
                    "publish": {"flush_interval_s": 0.5},
                    "collectors": [
                        {
                            "type": "furiosa",
                            "name": "rngd",
                            "root": str(tmp / node),
                            "interval_s": 0.5,
                        },
                        {
                            "type": "serving",
                            "name": "llm",
                            "url": emu.serving_url,
                            "service": "chatbot",
                            "interval_s": 0.5,
                        },
                    ],
                },
                where="test",
            )
            built = [(e, collectors.load(e.type).create(e.name, e.options)) for e in cfg.collectors]
            stop = asyncio.Event()
            stops.append(stop)
            runs.append(asyncio.create_task(Agent(cfg, built).run(stop)))
        await asyncio.sleep(6.0)
        for stop in stops:
            stop.set()
        published = 0
        for run in runs:
            published += (await run).published_points
        deadline = time.monotonic() + 20
        while ingest.stats.points_written < published:
            assert time.monotonic() < deadline, "ingest did not catch up"
            await asyncio.sleep(0.1)
        stop_i.set()
        await run_i
        for emu, emu_stop, task in emus:
            emu_stop.set()
            await task
            await emu.aclose()
        return published

    assert asyncio.run(main()) > 0
    now = time.time_ns()
    lines = []
    for k in range(6):
        ts = now - (5 - k) * 1_000_000_000
        for node in nodes:
            lines.append(
                f"host,node={node},site={site},source=rapl,zone=package-0 power_w={180 + k}.5 {ts}"
            )
        # verdicts of two phases (issue 16): the efficiency dashboard shows every phase with data
        for service, ratio, phase, bar in (
            ("chatbot", 2.4 + k / 10, "phase1_npu", 2.0),
            ("vision", 1.1, "phase1_npu", 2.0),
            ("chatbot", 3.1, "phase2_dram_pim", 4.0),
        ):
            meets = 1 if ratio >= bar else 0
            lines.append(
                f"efficiency,phase={phase},service={service},site={site},window=1m "
                f"work_per_j={3.0 * ratio},ratio_vs_baseline={ratio},target_ratio={bar},"
                f"meets_target={meets}i {ts}"
            )
    influxd.write(db, "\n".join(lines) + "\n")
    return Fleet(influxd, db, site, nodes)


def variable_values(fleet: Fleet, dash: dict[str, Any], now_ms: int) -> dict[str, list[str]]:
    """Run every variable query in order, each with the previous ones set to their first value
    (site: the test's own site, since the session's influxd is shared)."""
    chosen: dict[str, str] = {}
    found: dict[str, list[str]] = {}
    for v in variables(dash):
        q = expand(v["query"], chosen, now_ms=now_ms, time_from=None)
        series = fleet.influxd.query(fleet.db, q)
        values = sorted({row[1] for s in series for row in s.values})
        assert values, f"variable {v['name']}: no values from {q}"
        found[v["name"]] = values
        pick = fleet.site if v["name"] == "site" else values[0]
        assert pick in values, (v["name"], values)
        chosen[v["name"]] = grafana_regex_escape(pick)
    return found


@pytest.mark.services
@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_query_runs_on_influxdb_and_returns_data(fleet: Fleet, path: Path) -> None:
    dash = load(path)
    now_ms = time.time_ns() // 1_000_000 + 1000
    found = variable_values(fleet, dash, now_ms)
    if "node" in found:
        assert set(fleet.nodes) <= set(found["node"])
    if "vendor" in found:
        assert found["vendor"] == ["furiosa"]
    if "service" in found:
        assert "chatbot" in found["service"]
    if "phase" in found:
        assert found["phase"] == ["phase1_npu", "phase2_dram_pim"]
    names = [v["name"] for v in variables(dash)]
    selections = {
        # "All" everywhere but site: the session's influxd is shared with other tests
        "All": {n: grafana_regex_escape(fleet.site) if n == "site" else ".*" for n in names},
        "one value each": {
            n: grafana_regex_escape(fleet.site if n == "site" else found[n][0]) for n in names
        },
    }
    failures = []
    for label, values in selections.items():
        for p in data_panels(dash):
            for t in p["targets"]:
                q = expand(t["query"], values, now_ms=now_ms, time_from=p.get("timeFrom"))
                try:
                    series = fleet.influxd.query(fleet.db, q)
                except Exception as e:
                    failures.append(f"{p['title']} [{label}]: {e}\n  {q}")
                    continue
                if not has_data(series):
                    failures.append(f"{p['title']} [{label}]: no data\n  {q}")
    assert not failures, "\n".join(failures)
