"""Load generator for bench/bench_fleet.py: publishes what N kwatt agents would, without N agents.

    .venv/bin/python bench/_fleetgen.py --port 1883 --nodes 5000 --index 0 --procs 1 \\
        --t0 1700000000.0 --duration 30 --stats-file gen-0.json

One process takes the nodes ``j`` with ``j % procs == index`` out of ``nodes`` and publishes, per node
per second, one QoS-1 message on ``kwatt/v1/<site>/<node>/metrics`` at ``t0 + k + j/nodes`` (the
fleet's publications spread evenly over each second). The payload is what agent/runtime.py builds for
a node with one collector polling 8 cards once a second: 8 ``accel`` lines (every DESIGN §3 device
field plus the serving counters and latencies, tagged vendor/model/device/service), the collector's
``agent`` line (collect_ok, collect_duration_s, collect_errors_total) and the batch's ``agent`` line
(seq from 1, dropped_total, spool_bytes). Lines come from a per-node template filled with field
strings made by kwatt.wire.lineproto.encode from kwatt.wire.model.Sample objects; at start the template output
is checked byte for byte against lineproto.encode of the same samples (the process exits 3 if not).

All of this process's nodes share one MQTT connection (paho-mqtt, MQTT 5, many messages in flight):
the private broker has no ACL, so one connection may publish to every node's topic. A real fleet has
one connection per node. Retained ``status``/``inventory`` messages are not sent (the ingest does not
subscribe to them).

Stats (JSON, rewritten every second, atomically): messages sent and acknowledged, PUBACKs with a
non-zero reason (e.g. 0x10 no matching subscribers: a real agent would resend those), and the
generator's lag behind its schedule (now − due at each publish), max and per-second series.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from kwatt.wire import lineproto, topics
from kwatt.wire.model import Sample

SITE = "fleet"
DEVICES = 8
VENDOR, MODEL, SERVICE, COLLECTOR = "furiosa", "RNGD", "chatbot", "furiosa"
PHASES = 32  # node j's values run PHASES-periodic offsets apart, so nodes do not all read alike
SEQ_DELAY_NS = 2_000_000  # the batch's agent point is stamped a little after the poll


def node_name(j: int) -> str:
    return f"node{j:05d}"


def device_id(j: int, d: int) -> str:
    return f"{j:08x}-0000-4000-8000-{d:012x}"


def accel_sample(ts_ns: int, j: int, d: int, s: int) -> Sample:
    """Card ``d`` of node ``j`` at second ``s``: realistic RNGD-like readings, counters rising."""
    util = 0.55 + 0.4 * (((s * 7 + d * 3) % 17) / 16 - 0.5)
    power = round(60.0 + 110.0 * util + (s % 5) * 0.37, 3)
    infer_rate = 40 + d
    return Sample.accel(
        ts_ns,
        vendor=VENDOR,
        model=MODEL,
        device=device_id(j, d),
        service=SERVICE,
        power_w=power,
        energy_j=round(1_000_000.0 + d * 1234.5 + s * power, 3),
        util_ratio=round(util, 4),
        temp_c=round(45.0 + 25.0 * util + d * 0.5, 2),
        clock_hz=1.0e9 if util > 0.3 else 5.0e8,
        mem_used_bytes=(20 + (s + d) % 8) * 1024**3,
        mem_total_bytes=48 * 1024**3,
        power_limit_w=180.0,
        throttled=0,
        requests_total=1000 * d + s * 4,
        inferences_total=50_000 * d + s * infer_rate,
        tokens_total=900_000 * d + s * 1500,
        latency_p50_s=round(0.08 + 0.01 * (s % 7), 4),
        latency_p99_s=round(0.3 + 0.02 * (s % 11), 4),
    )


def collector_sample(ts_ns: int, s: int) -> Sample:
    return Sample.agent(
        ts_ns,
        collector=COLLECTOR,
        collect_ok=1,
        collect_duration_s=0.004 + 0.0001 * (s % 13),
        collect_errors_total=0,
    )


def seq_sample(ts_ns: int, seq: int) -> Sample:
    return Sample.agent(ts_ns, seq=seq, dropped_total=0, spool_bytes=0)


def node_samples(j: int, s: int, ts_ns: int, seq: int) -> list[Sample]:
    """What the agent of node ``j`` batches for poll ``s`` (agent/runtime.py's order)."""
    return [
        *(accel_sample(ts_ns, j, d, s) for d in range(DEVICES)),
        collector_sample(ts_ns, s),
        seq_sample(ts_ns + SEQ_DELAY_NS, seq),
    ]


def _fields(line: bytes) -> bytes:
    """The field part of an encoded line (tag values never hold spaces: DESIGN §4)."""
    return line.split(b" ")[1]


class FieldTable:
    """Field strings per card and second, encoded once by lineproto.encode from Samples."""

    def __init__(self, seconds: int) -> None:
        ts = 1_700_000_000 * 10**9
        self.accel = [
            [
                _fields(lineproto.encode([accel_sample(ts, 0, d, s)], site=SITE, node="x"))
                for s in range(seconds)
            ]
            for d in range(DEVICES)
        ]
        self.collector = [
            _fields(lineproto.encode([collector_sample(ts, s)], site=SITE, node="x"))
            for s in range(seconds)
        ]


def node_template(j: int) -> bytes:
    """Node ``j``'s payload with ``%s`` for each line's fields and timestamp (seq line: ``%d``)."""
    ts = 1_700_000_000 * 10**9
    lines = lineproto.encode(node_samples(j, 0, ts, 1), site=SITE, node=node_name(j)).splitlines()
    out = [line.split(b" ")[0].replace(b"%", b"%%") + b" %s %s" for line in lines[:-1]]
    out.append(lines[-1].split(b" ")[0] + b" dropped_total=0i,seq=%di,spool_bytes=0i %s")
    return b"\n".join(out) + b"\n"


def payload(tpl: bytes, table: FieldTable, j: int, s: int, ts_ns: int, seq: int) -> bytes:
    ts = b"%d" % ts_ns
    args: list[object] = []
    for d in range(DEVICES):
        args += (table.accel[d][s], ts)
    args += (table.collector[s], ts, seq, b"%d" % (ts_ns + SEQ_DELAY_NS))
    return tpl % tuple(args)


def verify(table: FieldTable, nodes: list[int]) -> None:
    """The template path must give exactly lineproto.encode's bytes."""
    for j in nodes[:3]:
        tpl = node_template(j)
        for s, seq in ((0, 1), (5, 6), (len(table.collector) - 1, 12345)):
            ts_ns = time.time_ns()
            want = lineproto.encode(node_samples(j, s, ts_ns, seq), site=SITE, node=node_name(j))
            got = payload(tpl, table, j, s, ts_ns, seq)
            if got != want:
                sys.stderr.write(f"template mismatch for node {j} second {s}:\n{got!r}\n{want!r}\n")
                sys.exit(3)


class Stats:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.sent = 0
        self.acked = 0
        self.refused = 0
        self.refused_reasons: dict[str, int] = {}
        self.max_lag_s = 0.0
        self.lag_series: list[float] = []  # max lag per second of schedule
        self.unacked_series: list[int] = []  # sent - acked at the end of each second
        self.expected = 0
        self.connects = 0
        self.disconnects = 0
        self.done = False
        self.lock = threading.Lock()

    def write(self) -> None:
        doc = {
            "sent": self.sent,
            "acked": self.acked,
            "refused": self.refused,
            "refused_reasons": self.refused_reasons,
            "max_lag_s": round(self.max_lag_s, 4),
            "lag_series": [round(x, 3) for x in self.lag_series],
            "unacked_series": self.unacked_series,
            "expected": self.expected,
            "max_unacked": max(self.unacked_series, default=0),
            "cpu_s": round(time.process_time(), 3),
            "connects": self.connects,
            "disconnects": self.disconnects,
            "done": self.done,
        }
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc), encoding="utf-8")
        tmp.replace(self.path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--nodes", type=int, required=True, help="fleet size (all processes)")
    p.add_argument("--index", type=int, default=0, help="this process's index")
    p.add_argument("--procs", type=int, default=1, help="generator processes in all")
    p.add_argument("--t0", type=float, required=True, help="wall time of the first second")
    p.add_argument("--duration", type=int, required=True, help="seconds of publications")
    p.add_argument("--stats-file", type=Path, required=True)
    p.add_argument("--ack-timeout", type=float, default=120.0)
    a = p.parse_args(argv)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    mine = list(range(a.index, a.nodes, a.procs))
    table = FieldTable(a.duration + PHASES)
    verify(table, mine)
    templates = {j: node_template(j) for j in mine}
    topic = {j: topics.metrics_topic(SITE, node_name(j)) for j in mine}
    stats = Stats(a.stats_file)
    stats.expected = len(mine) * a.duration

    def on_publish(
        client: mqtt.Client, userdata: object, mid: int, reason: object, props: object
    ) -> None:
        code = int(getattr(reason, "value", 0) or 0)
        with stats.lock:
            if code == 0:
                stats.acked += 1
            else:
                stats.refused += 1
                stats.refused_reasons[f"0x{code:02x}"] = stats.refused_reasons.get(
                    f"0x{code:02x}", 0
                )
                stats.refused_reasons[f"0x{code:02x}"] += 1

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"kwatt-fleetgen-{os.getpid()}-{a.index}",
        protocol=mqtt.MQTTv5,
    )
    # 0 = no client-side window. With a window, paho 2.2 rescans every in-flight message on each
    # PUBACK (Client._update_inflight): quadratic, measured to stall this process for ~20 s at
    # 3000 messages/s once ~18000 were in flight. Mosquitto's receive maximum (65535) bounds it.
    client.max_inflight_messages_set(0)
    client.max_queued_messages_set(0)
    client.on_publish = on_publish

    def on_connect(client: mqtt.Client, *args: object) -> None:
        stats.connects += 1

    def on_disconnect(
        client: mqtt.Client, userdata: object, flags: object, reason: object, props: object
    ) -> None:
        stats.disconnects += 1
        sys.stderr.write(f"disconnected: {reason}\n")

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.connect(a.host, a.port, keepalive=30)
    client.loop_start()
    stats.write()  # the setup's CPU is in cpu_s before t0: the parent takes its first reading then
    try:
        # schedule: node j publishes second k at t0 + k + j/nodes
        offsets = [(j / a.nodes, j) for j in mine]
        second_lag = 0.0
        for k in range(a.duration):
            base = a.t0 + k
            second_lag = 0.0
            i = 0
            n = len(offsets)
            while i < n and not stop.is_set():
                now = time.time()
                due = base + offsets[i][0]
                if due > now:
                    time.sleep(min(due - now, 0.5))
                    continue
                # publish everything due by now
                while i < n:
                    off, j = offsets[i]
                    due = base + off
                    if due > now:
                        break
                    lag = now - due
                    second_lag = max(second_lag, lag)
                    s = k + (j % PHASES)
                    body = payload(templates[j], table, j, s, int(due * 1e9), k + 1)
                    info = client.publish(topic[j], body, qos=1)
                    if info.rc != mqtt.MQTT_ERR_SUCCESS:
                        sys.stderr.write(f"publish failed rc={info.rc}\n")
                        stop.set()
                        break
                    stats.sent += 1
                    i += 1
            if stop.is_set():
                break
            with stats.lock:
                stats.lag_series.append(second_lag)
                stats.unacked_series.append(stats.sent - stats.acked - stats.refused)
                stats.max_lag_s = max(stats.max_lag_s, second_lag)
                stats.write()
        # wait for the outstanding PUBACKs (bounded)
        deadline = time.monotonic() + a.ack_timeout
        while time.monotonic() < deadline and not stop.is_set():
            with stats.lock:
                if stats.acked + stats.refused >= stats.sent:
                    break
            time.sleep(0.05)
    finally:
        with stats.lock:
            stats.done = True
            stats.write()
        client.disconnect()
        client.loop_stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
