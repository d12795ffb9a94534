"""CPU cost of `kwatt top` at fleet scale: the reducer and the renderer, no broker.

    .venv/bin/python bench/bench_top.py [--nodes 1000] [--devices 8] [--seconds 10] [--refresh 0.5]

Synthetic agents publish what a real one does once a second: one batch per node with one ``accel``
line per device, a ``serving`` line and the ``agent`` lines (batch and per collector). The bench feeds
``--seconds`` seconds of that fleet traffic through :class:`kwatt.live.state.TopState` and renders the
screen (rich, to a 200-column virtual terminal) once per refresh, measuring process CPU time. It
prints the CPU share of one core that the live view needs to keep up; MQTT receive costs (paho) come
on top and are not included.
"""

from __future__ import annotations

import argparse
import io
import platform
import random
import time

from rich.console import Console

from kwatt.live.render import render
from kwatt.live.state import TopState
from kwatt.live.view import ViewOptions


def payload(site: str, node: str, devices: int, second: int, rng: random.Random) -> bytes:
    ts = 1_700_000_000_000_000_000 + second * 1_000_000_000
    lines = []
    for d in range(devices):
        util = rng.random()
        lines.append(
            f"accel,device=GPU-{node}-{d:02d},model=rngd,node={node},site={site},vendor=furiosa "
            f"clock_hz=2000000000,mem_total_bytes=51002736640i,mem_used_bytes=17000000000i,"
            f"power_limit_w=300,power_w={38 + 110 * util:.2f},temp_c={40 + 30 * util:.1f},"
            f"throttled=0i,util_ratio={util:.3f} {ts}"
        )
    lines.append(
        f"serving,node={node},runtime=furiosa-llm,service=chatbot,site={site} "
        f"latency_p50_s=0.21,latency_p99_s=0.93,requests_total={second * 10}i,"
        f"tokens_total={second * 2400 + rng.randrange(100)}i {ts}"
    )
    for name in ("rngd", "llm"):
        lines.append(
            f"agent,collector={name},node={node},site={site} collect_duration_s=0.004,"
            f"collect_errors_total=0i,collect_ok=1i {ts}"
        )
    lines.append(
        f"agent,node={node},site={site} dropped_total=0i,seq={second + 1}i,spool_bytes=0i {ts}"
    )
    return ("\n".join(lines) + "\n").encode()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--devices", type=int, default=8)
    p.add_argument("--seconds", type=int, default=10, help="seconds of fleet traffic to feed")
    p.add_argument("--refresh", type=float, default=0.5, help="screen refresh period (s)")
    args = p.parse_args()

    rng = random.Random(7)
    site = "dc1"
    nodes = [f"node-{i:04d}" for i in range(args.nodes)]
    traffic = [
        [(f"kwatt/v1/{site}/{n}/metrics", payload(site, n, args.devices, s, rng)) for n in nodes]
        for s in range(args.seconds)
    ]
    state = TopState()
    for n in nodes[: max(1, args.nodes // 100)]:  # 1 % of the fleet offline
        state.feed(f"kwatt/v1/{site}/{n}/status", b'{"state":"offline","since":1}', 0.0)
    opts = ViewOptions(target_work_per_j=2.0, stale_s=1e9)
    sink = io.StringIO()
    console = Console(
        file=sink, width=200, height=60, color_system="truecolor", force_terminal=True
    )

    frames = int(1 / args.refresh)
    feed_cpu = render_cpu = 0.0
    messages = lines = 0
    for second, batch in enumerate(traffic):
        t0 = time.process_time()
        for topic, body in batch:
            state.feed(topic, body, float(second))
        feed_cpu += time.process_time() - t0
        messages += len(batch)
        lines += sum(body.count(b"\n") for _, body in batch)
        t0 = time.process_time()
        for _ in range(frames):
            sink.seek(0)
            sink.truncate()
            console.print(render(state, opts, float(second)))
        render_cpu += time.process_time() - t0

    feed_per_s = feed_cpu / args.seconds
    render_per_frame = render_cpu / (args.seconds * frames)
    total = feed_per_s + frames * render_per_frame
    print(
        f"kwatt top bench: {args.nodes} nodes x {args.devices} devices, "
        f"{messages / args.seconds:.0f} msg/s, {lines / args.seconds:.0f} lines/s, "
        f"refresh every {args.refresh:g} s ({platform.python_implementation()} "
        f"{platform.python_version()}, {platform.machine()})"
    )
    print(
        f"  reducer : {feed_per_s * 1000:7.1f} ms CPU per second of traffic "
        f"({feed_cpu / lines * 1e6:.1f} us/line)"
    )
    print(
        f"  render  : {render_per_frame * 1000:7.1f} ms CPU per frame "
        f"(top {opts.limit} of {args.nodes} nodes drawn, rest summed)"
    )
    print(f"  total   : {total * 100:7.1f} % of one core")
    print(f"  screen  : {len(sink.getvalue().splitlines())} lines")


if __name__ == "__main__":
    main()
