"""Fleet scale: the largest fleet (nodes × 8 cards at 1 Hz, all fields) one machine sustains, zero loss.

    .venv/bin/python bench/bench_fleet.py --nodes 500,1000,2000,5000 [--duration 300 | --quick]
        [--workers 1] [--ingest-protocol 5] [--ingest-max-points N] [--generators 1]
        [--state-dir /dev/shm] [--profile-ingest DIR] [--all] [--keep]

Per fleet size, everything fresh: a private Mosquitto and a private influxd (kwatt.demo.services, their
default configurations), ``kwatt ingest`` as W separate worker processes sharing one ``$share``
group (each its own client id; otherwise the config defaults of examples/ingest.yaml: MQTT 5, batch
5000 points / 200 ms, 10000 unacked messages; ``--ingest-protocol 3`` and ``--ingest-max-points``
change those two, and are printed), and G load-generator processes (bench/_fleetgen.py) that publish,
for every node and every second, the one QoS-1 message a kwatt agent with one collector and 8 cards
publishes (8 ``accel`` lines with every DESIGN §3 field, the collector's and the batch's ``agent``
lines, ``seq`` counting from 1), encoded through kwatt.wire.lineproto and spread evenly over the second.
After ``--duration`` seconds the generators stop; the ingest gets a bounded time to drain
(``--drain-timeout``); then InfluxDB is counted (``count(power_w)`` over ``accel``, ``count(seq)`` and
``count(collect_ok)`` over ``agent``: every generated line has its field) and compared with what the
broker acknowledged (PUBACK). ``lost`` is published − stored after that wait; when the drain did not
finish it includes the backlog still queued (``undrained``).

Measured per size: points/s (all lines; ``accel_points_per_s`` the cards' alone), published and
stored points, lost, the stored-data lag (age of the newest stored ``seq`` point of three canary
nodes, polled every second; at 1 Hz up to ~1.2 s of it is cadence and batching), the backlog
(messages sent but not yet taken by the ingest, from the stats files, so up to 1 s stale), the
generator's lag behind its schedule and its most unacknowledged messages, the CPU of ingest (all
workers), influxd, mosquitto and generators in % of one core over the publishing window
(/proc/PID/stat utime+stime), the CPU ms per message over the whole run (publishing and draining),
and from those the fleet the CPU cost alone would allow on this machine's cores with nothing else
running (``cpu_bound_nodes``; an extrapolation, not a measurement).

A size is *sustained* when nothing was lost, the backlog drained within ``--drain-limit`` (30 s) of
the generators stopping, the lag did not grow steadily (least-squares slope over the second half of
the run over 0.05 s/s while the last lag exceeds max(5 s, 10 % of the duration)), and the generator
kept up (schedule lag under ``--max-gen-lag`` 1 s, every message acknowledged, no reconnect;
otherwise the size is *generator-bound*: a limit of this load generator here, not a kwatt figure).
The search stops at the first size that is not sustained (``--all``: runs every size anyway).

What is real: broker, ingest, InfluxDB and their configurations, the wire (topics, payloads, QoS 1,
seq). What is not: the agents. A few generator processes stand in for N agent processes (which cannot
run here): each carries many nodes over one MQTT connection (the private broker has no ACL; a real
fleet has one connection per node, with TLS), without spools and without the retained status and
inventory messages (the ingest does not subscribe to those). Everything shares one machine, so the
generator's CPU, and anything else running, is taken from the pipeline's: on a shared machine the
figures are noisy. Benchmarks print; they never assert.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from kwatt.demo.services import Influxd, Mosquitto

REPO = Path(__file__).resolve().parent.parent
GEN = Path(__file__).resolve().parent / "_fleetgen.py"
CLK_TCK = os.sysconf("SC_CLK_TCK")
DEVICES = 8
LINES_PER_MESSAGE = DEVICES + 2  # + the collector's agent line + the batch's seq line
GOAL_NODES = 5000
DB = "kwatt"
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def cpu_s(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def influx_query(url: str, q: str, timeout_s: float = 600.0) -> list[dict[str, Any]]:
    """InfluxQL with a long timeout (a count over millions of points takes a while)."""
    body = urllib.parse.urlencode({"q": q, "db": DB, "epoch": "ns"}).encode()
    req = urllib.request.Request(f"{url}/query", data=body, method="POST")  # loopback http
    with _HTTP.open(req, timeout=timeout_s) as resp:
        doc = json.loads(resp.read())
    series = []
    for result in doc.get("results", []):
        if "error" in result:
            raise RuntimeError(f"InfluxDB: {result['error']} ({q})")
        series += result.get("series", [])
    return series


def influx_count(url: str, measurement: str, field: str) -> int:
    series = influx_query(url, f'SELECT count("{field}") FROM "{measurement}"')
    return sum(int(row[1] or 0) for s in series for row in s["values"])


def newest_ts_s(url: str, nodes: list[str]) -> float | None:
    """Oldest of the canary nodes' newest stored seq timestamps (one cheap query per node)."""
    newest: list[float] = []
    for node in nodes:
        try:
            series = influx_query(
                url,
                f'SELECT last("seq") FROM "agent" WHERE "node" = \'{node}\' AND time > now() - 1h',
                timeout_s=5.0,
            )
        except (OSError, RuntimeError):
            return None
        if not series or not series[0]["values"]:
            return None
        newest.append(series[0]["values"][0][0] / 1e9)
    return min(newest) if newest else None


def slope(xs: list[float], ys: list[float]) -> float:
    n = len(xs)
    if n < 3:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    return 0.0 if var == 0 else sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var


def stop_proc(proc: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def run_size(args: argparse.Namespace, nodes: int, root: Path) -> dict[str, Any]:
    state = root / f"n{nodes}"
    state.mkdir(parents=True)
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[Any] = []

    def spawn(argv: list[str], log_name: str) -> subprocess.Popen[bytes]:
        log = (state / log_name).open("wb")
        logs.append(log)
        proc = subprocess.Popen(
            argv,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # stopped by us in order, not by the terminal's Ctrl-C
        )
        procs.append(proc)
        return proc

    mosq = Mosquitto(state / "mosquitto")
    influxd = Influxd(state / "influxdb")
    try:
        mosq.start()
        influxd.start()
        influxd.create_database(DB)
        group = f"fleet-{os.getpid()}-{nodes}"
        workers: list[tuple[subprocess.Popen[bytes], Path]] = []
        for w in range(args.workers):
            cfg: dict[str, Any] = {
                "group": group,
                "mqtt": {
                    "url": mosq.url,
                    "client_id": f"kwatt-fleet-ingest-{nodes}-{w}",
                    "protocol": args.ingest_protocol,
                },
                "influx": {"url": influxd.url, "database": DB},
                "deadletter_dir": str(state / "deadletter"),
                "log_level": "info",
            }
            if args.ingest_max_points:
                cfg["batch"] = {"max_points": args.ingest_max_points}
            cfg_path = state / f"ingest-{w}.yaml"
            cfg_path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
            stats_path = state / f"ingest-{w}-stats.json"
            prof: list[str] = []
            if args.profile_ingest and w == 0:
                out = Path(args.profile_ingest) / f"ingest-{nodes}.prof"
                out.parent.mkdir(parents=True, exist_ok=True)
                prof = ["-m", "cProfile", "-o", str(out)]
            argv = [sys.executable, *prof, "-m", "kwatt.cli", "ingest", "--config", str(cfg_path)]
            argv += ["--stats-file", str(stats_path)]
            workers.append((spawn(argv, f"ingest-{w}.log"), stats_path))
        # wait until every worker has subscribed (else MQTT 5 PUBACKs say "no subscribers")
        deadline = time.monotonic() + 30
        for w, (proc, _) in enumerate(workers):
            log_path = state / f"ingest-{w}.log"
            while b"subscribed to" not in log_path.read_bytes():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"ingest {w} did not subscribe: {log_path.read_text()[-800:]}"
                    )
                time.sleep(0.05)

        duration = int(args.duration)
        t0 = time.time() + 3.0  # time for the generators to build and check their templates
        gens: list[tuple[subprocess.Popen[bytes], Path]] = []
        for g in range(args.generators):
            stats_path = state / f"gen-{g}.json"
            argv = [sys.executable, str(GEN), "--port", str(mosq.port), "--nodes", str(nodes)]
            argv += ["--index", str(g), "--procs", str(args.generators), "--t0", f"{t0:.6f}"]
            argv += ["--duration", str(duration), "--stats-file", str(stats_path)]
            gens.append((spawn(argv, f"gen-{g}.log"), stats_path))
        canaries = [f"node{j:05d}" for j in sorted({0, nodes // 2, nodes - 1})]
        pids = {
            "ingest": [p.pid for p, _ in workers],
            "influxd": [influxd.pid],
            "mosquitto": [mosq.pid],
        }

        def cpu_now() -> dict[str, float]:
            out = {k: sum(cpu_s(pid) for pid in v) for k, v in pids.items()}
            # the generators' own figure: they exit before the drain ends
            out["generator"] = sum(float(read_json(path).get("cpu_s", 0)) for _, path in gens)
            return out

        def ingest_totals() -> tuple[int, int]:
            docs = [read_json(path) for _, path in workers]
            return (
                sum(int(d.get("messages", 0)) for d in docs),
                sum(int(d.get("points_written", 0)) for d in docs),
            )

        def gen_totals() -> dict[str, Any]:
            docs = [read_json(path) for _, path in gens]
            return {
                "sent": sum(int(d.get("sent", 0)) for d in docs),
                "acked": sum(int(d.get("acked", 0)) for d in docs),
                "refused": sum(int(d.get("refused", 0)) for d in docs),
                "disconnects": sum(int(d.get("disconnects", 0)) for d in docs),
                "max_unacked": sum(int(d.get("max_unacked", 0)) for d in docs),
                "max_lag_s": max((float(d.get("max_lag_s", 0)) for d in docs), default=0.0),
                "done": bool(docs) and all(d.get("done") for d in docs),
                "seconds": min((len(d.get("lag_series", [])) for d in docs), default=0),
            }

        time.sleep(max(0.0, t0 - time.time()))
        cpu0, w0 = cpu_now(), time.monotonic()
        lag_t: list[float] = []
        lag_v: list[float] = []
        max_backlog = 0
        cpu1, w1 = cpu0, w0
        while True:
            time.sleep(1.0)
            now = time.time()
            newest = newest_ts_s(influxd.url, canaries)
            if newest is not None:
                lag_t.append(now - t0)
                lag_v.append(max(0.0, now - newest))
            gt = gen_totals()
            consumed, _ = ingest_totals()
            max_backlog = max(max_backlog, gt["sent"] - consumed)
            for proc, _ in workers:
                if proc.poll() is not None:
                    raise RuntimeError(f"an ingest worker exited with {proc.returncode}")
            if all(p.poll() is not None for p, _ in gens):
                break
            if gt["seconds"] < duration:  # still publishing: the CPU window ends here
                cpu1, w1 = cpu_now(), time.monotonic()
        stopped = time.monotonic()
        gt = gen_totals()
        # drain: until the ingest has written every acknowledged message's points (bounded)
        expected_points = gt["acked"] * LINES_PER_MESSAGE
        drain_s: float | None = None
        while time.monotonic() - stopped < args.drain_timeout:
            _, written = ingest_totals()
            if written >= expected_points:
                drain_s = time.monotonic() - stopped
                break
            newest = newest_ts_s(influxd.url, canaries)
            if newest is not None:
                lag_t.append(time.time() - t0)
                lag_v.append(max(0.0, time.time() - newest))
            time.sleep(0.5)
        cpu2 = cpu_now()  # whole run, publishing and draining: the cost of every message
        time.sleep(1.5)  # the stats file is rewritten every second; let the last writes land
        stored_accel = influx_count(influxd.url, "accel", "power_w")
        stored_seq = influx_count(influxd.url, "agent", "seq")
        stored_coll = influx_count(influxd.url, "agent", "collect_ok")
        consumed, written = ingest_totals()
    finally:
        for proc in reversed(procs):
            stop_proc(proc)
        for log in logs:
            log.close()
        influxd.stop()
        mosq.stop()

    wall = max(w1 - w0, 1e-9)
    cpu = {k: round(100 * (cpu1[k] - cpu0[k]) / wall, 1) for k in cpu0}
    published = gt["acked"] * LINES_PER_MESSAGE
    stored = stored_accel + stored_seq + stored_coll
    half = len(lag_v) // 2
    lag_slope = slope(lag_t[half:], lag_v[half:]) if lag_v else 0.0
    last_lag = lag_v[-1] if lag_v else float("inf")
    growing = lag_slope > 0.05 and last_lag > max(5.0, 0.1 * duration)
    gen_bound = (
        gt["max_lag_s"] > args.max_gen_lag
        or gt["acked"] < nodes * duration
        or gt["disconnects"] > 0
    )
    lost = published - stored
    msgs = max(gt["acked"], 1)
    cost = {k: round(1000 * (cpu2[k] - cpu0[k]) / msgs, 3) for k in cpu0}  # CPU ms per message
    pipeline_ms = cost["ingest"] + cost["influxd"] + cost["mosquitto"]
    cores = os.cpu_count() or 1
    drained = drain_s is not None and drain_s <= args.drain_limit
    deadletters = state / "deadletter" / "deadletter.jsonl"
    return {
        "nodes": nodes,
        "points_per_s": round(nodes * LINES_PER_MESSAGE, 1),
        "accel_points_per_s": nodes * DEVICES,
        "messages_per_s": nodes,
        "published": published,
        "stored": stored,
        "stored_accel": stored_accel,
        "lost": lost,
        "max_lag_s": round(max(lag_v, default=float("nan")), 2),
        "lag_slope_s_per_s": round(lag_slope, 4),
        "max_backlog_messages": max_backlog,
        "drain_s": None if drain_s is None else round(drain_s, 1),
        "generator_lag_s": round(gt["max_lag_s"], 3),
        "generator_bound": gen_bound,
        "refused": gt["refused"],
        "generator_disconnects": gt["disconnects"],
        "generator_max_unacked": gt["max_unacked"],
        "deadletters": deadletters.exists(),
        "ingest_messages": consumed,
        "ingest_points_written": written,
        "cpu": cpu,
        "cpu_ms_per_message": cost,
        # what the CPU costs alone would allow on this machine, idle and with no generator:
        # all cores for broker + ingest + influxd, or one core per ingest worker
        "cpu_bound_nodes": {
            "pipeline": int(cores * 1000 / pipeline_ms) if pipeline_ms else None,
            "ingest_workers": int(args.workers * 1000 / cost["ingest"]) if cost["ingest"] else None,
        },
        "undrained": drain_s is None,
        "sustained": lost == 0 and drained and not growing and not gen_bound,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nodes", default="500,1000,2000,5000", help="fleet sizes, ascending")
    p.add_argument("--duration", type=float, default=300.0, help="seconds per size (default 300)")
    p.add_argument("--quick", action="store_true", help="30 s per size (exploration)")
    p.add_argument("--workers", type=int, default=1, help="kwatt ingest worker processes")
    p.add_argument(
        "--ingest-protocol",
        type=int,
        choices=[3, 5],
        default=5,
        help="the ingest's mqtt.protocol (default 5, the config default; 3 = MQTT 3.1.1)",
    )
    p.add_argument(
        "--ingest-max-points",
        type=int,
        help="the ingest's batch.max_points (default: the config default, 5000)",
    )
    p.add_argument("--generators", type=int, default=1, help="load generator processes")
    p.add_argument("--drain-limit", type=float, default=30.0, help="max drain for 'sustained'")
    p.add_argument("--drain-timeout", type=float, default=120.0, help="max wait for the drain")
    p.add_argument("--max-gen-lag", type=float, default=1.0, help="generator lag limit, s")
    p.add_argument("--profile-ingest", metavar="DIR", help="run worker 0 under cProfile")
    p.add_argument("--keep", action="store_true", help="keep the state directory")
    p.add_argument(
        "--state-dir",
        help="where broker/InfluxDB state goes (default: the system temp dir, i.e. disk; "
        "/dev/shm takes the disk's fsync latency out)",
    )
    p.add_argument("--all", action="store_true", help="run every size, even after a failure")
    args = p.parse_args(argv)
    if args.quick:
        args.duration = 30.0
    sizes = [int(n) for n in args.nodes.split(",")]
    print(
        f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()};"
        f" {args.workers} ingest worker(s) on MQTT {args.ingest_protocol}, {args.generators} generator(s), {args.duration:g} s"
        f" per size, state in {args.state_dir or tempfile.gettempdir()}",
        flush=True,
    )
    root = Path(tempfile.mkdtemp(prefix="kwatt-bench-fleet-", dir=args.state_dir))
    results: list[dict[str, Any]] = []
    try:
        for n in sizes:
            r = run_size(args, n, root)
            results.append(r)
            c = r["cpu"]
            verdict = "sustained" if r["sustained"] else "NOT sustained"
            if r["undrained"]:
                verdict += (
                    f" (not drained in {args.drain_timeout:g} s: 'lost' includes the backlog)"
                )
            if r["generator_bound"]:
                verdict += " (generator-bound: not a kwatt result)"
            print(
                f"{n} nodes x {DEVICES} cards: {r['points_per_s']:g} points/s "
                f"({r['accel_points_per_s']} accel), published {r['published']}, "
                f"stored {r['stored']}, lost {r['lost']}, max lag {r['max_lag_s']} s "
                f"(slope {r['lag_slope_s_per_s']} s/s), max backlog {r['max_backlog_messages']} "
                f"msgs, drain {r['drain_s']} s, generator lag {r['generator_lag_s']} s; CPU % "
                f"ingest {c['ingest']}, influxd {c['influxd']}, mosquitto {c['mosquitto']}, "
                f"generator {c['generator']}; CPU ms/message {r['cpu_ms_per_message']}, "
                f"CPU-bound capacity {r['cpu_bound_nodes']} nodes: {verdict}",
                flush=True,
            )
            if not r["sustained"] and not args.all:
                break
            if not args.keep:
                shutil.rmtree(root / f"n{n}", ignore_errors=True)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"state kept in {root}", file=sys.stderr)
    best = 0
    for r in results:  # the largest size before the first failure
        if not r["sustained"]:
            break
        best = r["nodes"]
    print(
        json.dumps(
            {
                "bench": "fleet",
                "devices_per_node": DEVICES,
                "duration_s": args.duration,
                "workers": args.workers,
                "ingest_mqtt_protocol": args.ingest_protocol,
                "ingest_max_points": args.ingest_max_points or 5000,
                "generators": args.generators,
                "results": results,
                "max_sustained_nodes": best,
                "goal_nodes": GOAL_NODES,
                "met": best >= GOAL_NODES,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
