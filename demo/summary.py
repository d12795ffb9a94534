"""What ``kwatt demo`` prints at the end: the :class:`Summary` (``--json``: one JSON document) or
its tables on the console (:func:`print_summary`), and the ``kwatt report`` command that gives the
same figures with methods, coverage, money and carbon (:func:`report_command`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = ["DEMO_MIN_WINDOW_S", "Summary", "print_summary", "report_command"]


#: Verdicts need a window at least this long in the demo (``kwatt report``'s default is 60 s; pass
#: ``--min-window`` to it for a shorter demo).
DEMO_MIN_WINDOW_S = 10.0


@dataclass
class Summary:
    published: int
    stored: int
    lost: int
    stored_by_measurement: dict[str, int]
    nodes: int
    devices_per_node: int
    fleet: dict[str, str]  # node → "model:cards service"
    duration_s: float
    points_per_s: float
    agents_dropped: int
    ingest: dict[str, int]
    mean_power_w_by_node: dict[str, float]
    requests_by_node: dict[str, float]
    #: CPU seconds the demo's processes used (user + system, /proc), by role, and in cores.
    cpu_s: dict[str, float]
    cpu_cores: float
    #: Per service: work per J by device class, ratio to the GPU baseline, verdict, measured error.
    figures: dict[str, object]
    broker: str
    influx: str
    database: str
    state_dir: str
    #: What ``--fault`` injected and when (seconds after the fleet was up), and the agent-kill
    #: accounting (see :func:`kwatt.demo.faults.agent_kill_accounting`).
    faults: list[dict[str, object]] = field(default_factory=list)
    lost_to_agent_kill: int = 0
    agent_kill: dict[str, object] = field(default_factory=dict)

    def to_json(self) -> str:
        doc = {k: v for k, v in self.__dict__.items() if k != "figures"}
        doc.update(self.figures)
        return json.dumps(doc, sort_keys=True)


def print_summary(s: Summary, console: Console, *, kept_influx: bool = True) -> None:
    console.print()
    t = Table(title="kwatt demo summary", show_header=False)
    t.add_column("")
    t.add_column("", justify="right")
    t.add_row("nodes x cards", f"{s.nodes} x {s.devices_per_node}")
    t.add_row("duration", f"{s.duration_s:g} s")
    t.add_row("points published (acknowledged by the broker)", str(s.published))
    t.add_row("points stored in InfluxDB", str(s.stored))
    t.add_row("lost", Text(str(s.lost), style="green" if s.lost == 0 else "bold red"))
    t.add_row("published points/s", f"{s.points_per_s:g}")
    t.add_row(
        "CPU (emulators, agents, ingest)",
        f"{s.cpu_cores:.2f} cores ("
        + ", ".join(f"{k} {v:.1f} s" for k, v in sorted(s.cpu_s.items()))
        + ")",
    )
    for node, watts in s.mean_power_w_by_node.items():
        req = s.requests_by_node.get(node)
        t.add_row(
            f"{node} ({s.fleet.get(node, '?')}): mean accelerator power, requests",
            f"{watts:.1f} W, {'-' if req is None else f'{req:.0f}'}",
        )
    console.print(t)
    _print_figures(s.figures, console)
    window = s.figures.get("window")
    if isinstance(window, dict):
        command = " ".join(report_command(s.influx, s.database, window))
        if kept_influx:
            console.print(f"the same figures, with methods, coverage, money and carbon: {command}")
        else:
            console.print(
                "the demo's private InfluxDB stopped with it; to keep the data for `kwatt report` "
                "(methods, coverage, money and carbon), run the demo with --influx URL, then: "
                + command.replace(s.influx, "URL")
            )
    console.print(f"state, logs and configs: {s.state_dir}")


def report_command(influx: str, database: str, window: Mapping[str, object]) -> list[str]:
    """The ``kwatt report`` invocation over the demo's window (its verdicts need --min-window)."""
    return [
        "kwatt",
        "report",
        "--influx",
        influx,
        "--database",
        database,
        "--since",
        str(window.get("start_s")),
        "--until",
        str(window.get("end_s")),
        "--min-window",
        f"{DEMO_MIN_WINDOW_S:g}",
        # the window edges above are rounded to 1 ms: leave room over the default 0.8 s skew bound
        # so an edge the demo found aligned is not refused for the rounding
        "--max-skew",
        "1.0",
    ]


def _print_figures(figures: Mapping[str, object], console: Console) -> None:
    """Per service: work per J by device class, ratio to the GPU, verdict, measured error."""
    services = figures.get("services")
    window = figures.get("window")
    if not isinstance(services, dict) or not isinstance(window, dict):
        console.print("no perf-per-watt figures (no common window in what InfluxDB holds)")
        return
    t = Table(
        title=f"perf-per-watt over the common {window.get('length_s')} s window, "
        f"{figures.get('phase')} verdicts, pipeline error vs ground truth"
    )
    for col in ("service", "device class", "work/J", "true work/J", "vs GPU", "verdict",
                "energy err", "perf/W err"):  # fmt: skip
        t.add_column(
            col, justify="left" if col in ("service", "device class", "verdict") else "right"
        )

    def num(v: object, fmt: str) -> str:
        return format(v, fmt) if isinstance(v, int | float) else "–"

    for svc, doc in services.items():
        if not isinstance(doc, dict):
            continue
        verdicts = {v["device_class"]: v for v in doc.get("verdicts", []) if isinstance(v, dict)}
        for cls, c in doc.get("classes", {}).items():
            v = verdicts.get(cls)
            if c.get("gpu_baseline"):
                ratio, word = "baseline", "GPU baseline"
            elif v is None:
                ratio, word = "–", "no verdict"
            else:
                ratio = num(v.get("ratio_vs_baseline"), ".2f") + "x"
                meets = v.get("meets_target")
                word = (
                    "no verdict"
                    if meets is None
                    else ("meets" if meets else "misses") + f" {v.get('target_ratio')}x"
                )
                if v.get("baseline_kind") != "measured":
                    word += f" ({v.get('baseline_kind')})"
            t.add_row(
                svc,
                cls,
                num(c.get("work_per_j"), ".4g") + f" {doc.get('work_unit')}/J",
                num(c.get("true_work_per_j"), ".4g"),
                ratio,
                word,
                num(c.get("energy_error_pct"), "+.2f") + " %",
                num(c.get("perf_per_watt_error_pct"), "+.2f") + " %",
            )
    console.print(t)
    if figures.get("phase") != "phase1_npu":  # phase 2/3 (--phase): say where each target is from
        for svc, doc in services.items():
            for v in doc.get("verdicts", []) if isinstance(doc, dict) else []:
                console.print(
                    f"{svc} / {v.get('device_class')}: {v.get('class_phase')} target "
                    f">= {v.get('target_ratio')}x the GPU ({v.get('target_status')}: "
                    f"{v.get('target_source')})"
                )
        console.print(
            "the phase-2/3 devices' figures are published chip or vendor figures, derived and "
            "assumed ones among them (docs/emulators.md): their verdicts are model outputs, "
            "not evidence"
        )
