"""The ``kwatt`` command: one console script, one subcommand per service."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from kwatt import __version__

if TYPE_CHECKING:
    from kwatt.agent.config import AgentConfig
    from kwatt.agent.runtime import AgentStats
    from kwatt.ingest.config import IngestConfig
    from kwatt.ingest.worker import IngestStats

log = logging.getLogger("kwatt")

C = TypeVar("C")
R = TypeVar("R")


def _setup_logging(level: str) -> None:
    """Log to stderr: ``<priority>LEVEL component: message`` under systemd (journald stamps the
    time), ``time LEVEL component: message`` in a terminal."""
    from kwatt.agent.sdnotify import JournalFormatter, journal_logging_wanted

    handler = logging.StreamHandler(sys.stderr)
    if journal_logging_wanted():
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


def _write_json(path: str | None, doc: object) -> None:
    if path:
        tmp = Path(path + ".tmp")
        tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        tmp.replace(path)


# ---------------------------------------------------------------- service lifecycle (systemd)


async def _watchdog(interval_s: float, stop: asyncio.Event) -> None:
    """``WATCHDOG=1`` every ``interval_s`` while the event loop runs (a hung loop stops the pings
    and systemd restarts the service)."""
    from kwatt.agent.sdnotify import Notifier

    notifier = Notifier()
    try:
        while not stop.is_set():
            notifier.watchdog()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval_s):
                    await stop.wait()
    finally:
        notifier.close()


async def _serve(
    what: str,
    config_path: str,
    prepare: Callable[[C], Callable[[asyncio.Event], Coroutine[Any, Any, R]]],
    load: Callable[[str], C],
    cfg: C,
    on_result: Callable[[R], None],
) -> R:
    """Run a daemon under the service manager's protocol until SIGTERM/SIGINT; return its result.

    ``prepare(cfg)`` validates and builds everything a run needs (raising on a bad config) and
    returns ``run(stop)``. READY=1 once a run has started; WATCHDOG=1 pings when ``WatchdogSec=`` is
    set; STOPPING=1 on SIGTERM/SIGINT (the run then flushes). SIGHUP re-reads ``config_path``: a
    config that does not load or build is logged and the running one is kept; a good one stops
    the current run (it flushes) and starts a new one (RELOADING=1, then READY=1).
    ``on_result`` sees the result of every finished run.
    """
    from kwatt.agent.sdnotify import Notifier

    notifier = Notifier()
    stop, reload = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload.set)
    dog: asyncio.Task[None] | None = None
    if notifier.watchdog_interval_s is not None:
        dog = asyncio.create_task(_watchdog(notifier.watchdog_interval_s, stop))
    run = prepare(cfg)
    try:
        while True:
            run_stop = asyncio.Event()
            task: asyncio.Task[R] = asyncio.create_task(run(run_stop))
            notifier.ready(f"{what} running ({config_path})")
            log.info("%s running with %s", what, config_path)
            following: Callable[[asyncio.Event], Coroutine[Any, Any, R]] | None = None
            while following is None and not stop.is_set():
                waits = [asyncio.ensure_future(e.wait()) for e in (stop, reload)]
                try:
                    await asyncio.wait([task, *waits], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for w in waits:
                        w.cancel()
                if task.done():
                    result = task.result()  # a run that ended by itself (or its exception)
                    on_result(result)
                    return result
                if stop.is_set():
                    break
                reload.clear()
                log.info("SIGHUP: reloading %s", config_path)
                try:
                    following = prepare(load(config_path))
                except Exception as e:
                    log.error(  # noqa: TRY400 - the reason is the message; no traceback wanted
                        "reload failed, still running with the previous configuration: %s", e
                    )
                    notifier.status(f"{what} running; last reload failed: {e}")
            if following is None:
                notifier.stopping(f"{what} stopping: flushing")
                log.info("%s stopping: flushing", what)
                run_stop.set()
                result = await task
                on_result(result)
                return result
            notifier.reloading(f"{what} reloading {config_path}")
            run_stop.set()
            on_result(await task)
            run = following
    finally:
        stop.set()
        if dog is not None:
            await dog
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        notifier.close()


def _sum_stats(total: dict[str, object], run: dict[str, object]) -> dict[str, object]:
    """Counters of successive runs (reloads) added up; other values are the last run's."""
    out = dict(run)
    for key, value in run.items():
        before = total.get(key)
        if isinstance(value, int) and isinstance(before, int) and key != "last_seq":
            out[key] = before + value
        elif isinstance(value, dict) and isinstance(before, dict):
            merged = dict(before)
            for k, v in value.items():
                merged[k] = merged.get(k, 0) + v if isinstance(v, int) else v
            out[key] = merged
    return out


# ---------------------------------------------------------------- agent


def cmd_agent(args: argparse.Namespace) -> int:
    from kwatt.agent.config import load_agent_config
    from kwatt.agent.runtime import Agent, MemoryOutbox

    cfg = load_agent_config(args.config)
    _setup_logging(args.log_level or cfg.log_level)
    if args.check:
        print(f"{args.config}: OK ({len(cfg.collectors)} collector(s))")
        return 0
    if args.once:
        return _agent_once(args.config, cfg)
    previous: list[Agent] = []
    totals: dict[str, object] = {}

    def prepare(c: AgentConfig) -> Callable[[asyncio.Event], Coroutine[Any, Any, AgentStats]]:
        from kwatt import collectors

        built = [(e, collectors.load(e.type).create(e.name, e.options)) for e in c.collectors]

        async def run(stop: asyncio.Event) -> AgentStats:
            # After a reload, batches still waiting in memory carry over (a spool is on disk).
            outbox = None
            if previous and isinstance(previous[-1].outbox, MemoryOutbox) and c.spool is None:
                outbox = previous[-1].outbox
            agent = Agent(c, built, outbox=outbox)
            previous[:] = [agent]
            return await agent.run(stop)

        return run

    def finished(stats: AgentStats) -> None:
        log.info(
            "stopped: %d points in %d batches published, %d dropped, %d pending",
            stats.published_points,
            stats.published_batches,
            stats.dropped_points,
            stats.pending_batches,
        )
        totals.update(_sum_stats(totals, dataclasses.asdict(stats)))
        _write_json(args.stats_file, totals)

    async def main() -> int:
        stats = await _serve("kwatt agent", args.config, prepare, load_agent_config, cfg, finished)
        # pending batches in a spool are on disk and replayed at the next start: not a failure
        return 0 if stats.pending_batches == 0 or cfg.spool is not None else 3

    return asyncio.run(main())


def _agent_once(config_path: str, cfg: AgentConfig) -> int:
    """``kwatt agent --once``: poll every collector once and print the line protocol the agent
    would publish (its ``agent`` points included) to stdout; no broker, no spool. Exit 0 when every
    collector succeeded, 1 when one failed, 2 when the config names no collector."""
    from kwatt import collectors
    from kwatt.agent.runtime import Agent, MemoryOutbox

    if not cfg.collectors:
        print(
            f"kwatt agent --once: {config_path} names no collector: nothing to poll "
            "(add entries under 'collectors:'; `kwatt doctor` suggests them for this node)",
            file=sys.stderr,
        )
        return 2
    built = [(e, collectors.load(e.type).create(e.name, e.options)) for e in cfg.collectors]
    agent = Agent(cfg, built, outbox=MemoryOutbox(cfg.publish.queue_max_bytes))
    result = asyncio.run(agent.poll_once())
    try:
        for payload in result.payloads:
            sys.stdout.write(payload.decode("utf-8"))
        sys.stdout.flush()
    except BrokenPipeError:  # `kwatt agent --once | head`: the reader left, the verdict stands
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if not result.failed:
        return 0
    names = ", ".join(name for name, _ in result.failed)
    logged = logging.getLogger("kwatt.agent").isEnabledFor(logging.WARNING)
    print(
        f"kwatt agent --once: {len(result.failed)} of {len(cfg.collectors)} collector(s) "
        f"failed: {names}" + (" (reasons above)" if logged else ""),
        file=sys.stderr,
    )
    if not logged:  # the runtime's warnings, which name the reasons, are not shown
        for name, error in result.failed:
            print(f"  {name}: {error}", file=sys.stderr)
    if len(result.failed) == len(cfg.collectors):
        print(
            "  nothing could be read with this config; `kwatt doctor` probes what this node "
            "offers (`--root` for an emulated node)",
            file=sys.stderr,
        )
    return 1


# ---------------------------------------------------------------- ingest


def cmd_ingest(args: argparse.Namespace) -> int:
    from kwatt.ingest.config import load_ingest_config
    from kwatt.ingest.worker import Ingest

    cfg = load_ingest_config(args.config)
    _setup_logging(args.log_level or cfg.log_level)
    if args.check:
        print(f"{args.config}: OK")
        return 0
    totals: dict[str, object] = {}

    def prepare(c: IngestConfig) -> Callable[[asyncio.Event], Coroutine[Any, Any, IngestStats]]:
        ingest = Ingest(c)

        async def run(stop: asyncio.Event) -> IngestStats:
            async def report() -> None:
                while not stop.is_set():
                    _write_json(args.stats_file, _sum_stats(totals, dict(ingest.stats_dict())))
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(1.0):
                            await stop.wait()

            reporter = asyncio.create_task(report())
            try:
                return await ingest.run(stop)
            finally:
                stop.set()
                await reporter

        return run

    def finished(stats: IngestStats) -> None:
        totals.update(_sum_stats(totals, dataclasses.asdict(stats)))
        _write_json(args.stats_file, totals)
        log.info("stopped: %s", dataclasses.asdict(stats))

    async def main() -> int:
        await _serve("kwatt ingest", args.config, prepare, load_ingest_config, cfg, finished)
        return 0

    return asyncio.run(main())


# ---------------------------------------------------------------- demo / emulate


def cmd_demo(args: argparse.Namespace) -> int:
    from kwatt.demo.run import run_demo

    return run_demo(args)


def cmd_top(args: argparse.Namespace) -> int:
    from kwatt.live import top

    return top.run(args)


def cmd_emulate(args: argparse.Namespace) -> int:
    """``kwatt emulate node|fleet|fault …`` (emulators/cli.py); the printed agent config keeps only
    the collectors this agent has and whose options validate."""
    from kwatt.emulators.cli import main as emulate_main

    if not args.emulator_args or args.emulator_args[0] in ("-h", "--help"):
        print(
            "usage: kwatt emulate {node,fleet,fault} ...\n\n"
            "Emulated nodes exposing the real driver surfaces (docs/emulators.md).\n\n"
            "  node   run one emulated node and print the agent config that reads it\n"
            "  fleet  run many emulated nodes in one process\n"
            "  fault  inject a fault into a running node\n\n"
            "options:\n  -h, --help  show this help; `kwatt emulate node --help` for each command"
        )
        return 0 if args.emulator_args else 2
    return emulate_main(args.emulator_args, config_check=_emulator_collector_check)


def _emulator_collector_check(entry: Mapping[str, object]) -> str | None:
    from kwatt import collectors
    from kwatt.agent.config import agent_config_from
    from kwatt.wire.settings import ConfigError

    if entry.get("type") not in collectors.REGISTRY:
        return "no such collector in this agent (collectors.REGISTRY)"
    try:
        agent_config_from({"site": "s", "node": "n", "collectors": [dict(entry)]}, where="entry")
    except (ConfigError, ValueError, TypeError) as e:
        return str(e).replace("\n", " ")
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The CLI. With ``command``, the other subcommands' own options are left out, so that a
    daemon (``kwatt agent``) does not import the live view, the report and numpy: less memory and
    fewer objects for the garbage collector to walk."""

    def wanted(name: str) -> bool:
        return command is None or command == name

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
    a.add_argument(
        "--once",
        action="store_true",
        help="poll every collector once, print the line protocol the agent would publish (its "
        "own 'agent' points included) to stdout and exit, touching no broker and no spool "
        "(as 'telegraf --test'); exit 1 if a collector failed, 2 if the config names none",
    )
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
        description="Start a private Mosquitto and InfluxDB (or use yours), a K-Cloud fleet of "
        "emulated nodes (the phase-1 services on their NPUs next to GPU baseline nodes) with "
        "their agents and an ingest worker; show it live; check that nothing was lost; then say, "
        "per service, the NPU's work per joule against the GPU's, the phase-1 verdict and the "
        "pipeline's own error against the emulators' ground truth. --phase runs the phase-2 "
        "(DRAM-PIM) or phase-3 (NVM analog PIM) devices instead and gives that phase's verdicts.",
    )
    d.add_argument(
        "--nodes",
        type=int,
        default=8,
        help="emulated nodes: the first N of the fleet, cyclically (default 8: the whole fleet)",
    )
    d.add_argument("--devices", type=int, default=4, help="cards per node (default 4)")
    d.add_argument(
        "--fleet",
        help="node specs MODEL=SERVICE,… (default: rngd=chatbot,h100=chatbot,warboy=traffic,"
        "t4=traffic,atom=food,l4=food,x220-compact=construction,a100=construction)",
    )
    d.add_argument(
        "--phase",
        choices=("phase1_npu", "phase2_dram_pim", "phase3_nvm_analog_pim"),
        help="run that K-Cloud phase's devices beside the GPU baselines and give that phase's "
        "verdicts (default phase1_npu: the fleet above; phase2_dram_pim: aimx=chatbot,h100=chatbot,"
        "mi100-pim=chatbot; phase3_nvm_analog_pim: hermes=traffic,t4=traffic,hermes=food,l4=food)",
    )
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
    d.add_argument(
        "--fault",
        action="append",
        metavar="KIND@START[:DURATION]",
        help="inject a fault into the demo's own processes (repeatable): KIND broker or influxdb "
        "(stop the private service for DURATION, default 10s), ingest-kill or agent-kill (SIGKILL "
        "the ingest or node-01's agent, restart it after DURATION, default 0); START and DURATION "
        "in seconds or like 20s; the summary must still report lost = 0",
    )
    d.set_defaults(func=cmd_demo)

    t = sub.add_parser(
        "top",
        help="live view of the fleet from the MQTT wire",
        description="Follow kwatt/v1/<site>/+/{metrics,status} and show nodes and devices live: "
        "utilization, power, temperature, clock, throttling, throughput and work per joule.",
    )
    if wanted("top"):
        from kwatt.live import top as _top

        _top.configure_parser(t)
    t.set_defaults(func=cmd_top)

    def cmd_report(args: argparse.Namespace) -> int:
        from kwatt.analytics import report

        return report.run(args)

    r = sub.add_parser(
        "report",
        help="perf-per-watt, target verdicts, money and carbon (InfluxDB or a .lp file)",
        description="Energy and work per device, node, service, device class and fleet; verdicts "
        "against targets.yaml; as a terminal table, Markdown, self-contained HTML or JSON.",
    )
    if wanted("report") or wanted("analyze"):
        from kwatt.analytics import report as _report
    if wanted("report"):
        _report.configure_parser(r)
    r.set_defaults(func=cmd_report)

    def cmd_analyze(args: argparse.Namespace) -> int:
        from kwatt.analytics import report

        return report.run_analyze(args)

    an = sub.add_parser(
        "analyze",
        help="rolling verdicts written to InfluxDB as the efficiency measurement (for Grafana)",
        description="Every --every (default 1m), analyse the trailing --since (default 15m) and write "
        "the efficiency measurement (DESIGN §4) to --influx; --once for a single run.",
    )
    if wanted("analyze"):
        _report.configure_analyze_parser(an)
    an.set_defaults(func=cmd_analyze)

    def cmd_doctor(args: argparse.Namespace) -> int:
        from kwatt.agent import doctor

        return doctor.run(args)

    dr = sub.add_parser(
        "doctor",
        help="probe this node's collectors and suggest an agent config",
        description="Probe every collector on this node (or under --root): devices, tool and "
        "driver versions, permission problems with the fix, cost per poll; then print an agent "
        "config of exactly the collectors that worked.",
    )
    if wanted("doctor"):
        from kwatt.agent import doctor as _doctor

        _doctor.configure_parser(dr)
    dr.set_defaults(func=cmd_doctor)

    e = sub.add_parser(
        "emulate",
        help="run emulated nodes: kwatt emulate node|fleet|fault --help",
        description="Run an emulated node; all arguments go to the emulator "
        "(kwatt emulate --help lists them).",
        add_help=False,
    )
    e.add_argument("emulator_args", nargs=argparse.REMAINDER)
    e.set_defaults(func=cmd_emulate)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["emulate"]:
        # everything after `emulate` belongs to the emulator's own parser (--help included),
        # which argparse's REMAINDER cannot pass on when it starts with an option
        return cmd_emulate(argparse.Namespace(emulator_args=argv[1:]))
    first = argv[0] if argv and not argv[0].startswith("-") else None
    args = build_parser(first).parse_args(argv)
    from kwatt.agent.spool import SpoolError
    from kwatt.wire.settings import ConfigError

    try:
        rc: int = args.func(args)
    except ConfigError as e:
        print(f"kwatt {args.command}: configuration error: {e}", file=sys.stderr)
        return 2
    except SpoolError as e:  # spool dir not writable, or another agent holds it
        print(f"kwatt {args.command}: {e.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return rc


if __name__ == "__main__":
    sys.exit(main())
