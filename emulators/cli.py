"""The emulators' command line: ``kwatt emulate node|fleet|fault …``, also run as
``python -m kwatt.emulators.node``.

- ``node``: one :class:`~kwatt.emulators.node.Node` under ``--root``; prints its agent config
  (:func:`kwatt.emulators.agentconfig.agent_config`, or writes it to ``--print-config FILE``), then a
  JSON ready line ``{"root", "node", endpoints…}``, and steps until SIGTERM/SIGINT or ``--duration``.
- ``fleet``: ``--nodes N`` of them in one process (:class:`~kwatt.emulators.fleet.Fleet`). Node ``k``
  lives under ``ROOT/node{k:03d}`` with seed ``seed + k`` and name ``{prefix}{k:03d}``;
  ``--print-config DIR`` writes one agent config per node (``DIR/node000.yaml`` …), otherwise the
  configs are printed one after the other, separated by ``---``. A JSON ready line
  ``{"root", "nodes": [{"node", "root", endpoints…}]}`` follows.
- ``fault``: writes one fault command into a running node's control directory
  (:func:`kwatt.emulators.faults.send`) and prints its path.
- Without a subcommand, the options of the RNGD-only node (:func:`kwatt.emulators.rngd_node.main`).

``config_check`` (see :data:`~kwatt.emulators.agentconfig.ConfigCheck`) comes from the caller: the
emulators never import a collector.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

from kwatt.emulators import rngd_node
from kwatt.emulators.agentconfig import ConfigCheck, agent_config
from kwatt.emulators.faults import FAULT_KINDS, FaultError, load_schedule, parse_fault, send
from kwatt.emulators.fleet import Fleet
from kwatt.emulators.node import Node, NodeOptions, parse_devices
from kwatt.emulators.state import write_atomic
from kwatt.emulators.workloads import WORKLOADS, WorkloadParams, work_class_of

__all__ = ["main", "node_options"]


def _node_parser(prog: str = "kwatt emulate node") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Run one emulated node: catalogue devices, a service workload, the real driver "
        "surfaces under --root, ground truth and faults (docs/emulators.md).",
    )
    p.add_argument("--devices", required=True, help="MODEL[:CARDS],… e.g. rngd:2,atom-max:1,h100:1")
    p.add_argument(
        "--service",
        default="chatbot",
        help="service(s), comma-separated; each device runs the first it can "
        f"({', '.join(WORKLOADS)}; default chatbot)",
    )
    p.add_argument("--root", type=Path, required=True, help="directory of the node's surfaces")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--speed", type=float, default=1.0, help="emulator seconds per wall second")
    p.add_argument("--period", type=float, default=0.5, help="wall seconds between steps")
    p.add_argument("--name", default="node0", help="node name (agent config node:)")
    p.add_argument("--site", default="emulated", help="site of the printed agent config")
    p.add_argument("--mqtt", default="mqtt://127.0.0.1:1883", help="broker of the agent config")
    p.add_argument("--port", type=int, default=0, help="serving /metrics port (0 = any free)")
    p.add_argument("--truth-log", type=Path, default=None, help="append ground truth (JSONL)")
    p.add_argument("--faults", type=Path, default=None, help="fault schedule (YAML/JSON)")
    p.add_argument(
        "--tool-version",
        action="append",
        default=[],
        metavar="TOOL=VERSION",
        help="imitated tool version, e.g. furiosa-smi=2025.2.0 (repeatable)",
    )
    p.add_argument(
        "--load", type=float, default=0.7, help="utilization at the daily peak (default 0.7)"
    )
    p.add_argument("--start-hour", type=float, default=9.0, help="time of day at start")
    p.add_argument("--day-s", type=float, default=86_400.0, help="emulator seconds per day")
    p.add_argument("--print-config", type=Path, default=None, metavar="FILE",
                   help="write the agent config here instead of printing it")  # fmt: skip
    p.add_argument("--duration", type=float, default=None, help="stop after this many wall seconds")
    return p


def node_options(
    args: argparse.Namespace, *, name: str | None = None, seed: int | None = None
) -> NodeOptions:
    """The :class:`~kwatt.emulators.node.NodeOptions` of ``node``/``fleet`` options (``name`` and
    ``seed`` override theirs: one node of a fleet); ``ValueError`` on a bad option."""
    versions = []
    for tv in args.tool_version:
        tool, sep, version = tv.partition("=")
        if not sep or not tool or not version:
            raise ValueError(f"--tool-version {tv!r}: expected TOOL=VERSION")
        versions.append((tool, version))
    services = tuple(s.strip() for s in args.service.split(",") if s.strip())
    for s in services:
        work_class_of(s)
    return NodeOptions(
        devices=parse_devices(args.devices),
        services=services,
        seed=args.seed if seed is None else seed,
        name=args.name if name is None else name,
        speed=args.speed,
        period_s=args.period,
        load=args.load,
        serving_port=args.port,
        tool_versions=tuple(versions),
        workload=WorkloadParams(start_hour=args.start_hour, day_s=args.day_s),
        faults=tuple(load_schedule(args.faults)) if args.faults else (),
    )


async def _run_node(args: argparse.Namespace, check: ConfigCheck | None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    node = Node(args.root, node_options(args), truth_log=args.truth_log)
    async with node:
        node.step(0.0)
        config = agent_config(node, site=args.site, mqtt_url=args.mqtt, check=check)
        if args.print_config is not None:
            write_atomic(args.print_config, config)
        else:
            print(config, flush=True)
        ready = {"root": str(args.root.resolve()), "node": node.options.name, **node.endpoints}
        print(json.dumps(ready), flush=True)
        if args.duration is not None:
            loop.call_later(args.duration, stop.set)
        await node.run(stop)
    return 0


def _fault_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kwatt emulate fault", description="Inject a fault into a running emulated node."
    )
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--kind", required=True, choices=FAULT_KINDS)
    p.add_argument("--device", default=None, help="serial | uuid | bus id | vendor:N | model | *")
    p.add_argument("--tool", default=None, help="executable, e.g. furiosa-smi")
    p.add_argument("--fields", default="", help="DeviceState fields (na, nan), comma-separated")
    p.add_argument("--value", type=float, default=None)
    p.add_argument("--duration", type=float, default=None, help="seconds of emulator time")
    p.add_argument("--at", type=float, default=None, help="emulator time (default: next step)")
    return p


def _send_fault(args: argparse.Namespace) -> int:
    doc: dict[str, object] = {"kind": args.kind}
    for key, value in (
        ("device", args.device),
        ("tool", args.tool),
        ("value", args.value),
        ("duration_s", args.duration),
        ("at_s", args.at),
    ):
        if value is not None:
            doc[key] = value
    if args.fields:
        doc["fields"] = [f.strip() for f in args.fields.split(",") if f.strip()]
    try:
        path = send(args.root, parse_fault(doc))
    except FaultError as e:
        print(f"kwatt emulate fault: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


def _fleet_parser() -> argparse.ArgumentParser:
    p = _node_parser("kwatt emulate fleet")
    p.description = "Run many emulated nodes in one process (scale tests)."
    p.add_argument("--nodes", type=int, required=True, help="number of nodes")
    p.add_argument("--prefix", default="node", help="node name prefix (default node)")
    return p


async def _run_fleet(args: argparse.Namespace, check: ConfigCheck | None) -> int:
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


def _fleet_main(argv: list[str] | None = None, *, config_check: ConfigCheck | None = None) -> int:
    args = _fleet_parser().parse_args(argv)
    if args.nodes < 1:
        print("kwatt emulate fleet: --nodes must be >= 1", file=sys.stderr)
        return 2
    try:
        node_options(args)
    except (ValueError, OSError) as e:
        print(f"kwatt emulate fleet: {e}", file=sys.stderr)
        return 2
    return asyncio.run(_run_fleet(args, config_check))


def main(argv: list[str] | None = None, *, config_check: ConfigCheck | None = None) -> int:
    """``node …`` / ``fleet …`` / ``fault …`` subcommands, or the legacy RNGD-only options."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in ("node", "fleet", "fault"):
        cmd, rest = args_list[0], args_list[1:]
        if cmd == "fault":
            return _send_fault(_fault_parser().parse_args(rest))
        if cmd == "fleet":
            return _fleet_main(rest, config_check=config_check)
        args = _node_parser().parse_args(rest)
        try:
            node_options(args)
        except (ValueError, OSError) as e:
            print(f"kwatt emulate node: {e}", file=sys.stderr)
            return 2
        return asyncio.run(_run_node(args, config_check))
    return rngd_node.main(args_list)
