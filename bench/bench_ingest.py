"""Ingest throughput: `kwatt ingest` (MQTT → validation → InfluxDB) against a plain `/write` baseline.

    .venv/bin/python bench/bench_ingest.py [--points 300000] [--nodes 500] [--repeat 1]

One run starts a private Mosquitto and a private influxd (demo/services.py) and pre-generates the
data: ``--points`` points (rounded up to whole payloads) of 500 nodes × 8 RNGD cards polled once a
second, as ``accel`` lines carrying every DESIGN §3 device field, one MQTT payload per node per
second encoded by ``kwatt.wire.lineproto.encode`` from ``kwatt.wire.model.Sample`` objects, each closed by
the agent's batch line (``agent`` measurement: ``seq``, ``dropped_total``, ``spool_bytes``):
byte for byte what ``kwatt agent`` publishes on ``kwatt/v1/<site>/<node>/metrics``. Every line
counts as a point.

* Phase A, the baseline: the same lines POSTed to InfluxDB's plain ``/write`` (a fresh database) in
  batches of the ingest's default ``batch.max_points`` (5000) over one keep-alive HTTP connection,
  as fast as InfluxDB answers. Figure: points / wall time until the last write returned 204.
* Phase B: `kwatt ingest` as a separate process with the default batch settings (a fresh
  database), a separate publisher process (paho-mqtt, QoS 1, payloads pre-encoded and loaded
  before the clock starts, 1000 messages in flight) publishing every payload as fast as the broker
  acknowledges. Figure: points / wall time from the first publish until InfluxDB holds every
  point. Completion is detected by polling for the last accel line published every 50 ms (a
  query of one series, < 1 ms of influxd CPU; one worker writes in arrival order, so that line
  lands last), so the figure is late by up to 50 ms plus one query. Then every point is counted
  (``count(power_w)`` of ``accel`` plus ``count(seq)`` of ``agent``: every line of those carries
  that field, so each count is a number of points) and ``lost`` = published − stored. The
  ingest's CPU time (utime + stime from /proc/PID/stat) over the same interval gives CPU µs per
  point; Mosquitto's, influxd's and the publisher's CPU are printed too.

Drift (the machine's cores are shared with other work) is cancelled by running the baseline before
and after each ingest run and taking the mean of all baseline runs; ``--repeat`` repeats the ingest
phase (each with a fresh database and ingest process) and averages it. The CPU figures are the
steadier ones on a busy machine.

Diagnostics: ``--profile FILE`` runs the ingest under cProfile (its figures then include the
profiler's overhead; main thread only) and prints the top functions; ``--py-spy FILE`` samples
every thread of the ingest with py-spy (``pip install py-spy``) while it is measured and writes
collapsed stacks; ``--ingest-src DIR`` runs another source tree's ingest (A/B comparisons, e.g.
``git archive HEAD agent collectors emulators analytics | tar -x -C DIR``). ``--keep`` keeps the
state directory (logs, databases).

The last line of stdout is one JSON object; ``goal_ratio`` is the goal (ingest ≥ 0.8 × plain
write). Benchmarks print; they never assert.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import pickle
import platform
import pstats
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from kwatt.demo.services import Influxd, Mosquitto
from kwatt.wire import lineproto, topics
from kwatt.wire.influx import InfluxQL
from kwatt.wire.model import Sample
from kwatt.wire.settings import InfluxConfig

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
SITE = "bench"
DEVICES_PER_NODE = 8
MAX_POINTS = 5000  # ingest/config.py BatchConfig.max_points default
POLL_S = 0.05
PUB_INFLIGHT = 1000


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


# ------------------------------------------------------------------------------------- the data


def generate(
    points: int, nodes: int, seed: int = 1
) -> tuple[list[tuple[str, bytes]], dict[str, Any]]:
    """Payloads (topic, line protocol) in publishing order: second by second, node by node."""
    rng = random.Random(seed)
    per_payload = DEVICES_PER_NODE + 1
    seconds = max(1, -(-points // (per_payload * nodes)))
    base_ns = (time.time_ns() // 10**9 - seconds - 5) * 10**9
    node_names = [f"node-{i:04d}" for i in range(nodes)]
    offsets = [rng.randrange(0, 900_000_000) for _ in range(nodes)]  # each node's poll phase
    cards: list[list[dict[str, Any]]] = [
        [
            {
                "device": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "energy": rng.uniform(1e5, 1e7),
                "util": rng.uniform(0.2, 0.9),
            }
            for _ in range(DEVICES_PER_NODE)
        ]
        for _ in range(nodes)
    ]
    payloads: list[tuple[str, bytes]] = []
    total = 0
    for s in range(seconds):
        for n, node in enumerate(node_names):
            if total >= points:
                break
            ts = base_ns + s * 10**9 + offsets[n]
            samples = []
            for c in cards[n]:
                c["util"] = min(1.0, max(0.0, c["util"] + rng.uniform(-0.05, 0.05)))
                power = round(55.0 + 125.0 * c["util"] + rng.uniform(-2, 2), 3)  # mW → W
                c["energy"] += power
                temp = round(38.0 + 30.0 * c["util"] + rng.uniform(-0.5, 0.5), 2)
                samples.append(
                    Sample.accel(
                        ts,
                        vendor="furiosa",
                        model="rngd",
                        device=c["device"],
                        service="chatbot",
                        power_w=power,
                        energy_j=round(c["energy"], 6),  # µJ → J
                        util_ratio=round(c["util"], 4),
                        temp_c=temp,
                        clock_hz=1.0e9 if temp < 66 else 8.0e8,
                        mem_used_bytes=int(24e9 + 2e9 * c["util"]),
                        mem_total_bytes=51_539_607_552,
                        power_limit_w=180.0,
                        throttled=int(temp >= 66),
                    )
                )
            samples.append(
                Sample.agent(
                    ts + rng.randrange(50_000_000, 100_000_000),
                    seq=s + 1,
                    dropped_total=0,
                    spool_bytes=rng.randrange(0, 4096),
                )
            )
            payloads.append(
                (topics.metrics_topic(SITE, node), lineproto.encode(samples, site=SITE, node=node))
            )
            total += len(samples)
    meta = {
        "points": total,
        "seconds": seconds,
        # the last accel line published: once it is stored, so is everything before it
        "last_device": payloads[-1][1]
        .split(b"\n")[-3]
        .split(b",device=")[1]
        .split(b",")[0]
        .decode(),
        "last_ts": payloads[-1][1].split(b"\n")[-3].rsplit(b" ", 1)[1].decode(),
        "first_ns": base_ns,
    }
    return payloads, meta


def write_batches(payloads: list[tuple[str, bytes]], max_points: int) -> list[bytes]:
    """The lines of every payload, in order, as /write bodies of ``max_points`` lines."""
    lines = [ln for _, p in payloads for ln in p.split(b"\n") if ln]
    return [b"\n".join(lines[i : i + max_points]) + b"\n" for i in range(0, len(lines), max_points)]


# --------------------------------------------------------------------------------------- InfluxDB


def stored_points(url: str, db: str) -> int:
    q = InfluxQL(InfluxConfig(url=url, database=db))
    try:
        total = 0
        for stmt in ('SELECT count("power_w") FROM "accel"', 'SELECT count("seq") FROM "agent"'):
            for s in q.query(stmt):
                total += sum(int(v[1] or 0) for v in s.values)
        return total
    finally:
        q.close()


def plain_write(influxd: Influxd, db: str, bodies: list[bytes], points: int) -> dict[str, float]:
    influxd.create_database(db)
    conn = http.client.HTTPConnection(influxd.host, influxd.port, timeout=60)
    path = f"/write?db={db}&precision=ns"
    headers = {"Content-Type": "text/plain; charset=utf-8"}
    try:
        c0 = cpu_s(influxd.pid or 0)
        t0 = time.monotonic()
        for body in bodies:
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            if resp.status != 204:
                raise RuntimeError(f"/write HTTP {resp.status}: {data[:300]!r}")
        t1 = time.monotonic()
        c1 = cpu_s(influxd.pid or 0)
    finally:
        conn.close()
    stored = stored_points(influxd.url, db)
    return {
        "seconds": t1 - t0,
        "points_per_s": points / (t1 - t0),
        "influxd_cpu_s": c1 - c0,
        "lost": points - stored,
    }


# -------------------------------------------------------------------------------------- publisher


def publisher_main(path: str, host: str, port: int) -> int:
    """Child process: load pre-encoded payloads, connect, wait for 'go' on stdin, publish all at
    QoS 1 with PUB_INFLIGHT messages in flight, print timings as JSON once every PUBACK is in."""

    with Path(path).open("rb") as f:
        payloads: list[tuple[str, bytes]] = pickle.load(f)  # our own file
    done = threading.Event()
    acked = [0]

    def on_publish(client: object, userdata: object, mid: int, rc: object, props: object) -> None:
        acked[0] += 1
        if acked[0] == len(payloads):
            done.set()

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"bench-pub-{os.getpid()}",
        protocol=mqtt.MQTTv311,
        clean_session=True,
    )
    client.max_inflight_messages_set(PUB_INFLIGHT)
    client.max_queued_messages_set(0)
    client.on_publish = on_publish
    client.connect(host, port, keepalive=60)
    client.loop_start()
    print("ready", flush=True)
    sys.stdin.readline()
    c0 = time.process_time()
    t_first = time.monotonic()
    publish = client.publish
    for topic, payload in payloads:
        publish(topic, payload, qos=1)
    t_sent = time.monotonic()
    done.wait()
    t_acked = time.monotonic()
    cpu = time.process_time() - c0
    client.disconnect()
    client.loop_stop()
    print(
        json.dumps(
            {
                "t_first": t_first,
                "t_sent": t_sent,
                "t_acked": t_acked,
                "messages": len(payloads),
                "cpu_s": cpu,
            }
        ),
        flush=True,
    )
    return 0


# ----------------------------------------------------------------------------------------- ingest


def kwatt_argv() -> list[str]:
    exe = Path(sys.executable).parent / "kwatt"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "kwatt.cli"]


def terminate(proc: subprocess.Popen[Any], timeout_s: float = 20.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def last_stored(q: InfluxQL, meta: dict[str, Any]) -> bool:
    """Is the last accel line published stored? A query of one series: cheap (< 1 ms of influxd)."""
    stmt = (
        f'SELECT count("power_w") FROM "accel" WHERE "device" = \'{meta["last_device"]}\' '
        f"AND time = {meta['last_ts']}"
    )
    return any(int(v[1] or 0) for s in q.query(stmt) for v in s.values)


def ingest_run(
    mosq: Mosquitto,
    influxd: Influxd,
    state: Path,
    db: str,
    payload_file: Path,
    meta: dict[str, Any],
    run: int,
    profile: Path | None,
    timeout_s: float,
    pyspy: Path | None = None,
    src: Path | None = None,
) -> dict[str, float]:
    influxd.create_database(db)
    run_id = f"{os.getpid()}-{run}"
    cfg = {
        "mqtt": {"url": mosq.url, "client_id": f"bench-ingest-{run_id}"},
        "group": f"bench-{run_id}",
        "influx": {"url": influxd.url, "database": db},
        "deadletter_dir": str(state / f"deadletter-{run}"),
        "log_level": "info",
    }
    cfg_path = state / f"ingest-{run}.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    log_path = state / f"ingest-{run}.log"
    stats_path = state / f"ingest-{run}-stats.json"
    argv = [*kwatt_argv(), "ingest", "--config", str(cfg_path), "--stats-file", str(stats_path)]
    if profile is not None:
        argv = [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "kwatt.cli", *argv[-5:]]
    points = meta["points"]
    procs: list[subprocess.Popen[Any]] = []
    with log_path.open("wb") as log:
        try:
            env = None
            if src is not None:  # another checkout's ingest (A/B comparisons)
                argv = [sys.executable, "-m", "kwatt.cli", *argv[-5:]]
                env = {**os.environ, "PYTHONPATH": str(src)}
            ingest = subprocess.Popen(argv, cwd=src or REPO, stdout=log, stderr=log, env=env)
            procs.append(ingest)
            pub = subprocess.Popen(
                [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "--_publish",
                    str(payload_file),
                    str(mosq.port),
                ],
                cwd=REPO,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            procs.append(pub)
            assert pub.stdin is not None and pub.stdout is not None
            if pub.stdout.readline().strip() != "ready":
                raise RuntimeError("publisher did not start")
            deadline = time.monotonic() + 30
            while b"subscribed to" not in log_path.read_bytes():
                if ingest.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"ingest did not subscribe: {log_path.read_text()[-2000:]}")
                time.sleep(0.05)
            time.sleep(0.5)  # let the ingest settle after subscribing
            q = InfluxQL(InfluxConfig(url=influxd.url, database=db))
            try:
                if pyspy is not None:
                    spy = subprocess.Popen(
                        [str(Path(sys.executable).parent / "py-spy"), "record", "--pid",
                         str(ingest.pid), "--threads", "--idle", "--rate", "200", "--format",
                         "raw", "--output", str(pyspy), "--nonblocking"],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )  # fmt: skip
                    procs.append(spy)
                    time.sleep(1.0)
                c0 = cpu_s(ingest.pid)
                m0 = cpu_s(mosq.pid or 0)
                i0 = cpu_s(influxd.pid or 0)
                pub.stdin.write("go\n")
                pub.stdin.flush()
                deadline = time.monotonic() + timeout_s
                timed_out = False
                while not last_stored(q, meta):
                    if time.monotonic() > deadline or ingest.poll() is not None:
                        timed_out = True
                        break
                    time.sleep(POLL_S)
                t_done = time.monotonic()
                c1 = cpu_s(ingest.pid)
                m1 = cpu_s(mosq.pid or 0)
                i1 = cpu_s(influxd.pid or 0)
                if pyspy is not None:
                    spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
                    spy.wait(30)
            finally:
                q.close()
            pub_doc = json.loads(pub.stdout.readline() or "{}")
            pub.wait(30)
            stored = stored_points(influxd.url, db)
            for _ in range(20):  # completion is judged by the last line: let stragglers land
                if stored >= points:
                    break
                time.sleep(0.25)
                stored = stored_points(influxd.url, db)
            t_first = pub_doc.get("t_first", t_done)
        finally:
            for p in reversed(procs):
                terminate(p)
                for stream in (p.stdin, p.stdout):
                    if stream is not None:
                        with contextlib.suppress(OSError):
                            stream.close()
    stats = json.loads(stats_path.read_text()) if stats_path.exists() else {}
    wall = t_done - t_first
    return {
        "seconds": wall,
        "points_per_s": points / wall,
        "cpu_s": c1 - c0,
        "cpu_us_per_point": 1e6 * (c1 - c0) / points,
        "mosquitto_cpu_s": m1 - m0,
        "influxd_cpu_s": i1 - i0,
        "publish_s": pub_doc.get("t_acked", t_done) - t_first,
        "publisher_cpu_s": pub_doc.get("cpu_s", float("nan")),
        "stored": stored,
        "lost": points - stored,
        "timed_out": timed_out,
        "writes": stats.get("writes", 0),
        "messages_deadlettered": stats.get("messages_deadlettered", 0),
        "lines_rejected": stats.get("lines_rejected", 0),
    }


def print_profile(path: Path, top: int = 25) -> None:
    st = pstats.Stats(str(path))
    total = st.total_tt  # type: ignore[attr-defined]
    print(f"profile {path}: {total:.2f} s of CPU in Python functions; top by own time:")
    rows = sorted(st.stats.items(), key=lambda kv: kv[1][2], reverse=True)  # type: ignore[attr-defined]
    for (file, line, func), (_cc, nc, tt, ct, _callers) in rows[:top]:
        where = f"{Path(file).name}:{line}" if line else file
        print(
            f"  {100 * tt / total:5.1f}% own {100 * ct / total:5.1f}% cum {nc:>9} calls  {func} ({where})"
        )


# -------------------------------------------------------------------------------------------- main


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--_publish"]:
        return publisher_main(argv[1], "127.0.0.1", int(argv[2]))
    # SIGTERM (and SIGINT) unwind through the finally blocks: every child is stopped
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--points", type=int, default=300_000, help="points to send (default 300000)")
    p.add_argument("--nodes", type=int, default=500, help="nodes, 8 cards each (default 500)")
    p.add_argument("--repeat", type=int, default=1, help="ingest runs (default 1)")
    p.add_argument("--timeout", type=float, default=120.0, help="per ingest run, seconds")
    p.add_argument("--profile", type=Path, help="run the ingest under cProfile, stats to FILE")
    p.add_argument("--keep", action="store_true", help="keep the state directory")
    p.add_argument(
        "--ingest-src",
        type=Path,
        help="run the ingest from this source tree instead (e.g. `git archive HEAD` unpacked)",
    )
    p.add_argument(
        "--py-spy",
        type=Path,
        help="sample the ingest with py-spy (all threads, idle included) while measured; "
        "collapsed stacks to FILE",
    )
    args = p.parse_args(argv)
    print(
        f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    t = time.monotonic()
    payloads, meta = generate(args.points, args.nodes)
    bodies = write_batches(payloads, MAX_POINTS)
    points = meta["points"]
    size = sum(len(pl) for _, pl in payloads)
    print(
        f"data: {points} points in {len(payloads)} payloads ({args.nodes} nodes × "
        f"{meta['seconds']} s, {size / len(payloads):.0f} B/payload, {size / points:.0f} B/line), "
        f"{len(bodies)} /write batches of ≤{MAX_POINTS}; generated in {time.monotonic() - t:.1f} s"
    )
    state = Path(tempfile.mkdtemp(prefix="kwatt-bench-ingest-"))
    payload_file = state / "payloads.pickle"
    plain: list[dict[str, float]] = []
    ingests: list[dict[str, float]] = []
    try:
        with payload_file.open("wb") as f:
            pickle.dump(payloads, f, protocol=pickle.HIGHEST_PROTOCOL)
        del payloads
        with contextlib.ExitStack() as stack:
            mosq = stack.enter_context(Mosquitto(state / "mosquitto"))
            influxd = stack.enter_context(Influxd(state / "influxdb"))

            def baseline() -> None:
                r = plain_write(influxd, f"plain_{len(plain)}", bodies, points)
                plain.append(r)
                print(
                    f"plain /write #{len(plain)}: {r['points_per_s']:,.0f} points/s "
                    f"({r['seconds']:.2f} s, influxd CPU {r['influxd_cpu_s']:.2f} s, lost {r['lost']})",
                    flush=True,
                )

            baseline()
            for run in range(args.repeat):
                prof = args.profile if args.profile and run == 0 else None
                r = ingest_run(
                    mosq,
                    influxd,
                    state,
                    f"ingest_{run}",
                    payload_file,
                    meta,
                    run,
                    prof,
                    args.timeout,
                    args.py_spy if run == 0 else None,
                    args.ingest_src,
                )
                ingests.append(r)
                print(
                    f"kwatt ingest #{run + 1}: {r['points_per_s']:,.0f} points/s ({r['seconds']:.2f} s"
                    f"{', TIMED OUT' if r['timed_out'] else ''}); ingest CPU {r['cpu_s']:.2f} s = "
                    f"{r['cpu_us_per_point']:.1f} µs/point; mosquitto CPU {r['mosquitto_cpu_s']:.2f} s, "
                    f"influxd CPU {r['influxd_cpu_s']:.2f} s; publisher done in {r['publish_s']:.2f} s "
                    f"(CPU {r['publisher_cpu_s']:.2f} s); {r['writes']} writes; stored {r['stored']}, "
                    f"lost {r['lost']}, dead letters {r['messages_deadlettered']}",
                    flush=True,
                )
                baseline()
    finally:
        if args.keep:
            with contextlib.suppress(OSError):
                payload_file.unlink()
        else:
            shutil.rmtree(state, ignore_errors=True)

    def mean(rows: list[dict[str, float]], key: str) -> float:
        return sum(float(r[key]) for r in rows) / len(rows)

    plain_pps = mean(plain, "points_per_s")
    ingest_pps = mean(ingests, "points_per_s")
    ratio = ingest_pps / plain_pps
    lost = sum(int(r["lost"]) for r in ingests)
    summary = {
        "bench": "ingest",
        "points": points,
        "nodes": args.nodes,
        "plain_write_points_per_s": round(plain_pps),
        "ingest_points_per_s": round(ingest_pps),
        "ratio": round(ratio, 3),
        "ingest_cpu_us_per_point": round(mean(ingests, "cpu_us_per_point"), 2),
        "ingest_cpu_s": round(mean(ingests, "cpu_s"), 2),
        "lost": lost,
        "goal_ratio": 0.8,
        "met": ratio >= 0.8 and lost == 0,
    }
    print(
        f"ingest {ingest_pps:,.0f} points/s vs plain /write {plain_pps:,.0f} points/s (mean of "
        f"{len(plain)} runs before/after): ratio {ratio:.2f} (goal ≥ 0.8), "
        f"{summary['ingest_cpu_us_per_point']} µs CPU/point, lost {lost}"
        + (f"; state kept in {state}" if args.keep else "")
    )
    if args.profile:
        print_profile(args.profile)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
