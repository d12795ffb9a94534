"""``kwatt report``: perf-per-watt, verdicts, money and carbon, as a terminal table, Markdown, a
self-contained HTML page or JSON; optionally the ``efficiency`` measurement back to InfluxDB.

Wired into ``kwatt/cli.py`` through :func:`configure_parser` and :func:`run` (and ``kwatt
analyze``, the rolling form, through :func:`configure_analyze_parser` and :func:`run_analyze`).
This module is the command: options, loading (a line-protocol file or InfluxDB), the clock check,
the output. The report itself is analytics/findings.py (:func:`build_report`), its renderers
analytics/render.py.

The terminal table fits the width it gets (analytics/termfit.py): on a terminal, its width, or
``--width N``; piped or written to a file, every column in full. Headers are abbreviated first;
then columns move, least important first, to continuation tables stacked below that repeat the
key columns, so nothing is dropped and no number is cut. Key columns, then the columns from the
one kept longest to the one that moves first:

* perf-per-watt: service, device class | verdict, unit, work/J, ratio, target, margin, mean W,
  work/s, baseline, devices, J/unit, p99 s, coverage, energy method
* energy, money and carbon: service | kWh, cost, kg CO2, per, kWh/per, cost/per, kg CO2/per
* devices: node, device | energy J, mean W, util, service, class, coverage, method, gaps,
  resets, wraps
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from kwatt.analytics import clock
from kwatt.analytics.findings import build_report
from kwatt.analytics.load import LoadError, SeriesSet, load_influx, load_lp_file, parse_time
from kwatt.analytics.ppw import Options
from kwatt.analytics.render import (
    efficiency_lines,
    render_html,
    render_json,
    render_markdown,
    render_table,
)
from kwatt.analytics.targets import PHASES, Targets, TargetsError, load_targets
from kwatt.wire.influx import InfluxError, V1Writer
from kwatt.wire.settings import InfluxConfig, parse_duration

__all__ = [
    "EDGE_PAD_S",
    "FORMATS",
    "MIN_WIDTH",
    "configure_analyze_parser",
    "configure_parser",
    "run",
    "run_analyze",
]

FORMATS = ("table", "md", "html", "json")

# ---------------------------------------------------------------------------------------- CLI


def configure_parser(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--influx", metavar="URL", help="InfluxDB base URL (InfluxQL /query)")
    src.add_argument("--input", metavar="FILE.lp", type=Path, help="a line-protocol file")
    p.add_argument("--database", default="kwatt", help="InfluxDB database (default kwatt)")
    p.add_argument(
        "--since", default="1h", help="start: now, 15m/2h/1d ago, epoch s or ISO 8601 (default 1h)"
    )
    p.add_argument("--until", default="now", help="end, same forms (default now)")
    p.add_argument("--service", help="only this service")
    p.add_argument("--node", help="only this node")
    p.add_argument("--targets", type=Path, help="targets YAML merged over the shipped defaults")
    p.add_argument(
        "--phase",
        choices=PHASES,
        help="judge every device class against this phase's targets (default: each class in its "
        "own phase, targets.yaml device_phases; the header lists the phases with data)",
    )
    p.add_argument("--format", choices=FORMATS, default="table")
    p.add_argument("--out", type=Path, help="write here instead of stdout")
    p.add_argument(
        "--width",
        type=_width,
        metavar="N",
        help="table format: fit N columns (default: the terminal's width; every column in full "
        "when the output is not a terminal)",
    )
    p.add_argument(
        "--window", type=float, default=0.0, help="chart window in s (default: about 30 windows)"
    )
    p.add_argument(
        "--min-window",
        type=float,
        default=60.0,
        help="shortest window with a verdict, s (default 60)",
    )
    p.add_argument(
        "--max-skew", type=float, default=0.8, help="largest power/work edge skew, s (default 0.8)"
    )
    p.add_argument(
        "--gap-factor",
        type=float,
        default=2.5,
        help="a gap is longer than this × the median interval (default 2.5)",
    )
    p.add_argument(
        "--counter-wrap",
        action="append",
        default=[],
        metavar="CLASS=J",
        help="energy-counter range in J for a vendor or vendor/model (repeatable)",
    )
    p.add_argument(
        "--chunk", type=float, default=3600.0, help="InfluxDB fetch slice in s (default 3600)"
    )
    p.add_argument(
        "--write-efficiency",
        action="store_true",
        help="write the efficiency measurement to --influx",
    )
    p.add_argument(
        "--every",
        type=_duration,
        metavar="DURATION",
        help="repeat every DURATION, e.g. 60 or 1m (rolling verdicts, with --write-efficiency)",
    )
    p.add_argument("--cycles", type=int, default=0, help="with --every: stop after N reports")


#: The narrowest ``--width`` (``kwatt report`` and ``kwatt top``): below it even the vertical
#: record layout would fold most labels.
MIN_WIDTH = 40


def _width(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < MIN_WIDTH:
        raise argparse.ArgumentTypeError(
            f"expected a number of columns ≥ {MIN_WIDTH}, got {text!r}"
        )
    return n


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def configure_analyze_parser(p: argparse.ArgumentParser) -> None:
    """``kwatt analyze``: ``report`` that writes the ``efficiency`` measurement back to InfluxDB
    every ``--every`` (default 1m) over the trailing ``--since`` (default 15m), or ``--once``."""
    configure_parser(p)
    p.add_argument("--once", action="store_true", help="one analysis, then exit")
    p.set_defaults(write_efficiency=True, every=60.0, since="15m")


def run_analyze(args: argparse.Namespace) -> int:
    if not args.influx:
        print(
            "kwatt analyze: --influx is required (it writes the efficiency measurement)",
            file=sys.stderr,
        )
        return 2
    if args.once:
        args.every = None
    return run(args)


def _wraps(items: Sequence[str]) -> dict[str, float]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            out[name] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name or out.get(name, 0) <= 0:
            raise ValueError(
                f"--counter-wrap {item!r}: expected VENDOR[/MODEL]=JOULES with JOULES > 0"
            )
    return out


#: Samples this far beyond each edge of the requested range are loaded too, so that the sampling
#: intervals straddling an edge count pro rata and the window is the one asked for (with only the
#: samples inside it, the window would shrink to the first and last sample, up to an interval each).
EDGE_PAD_S = 120.0


def _load(args: argparse.Namespace, since_ns: int, until_ns: int) -> SeriesSet:
    if args.input is not None:
        ss = load_lp_file(args.input)
        return ss
    pad_ns = int(EDGE_PAD_S * 1e9)
    since_ns, until_ns = since_ns - pad_ns, min(until_ns + pad_ns, 2**63 - 1)
    with Progress(
        TextColumn("loading {task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} slices, {task.fields[points]} values"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as progress:
        task = progress.add_task(f"{args.influx}/{args.database}", total=None, points=0)

        def tick(done: int, total: int, points: int) -> None:
            progress.update(task, completed=done, total=total, points=points)

        return load_influx(
            args.influx,
            args.database,
            since_ns=since_ns,
            until_ns=until_ns,
            chunk_s=args.chunk,
            progress=tick,
        )


def _once(args: argparse.Namespace, targets: Targets, opts: Options) -> int:
    """One report: load, analyse, render, optionally write ``efficiency``."""
    try:
        now_ns = time.time_ns()
        since_ns = parse_time(args.since, now_ns=now_ns)
        until_ns = parse_time(args.until, now_ns=now_ns)
        if args.input is not None and args.since == "1h" and args.until == "now":
            since_ns, until_ns = 0, 2**63 - 1  # a file: its whole span unless told otherwise
        ss = _load(args, since_ns, until_ns)
    except (LoadError, ValueError) as e:
        print(f"kwatt report: {e}", file=sys.stderr)
        return 2
    ss = ss.filter(service=args.service, node=args.node)
    if not ss.series:
        print(f"kwatt report: no accel/serving data in {ss.source} for that range", file=sys.stderr)
        return 1
    report = build_report(
        ss, since_ns / 1e9, until_ns / 1e9, targets, options=opts, phase=args.phase
    )
    try:  # nodes whose clock is off by more than the skew bound (analytics/clock.py)
        clocks = clock.report_warnings(
            opts.max_skew_s,
            path=args.input,
            influx=None if args.input is not None else (args.influx, args.database),
            since_ns=since_ns,
            until_ns=until_ns,
        )
    except LoadError as e:
        print(f"kwatt report: {e}", file=sys.stderr)
        return 2
    if clocks:
        report = dataclasses.replace(report, warnings=(*report.warnings, *(str(w) for w in clocks)))
    if args.format == "table":
        width = getattr(args, "width", None)
        if args.out:
            with args.out.open("w", encoding="utf-8") as fh:
                render_table(report, fh, width=width)
        else:
            render_table(report, width=width)
    else:
        text = {"md": render_markdown, "html": render_html, "json": render_json}[args.format](
            report
        )
        if args.out:
            tmp = args.out.with_name(args.out.name + ".tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(args.out)
        else:
            sys.stdout.write(text)
    if args.write_efficiency:
        body = efficiency_lines(report)
        if body:
            w = V1Writer(InfluxConfig(url=args.influx, database=args.database))
            try:
                w.write(body)
            except InfluxError as e:
                print(f"kwatt report: writing efficiency to {args.influx}: {e}", file=sys.stderr)
                return 3
            finally:
                w.close()
            n_points = body.count(b"\n")
            print(f"wrote {n_points} efficiency points", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``kwatt report``; returns the exit status (2 for bad input, 1 for an empty result, 3 when
    the efficiency write failed). With ``--every`` it repeats (relative ``--since``/``--until``
    move with the clock) until interrupted or ``--cycles`` reports were made; the status is the
    last report's."""
    try:
        targets = load_targets(args.targets)
        opts = Options(
            gap_factor=args.gap_factor,
            max_skew_s=args.max_skew,
            min_window_s=args.min_window,
            window_s=args.window,
            counter_wrap_j=_wraps(args.counter_wrap),
        )
        if args.write_efficiency and not args.influx:
            raise ValueError("--write-efficiency needs --influx")
        if args.every is not None and not (args.every > 0 and args.influx):
            raise ValueError("--every needs --influx and a period > 0 s")
    except (TargetsError, ValueError) as e:
        print(f"kwatt report: {e}", file=sys.stderr)
        return 2
    if args.every is None:
        return _once(args, targets, opts)
    rc, done = 0, 0
    try:
        while True:
            started = time.monotonic()
            rc = _once(args, targets, opts)
            done += 1
            if args.cycles and done >= args.cycles:
                return rc
            time.sleep(max(args.every - (time.monotonic() - started), 0.0))
    except KeyboardInterrupt:
        return rc
