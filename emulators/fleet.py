"""Many emulated nodes in one process, for scale tests: ``kwatt emulate fleet --nodes N …``.

Node ``k`` lives under ``ROOT/node{k:03d}`` with seed ``seed + k`` and name ``{prefix}{k:03d}``; all
nodes share one event loop and are stepped together every ``--period`` wall seconds (emulator time
runs ``--speed`` × faster). ``--print-config DIR`` writes one agent config per node
(``DIR/node000.yaml`` …); without it the configs are printed one after the other, separated by
``---``. A JSON ready line ``{"root", "nodes": [{"node", "root", endpoints…}]}`` follows.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from pathlib import Path
from types import TracebackType

from kwatt.emulators.node import ConfigCheck, Node, _node_parser, agent_config, node_options
from kwatt.emulators.state import write_atomic

__all__ = ["Fleet", "main"]


class Fleet:
    """``count`` nodes built from the same options, with distinct names, roots and seeds."""

    def __init__(self, root: Path, nodes: list[Node]) -> None:
        self.root = root
        self.nodes = nodes

    async def start(self) -> None:
        for n in self.nodes:
            await n.start()

    async def aclose(self) -> None:
        for n in self.nodes:
            await n.aclose()

    async def __aenter__(self) -> Fleet:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def step(self, t_s: float) -> None:
        for n in self.nodes:
            n.step(t_s)

    async def run(self, stop: asyncio.Event, period_s: float, speed: float) -> None:
        origin = time.monotonic()
        paused_s = [0.0] * len(self.nodes)  # per node: wall time left out of its emulator time
        last = time.monotonic()
        while not stop.is_set():
            now = time.monotonic()
            for k, n in enumerate(self.nodes):
                n.faults.poll_commands(pause=True)
                if n.faults.paused():  # `kwatt emulate fault --kind pause` on one node's root
                    paused_s[k] += now - last
                    continue
                snap, record = n.advance((now - origin - paused_s[k]) * speed)
                await asyncio.to_thread(n.render, snap)
                n.log_truth(record)
            last = now
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(period_s):
                    await stop.wait()


def _parser() -> argparse.ArgumentParser:
    p = _node_parser("kwatt emulate fleet")
    p.description = "Run many emulated nodes in one process (scale tests)."
    p.add_argument("--nodes", type=int, required=True, help="number of nodes")
    p.add_argument("--prefix", default="node", help="node name prefix (default node)")
    return p


async def _run(args: argparse.Namespace, check: ConfigCheck | None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    nodes = []
    for k in range(args.nodes):
        opts = node_options(args, name=f"{args.prefix}{k:03d}", seed=args.seed + k)
        truth = None
        if args.truth_log is not None:
            truth = args.truth_log.with_name(
                f"{args.truth_log.stem}-{k:03d}{args.truth_log.suffix}"
            )
        nodes.append(Node(args.root / f"node{k:03d}", opts, truth_log=truth))
    async with Fleet(args.root, nodes) as fleet:
        fleet.step(0.0)
        configs = [agent_config(n, site=args.site, mqtt_url=args.mqtt, check=check) for n in nodes]
        if args.print_config is not None:
            for n, text in zip(nodes, configs, strict=True):
                write_atomic(args.print_config / f"{n.options.name}.yaml", text)
        else:
            print("---\n".join(configs), flush=True)
        ready = {
            "root": str(args.root.resolve()),
            "nodes": [
                {"node": n.options.name, "root": str(n.root.resolve()), **n.endpoints}
                for n in nodes
            ],
        }
        print(json.dumps(ready), flush=True)
        if args.duration is not None:
            loop.call_later(args.duration, stop.set)
        await fleet.run(stop, args.period, args.speed)
    return 0


def main(argv: list[str] | None = None, *, config_check: ConfigCheck | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.nodes < 1:
        print("kwatt emulate fleet: --nodes must be >= 1", file=sys.stderr)
        return 2
    try:
        node_options(args)
    except (ValueError, OSError) as e:
        print(f"kwatt emulate fleet: {e}", file=sys.stderr)
        return 2
    return asyncio.run(_run(args, config_check))
