"""The ``kwatt`` command: one console script, one subcommand per service."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from agent import __version__

log = logging.getLogger("kwatt")


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


def _write_json(path: str | None, doc: object) -> None:
    if path:
        tmp = Path(path + ".tmp")
        tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        tmp.replace(path)


# ---------------------------------------------------------------- agent


def cmd_agent(args: argparse.Namespace) -> int:
    from agent.config import load_agent_config
    from agent.runtime import Agent

    cfg = load_agent_config(args.config)
    _setup_logging(args.log_level or cfg.log_level)
    if args.check:
        print(f"{args.config}: OK ({len(cfg.collectors)} collector(s))")
        return 0
    built = []
    for entry in cfg.collectors:
        import collectors

        module = collectors.load(entry.type)
        built.append((entry, module.create(entry.name, entry.options)))

    async def main() -> int:
        stop = asyncio.Event()
        _stop_on_signals(stop)
        agent = Agent(cfg, built)
        stats = await agent.run(stop)
        log.info(
            "stopped: %d points in %d batches published, %d dropped, %d pending",
            stats.published_points,
            stats.published_batches,
            stats.dropped_points,
            stats.pending_batches,
        )
        _write_json(args.stats_file, dataclasses.asdict(stats))
        return 0 if stats.pending_batches == 0 else 3

    return asyncio.run(main())


# ---------------------------------------------------------------- ingest


def cmd_ingest(args: argparse.Namespace) -> int:
    from agent.config import load_ingest_config
    from agent.ingest import Ingest

    cfg = load_ingest_config(args.config)
    _setup_logging(args.log_level or cfg.log_level)
    if args.check:
        print(f"{args.config}: OK")
        return 0

    async def main() -> int:
        stop = asyncio.Event()
        _stop_on_signals(stop)
        ingest = Ingest(cfg)

        async def report() -> None:
            while not stop.is_set():
                _write_json(args.stats_file, ingest.stats_dict())
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await stop.wait()

        reporter = asyncio.create_task(report())
        stats = await ingest.run(stop)
        await reporter
        _write_json(args.stats_file, dataclasses.asdict(stats))
        log.info("stopped: %s", dataclasses.asdict(stats))
        return 0

    return asyncio.run(main())


# ---------------------------------------------------------------- demo / emulate


def cmd_demo(args: argparse.Namespace) -> int:
    from agent.demo import run_demo

    return run_demo(args)


def cmd_emulate(args: argparse.Namespace) -> int:
    from emulators.node import main as emulate_main

    return emulate_main(args.emulator_args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kwatt",
        description="Energy telemetry for AI accelerators: agents, ingest, demo.",
    )
    p.add_argument("--version", action="version", version=f"kwatt {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    a = sub.add_parser(
        "agent",
        help="run the node agent (collectors -> MQTT)",
        description="Poll this node's collectors and publish to MQTT.",
    )
    a.add_argument("--config", required=True, help="agent YAML file (see examples/agent.yaml)")
    a.add_argument("--check", action="store_true", help="validate the config and exit")
    a.add_argument("--stats-file", help="write JSON counters here on exit")
    a.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    a.set_defaults(func=cmd_agent)

    i = sub.add_parser(
        "ingest",
        help="run an ingest worker (MQTT -> InfluxDB)",
        description="Consume agents' metrics from MQTT and write them to InfluxDB.",
    )
    i.add_argument("--config", required=True, help="ingest YAML file (see examples/ingest.yaml)")
    i.add_argument("--check", action="store_true", help="validate the config and exit")
    i.add_argument("--stats-file", help="keep JSON counters in this file (updated every second)")
    i.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    i.set_defaults(func=cmd_ingest)

    d = sub.add_parser(
        "demo",
        help="the whole pipeline on emulated nodes",
        description="Start a private Mosquitto and InfluxDB (or use yours), emulated "
        "NPU nodes with their agents and an ingest worker; show it live; check that "
        "nothing was lost.",
    )
    d.add_argument("--nodes", type=int, default=3, help="emulated nodes (default 3)")
    d.add_argument("--devices", type=int, default=4, help="NPUs per node (default 4)")
    d.add_argument("--duration", type=float, default=30.0, help="seconds to run (default 30)")
    d.add_argument("--interval", type=float, default=1.0, help="poll interval in s (default 1)")
    d.add_argument("--no-live", action="store_true", help="no live view, just the summary")
    d.add_argument("--json", action="store_true", help="print one JSON summary object on stdout")
    d.add_argument("--broker", help="use this broker (mqtt://host:port) instead of a private one")
    d.add_argument("--influx", help="use this InfluxDB (http://host:port) instead of a private one")
    d.add_argument("--database", default="kwatt", help="InfluxDB database (default kwatt)")
    d.add_argument("--site", default="demo", help="site name of the emulated nodes (default demo)")
    d.add_argument(
        "--state-dir", help="keep state (configs, logs, data) here instead of a temp dir"
    )
    d.add_argument("--seed", type=int, default=1, help="emulator seed (default 1)")
    d.set_defaults(func=cmd_demo)

    e = sub.add_parser(
        "emulate",
        help="run an emulated NPU node (driver surfaces only)",
        description="Run an emulated node; all arguments go to the emulator "
        "(kwatt emulate --help lists them).",
        add_help=False,
    )
    e.add_argument("emulator_args", nargs=argparse.REMAINDER)
    e.set_defaults(func=cmd_emulate)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from agent.config import ConfigError

    try:
        rc: int = args.func(args)
    except ConfigError as e:
        print(f"kwatt {args.command}: configuration error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return rc


if __name__ == "__main__":
    sys.exit(main())
