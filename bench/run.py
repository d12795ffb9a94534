"""Run every benchmark of issue 8, write BENCHMARKS.md and print the summary table (`make bench`).

Each benchmark is a script in this directory run as its own process; its last line of output is
one JSON object with its figures, which this runner turns into a row: the goal, the measured
figure and whether the goal is met. BENCHMARKS.md gets the machine, the exact commands, every
row and each benchmark's own output, followed by bench/ANALYSIS.md (hand-written: profiles and
the reasons behind the figures of the last full run).

    .venv/bin/python bench/run.py                 # the full suite (about 25 minutes)
    .venv/bin/python bench/run.py --only codec,analytics
    .venv/bin/python bench/run.py --quick --output /tmp/B.md   # tiny sizes: a smoke run

``--quick`` runs every benchmark with tiny sizes: it checks that they run, not how fast anything
is, so it writes its table with a warning and never to BENCHMARKS.md unless asked. A benchmark
that fails shows as ``error`` with the end of its output, and the runner exits 1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
Result = Mapping[str, object]


@dataclass(frozen=True)
class Row:
    name: str
    goal: str
    measured: str
    met: bool | None  # None: no goal (a figure to document)


@dataclass(frozen=True)
class Bench:
    name: str
    title: str
    script: str
    args: tuple[str, ...]
    quick: tuple[str, ...]
    rows: Callable[[Result], list[Row]]
    timeout_s: float


def _f(x: object) -> float:
    return float(x)  # type: ignore[arg-type]


def _agent_rows(r: Result) -> list[Row]:
    rows = []
    for x in r["results"]:  # type: ignore[attr-defined]
        rate = _f(x["rate_hz"])
        rows.append(
            Row(
                f"agent overhead @ {rate:g} Hz",
                f"≤ {_f(x['goal_cpu_pct']):g} % of one core, RSS ≤ {_f(x['goal_rss_mb']):g} MB",
                f"{_f(x['cpu_pct_of_one_core']):.2f} % of one core, RSS {_f(x['peak_rss_mb']):.1f} MB "
                f"({x['devices']} RNGD + host power + serving, {_f(x['duration_s']):g} s)",
                bool(x["met"]),
            )
        )
    return rows


def _poll_rows(r: Result) -> list[Row]:
    ok = [x for x in r["results"] if "error" not in x]  # type: ignore[attr-defined]
    broken = [str(x["collector"]) for x in r["results"] if "error" in x]  # type: ignore[attr-defined]
    direct = [_f(x["cpu_ms"]) for x in ok if _f(x["tool_cpu_ms"]) <= 0.5]
    spawn = [_f(x["median_ms"]) for x in ok if _f(x["tool_cpu_ms"]) > 0.5]
    measured = (
        f"sysfs, library and HTTP collectors {min(direct):.2f}–{max(direct):.2f} ms CPU per poll; "
        f"tool spawns {min(spawn):.0f}–{max(spawn):.0f} ms wall (emulated tools are Python "
        "scripts); table below"
    )
    if broken:
        measured += f"; errors: {', '.join(broken)}"
    return [Row("cost per collector poll", "documented (prefer sysfs)", measured, None)]


def _poll_table(r: Result) -> list[str]:
    lines = [
        "| collector | type | median ms | p90 ms | agent CPU ms | tool CPU ms | samples |",
        "|---|---|---|---|---|---|---|",
    ]
    for x in r["results"]:  # type: ignore[attr-defined]
        if "error" in x:
            lines.append(f"| {x['collector']} | {x['type']} | error: {x['error']} | | | | |")
        else:
            lines.append(
                f"| {x['collector']} | {x['type']} | {x['median_ms']} | {x['p90_ms']} | "
                f"{x['cpu_ms']} | {x['tool_cpu_ms']} | {x['samples']} |"
            )
    return lines


def _ingest_rows(r: Result) -> list[Row]:
    return [
        Row(
            "ingest throughput (MQTT → kwatt ingest → InfluxDB)",
            f"≥ {_f(r['goal_ratio']):g} × plain /write",
            f"{_f(r['ingest_points_per_s']):,.0f} vs {_f(r['plain_write_points_per_s']):,.0f} points/s "
            f"= {_f(r['ratio']):.2f}×; {_f(r['ingest_cpu_us_per_point']):.1f} µs ingest CPU per point; "
            f"lost {r['lost']}",
            bool(r["met"]),
        )
    ]


def _codec_rows(r: Result) -> list[Row]:
    return [
        Row(
            "line-protocol encoder vs influxdb-client Point",
            f"≥ {_f(r['goal_ratio']):g}×",
            f"{_f(r['encode_points_per_s']):,.0f} vs {_f(r['point_points_per_s']):,.0f} points/s "
            f"= {_f(r['encode_ratio']):.2f}× (byte-identical: {r['byte_identical']})",
            bool(r["met"]),
        ),
        Row(
            "strict parser (validating)",
            "documented",
            f"{_f(r['parse_points_per_s']):,.0f} points/s = {_f(r['parse_ratio']):.2f}× Point's encoder",
            None,
        ),
    ]


def _latency_rows(r: Result) -> list[Row]:
    return [
        Row(
            "end-to-end latency (sample → visible in InfluxDB)",
            f"p99 ≤ {_f(r['goal_p99_s']):g} s",
            f"p50 {_f(r['p50_s']):.2f} s, p99 {_f(r['p99_s']):.2f} s, max {_f(r['max_s']):.2f} s "
            f"({r['samples']} samples)",
            bool(r["met"]),
        )
    ]


def _fleet_rows(r: Result) -> list[Row]:
    best = None
    for x in r["results"]:  # type: ignore[attr-defined]
        if x.get("sustained") and (best is None or _f(x["nodes"]) > _f(best["nodes"])):
            best = x
    measured = (
        "no size sustained"
        if best is None
        else f"{r['max_sustained_nodes']} nodes × {r['devices_per_node']} devices "
        f"({_f(best['points_per_s']):,.0f} points/s, lost {best['lost']}, "
        f"{_f(r['duration_s']):g} s)"
    )
    tried = ", ".join(
        f"{x['nodes']}{'' if x.get('sustained') else ' (not sustained)'}"
        for x in r["results"]  # type: ignore[attr-defined]
    )
    return [
        Row(
            "fleet scale at 1 Hz, zero loss",
            f"≥ {r['goal_nodes']} nodes",
            f"{measured}; sizes tried: {tried}",
            bool(r["met"]),
        )
    ]


def _analytics_rows(r: Result) -> list[Row]:
    n = _f(r["samples"])
    measured = (
        f"{n / 1e6:.1f} M samples: shared-timestamp path {_f(r['matrix_s']):.3f} s "
        f"({_f(r['matrix_ratio_to_floor']):.2f}× one numpy pass)"
    )
    if "analyze_s" in r:
        measured += (
            f", full report analysis {_f(r['analyze_s']):.2f} s "
            f"({_f(r['analyze_ratio_to_floor']):.1f}× one numpy pass)"
        )
    return [Row("analytics reduction", f"≤ {_f(r['goal_s']):g} s", measured, bool(r["met"]))]


BENCHES = (
    Bench("agent", "Agent overhead", "bench_agent.py",
          ("--devices", "8", "--duration", "60", "--rates", "1,10"),
          ("--devices", "2", "--duration", "2", "--warmup", "1", "--rates", "1,10"),
          _agent_rows, 600),
    Bench("poll_cost", "Cost per collector poll", "bench_poll_cost.py", ("--polls", "200",),
          ("--polls", "5"), _poll_rows, 600),
    Bench("ingest", "Ingest throughput", "bench_ingest.py", (),
          ("--points", "4000", "--nodes", "20"), _ingest_rows, 900),
    Bench("codec", "Encoder and parser", "bench_codec.py",
          ("--points", "200000", "--repeat", "3"), ("--points", "2000", "--repeat", "1"),
          _codec_rows, 600),
    Bench("latency", "End-to-end latency", "bench_latency.py", ("--duration", "60"),
          ("--duration", "5"), _latency_rows, 600),
    Bench("fleet", "Fleet scale", "bench_fleet.py", ("--nodes", "1000,1500,2000", "--workers", "2"),
          ("--nodes", "10", "--duration", "4"),
          _fleet_rows, 3600),
    Bench("analytics", "Analytics reduction", "bench_analytics.py", ("--repeat", "3"),
          ("--devices", "10", "--seconds", "600", "--repeat", "1"), _analytics_rows, 900),
)  # fmt: skip


@dataclass(frozen=True)
class Outcome:
    bench: Bench
    argv: tuple[str, ...]
    wall_s: float
    output: str
    result: Result | None
    error: str | None
    date: str = ""
    load: str = ""


RESULTS = REPO / "bench" / "results"


def save(o: Outcome, directory: Path) -> None:
    """Keep a full run's outcome, so that ``--only`` reruns update BENCHMARKS.md without losing
    the other benchmarks' figures (each section says when it was measured)."""
    directory.mkdir(parents=True, exist_ok=True)
    doc = {
        "argv": [".venv/bin/python", *o.argv[1:]],
        "wall_s": round(o.wall_s, 1),
        "output": o.output,
        "result": o.result,
        "error": o.error,
        "date": o.date,
        "load": o.load,
    }
    (directory / f"{o.bench.name}.json").write_text(json.dumps(doc, indent=1) + "\n")


def load_saved(b: Bench, directory: Path) -> Outcome | None:
    path = directory / f"{b.name}.json"
    if not path.exists():
        return None
    doc = json.loads(path.read_text())
    return Outcome(
        b, (sys.executable, *doc["argv"][1:]), doc["wall_s"], doc["output"], doc["result"],
        doc["error"], doc.get("date", ""), doc.get("load", ""),
    )  # fmt: skip


def _last_json(stdout: str) -> Result | None:
    for raw in reversed(stdout.strip().splitlines()):
        line = raw.strip()
        if line.startswith("{"):
            try:
                doc = json.loads(line)
            except json.JSONDecodeError:
                return None
            return doc if isinstance(doc, dict) else None
    return None


def run_one(b: Bench, quick: bool, extra: Sequence[str]) -> Outcome:
    argv = (sys.executable, f"bench/{b.script}", *(b.quick if quick else b.args), *extra)
    t0 = time.monotonic()
    try:
        p = subprocess.run(
            argv, cwd=REPO, capture_output=True, text=True, timeout=b.timeout_s,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        return Outcome(
            b, argv, time.monotonic() - t0, out, None, f"timed out after {b.timeout_s:g} s"
        )
    wall = time.monotonic() - t0
    result = _last_json(p.stdout)
    error = None
    if p.returncode != 0:
        error = f"exit {p.returncode}: {p.stderr.strip()[-1500:]}"
    elif result is None:
        error = f"no JSON summary line in its output; stderr: {p.stderr.strip()[-1500:]}"
    text = "\n".join(line for line in p.stdout.splitlines() if not line.startswith("{"))
    return Outcome(b, argv, wall, text, result, error, _now(), _load())


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> dict[str, str]:
    def first(cmd: list[str]) -> str:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return "not found"
        text = (out.stdout or out.stderr).strip().splitlines()
        return text[0] if text else "?"

    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = 0.0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_gib = int(line.split()[1]) / 2**20
    os_name = "?"
    if Path("/etc/os-release").exists():
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    mosq = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    influxd = shutil.which("influxd") or "/usr/bin/influxd"
    commit = first(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = first(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"])
    return {
        "cpu": f"{cpu}, {os.cpu_count()} logical CPUs",
        "memory": f"{mem_gib:.1f} GiB",
        "os": f"{os_name}, Linux {platform.release()}",
        "python": platform.python_version(),
        "mosquitto": first([mosq, "-h"]),
        "influxd": first([influxd, "version"]),
        "commit": commit + (" (with uncommitted changes)" if dirty not in ("", "?") else ""),
    }


def rows_of(o: Outcome) -> list[Row]:
    if o.result is None or o.error is not None:
        return [Row(o.bench.title, "—", f"error: {(o.error or '')[:200]}", False)]
    try:
        return o.bench.rows(o.result)
    except (KeyError, TypeError, ValueError) as e:
        return [Row(o.bench.title, "—", f"error: summary lacks {e}", False)]


def _met(m: bool | None) -> str:
    return "—" if m is None else ("met" if m else "**not met**")


def render(outcomes: Sequence[Outcome], quick: bool, info: Mapping[str, str]) -> str:
    lines = [
        "# kwatt benchmarks",
        "",
        "Written by `make bench` (`bench/run.py`); do not edit by hand — the analysis at the end "
        "comes from `bench/ANALYSIS.md`.",
        "",
    ]
    if quick:
        lines += [
            "> **Smoke run (`--quick`)**: tiny sizes, to check that every benchmark runs. These "
            "figures say nothing about speed.",
            "",
        ]
    lines += ["## Machine", ""]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    lines += [
        "",
        "Every benchmark's figures are measured side by side with their baseline in the same run "
        "(a shared 2-core machine drifts); none of them is asserted by a test.",
        "",
        "## Summary",
        "",
        "| benchmark | goal | measured | |",
        "|---|---|---|---|",
    ]
    for o in outcomes:
        for r in rows_of(o):
            lines.append(f"| {r.name} | {r.goal} | {r.measured} | {_met(r.met)} |")
    lines += ["", "## Commands and output", ""]
    for o in outcomes:
        cmd = shlex.join([".venv/bin/python", *o.argv[1:]])
        lines += [
            f"### {o.bench.title}",
            "",
            f"`{cmd}` ({o.wall_s:.0f} s; run {o.date}, load average {o.load} at its end)",
            "",
            "```",
            o.output.strip() or "(no output)",
            "```",
            "",
        ]
        if o.bench.name == "poll_cost" and o.result is not None and not o.error:
            lines += [*_poll_table(o.result), ""]
        if o.error:
            lines += [f"**error**: {o.error}", ""]
    analysis = REPO / "bench" / "ANALYSIS.md"
    if analysis.exists() and not quick:
        lines += [analysis.read_text().strip(), ""]
    return "\n".join(lines)


def table(outcomes: Sequence[Outcome]) -> str:
    rows = [r for o in outcomes for r in rows_of(o)]
    w = max(len(r.name) for r in rows)
    out = [f"{'benchmark':{w}s}  {'goal':34s}  result"]
    for r in rows:
        verdict = "—" if r.met is None else ("met" if r.met else "NOT MET")
        out.append(f"{r.name:{w}s}  {r.goal:34s}  {verdict:8s} {r.measured}")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    ap.add_argument("--only", help="comma-separated: " + ",".join(b.name for b in BENCHES))
    ap.add_argument("--output", help="where to write the report (default BENCHMARKS.md; "
                    "with --quick, nothing unless given)")  # fmt: skip
    args = ap.parse_args(argv)
    chosen = list(BENCHES)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(names) - {b.name for b in BENCHES})
        if unknown:
            ap.error(f"--only: unknown benchmark(s) {', '.join(unknown)}")
        chosen = [b for b in BENCHES if b.name in names]
    info = machine()
    fresh = []
    for b in chosen:
        print(f"[bench] {b.name} ...", flush=True)
        o = run_one(b, args.quick, ())
        fresh.append(o)
        if not args.quick:
            save(o, RESULTS)
        print(f"[bench] {b.name}: {'error' if o.error else 'done'} in {o.wall_s:.0f} s", flush=True)
        if o.error:
            print(o.error, file=sys.stderr)
    output = args.output or (None if args.quick else str(REPO / "BENCHMARKS.md"))
    if output:
        # the report covers every benchmark: those not run now from their last full run
        ran = {o.bench.name: o for o in fresh}
        shown = [
            o
            for b in BENCHES
            if (o := ran.get(b.name) or (None if args.quick else load_saved(b, RESULTS)))
        ]
        Path(output).write_text(render(shown, args.quick, info))
        print(f"[bench] wrote {output}")
    print()
    print(table(fresh))
    return 1 if any(o.error for o in fresh) else 0


if __name__ == "__main__":
    sys.exit(main())
