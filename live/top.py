"""``kwatt top``: the fleet, live, from the MQTT wire (like ``nvidia-smi`` and ``htop`` for kwatt).

Three layers, so the screen can be tested and benchmarked without a broker:

* the model, :class:`kwatt.live.state.TopState` (live/state.py): the reducer of received MQTT
  messages, no I/O, no clock of its own; its view model, :mod:`kwatt.live.view` (options, node and
  service summaries, targets);
* the renderer, :func:`kwatt.live.render.render` (live/render.py): a pure function of the state,
  the options and "now", laid out at the console's width (or ``--width``) and height;
* this module, the I/O and the command: :func:`follow` subscribes to ``kwatt/v1/<site|+>/+/metrics``
  and ``.../status`` (a plain QoS 0 subscription: the live view never takes a share of the ingest's
  messages), reconnects with backoff and records why the broker cannot be reached, which the screen
  shows; :func:`run` is ``kwatt top`` (options, ``--once``, the refreshing screen and its keys:
  j/k select a node, d cycles the device rows, q quits).

A node is offline when its retained ``status`` says so (the agent's last will included): it is drawn
as OFFLINE, never with zeros. A node that says online but has sent no metrics for ``stale_s`` is
STALE. Values are SI on the wire; percent and GHz appear only on the screen.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import math
import os
import re
import socket
import ssl
import sys
import termios
import time
import tty
from collections import deque
from pathlib import Path
from typing import Any, Literal

import aiomqtt
from rich.console import Console
from rich.live import Live

from kwatt.analytics.targets import PHASES, load_targets
from kwatt.live.render import render
from kwatt.live.state import DEFAULT_MAX_SKEW_S, WORK_KINDS, TopState
from kwatt.live.view import SORT_KEYS, ViewOptions, selection_order
from kwatt.wire import topics
from kwatt.wire.mqtt import Backoff, make_client
from kwatt.wire.settings import MqttConfig, TlsConfig

__all__ = [
    "MIN_WIDTH",
    "configure_parser",
    "follow",
    "run",
    "subscriptions",
    "view_options",
    "watch",
]


# ------------------------------------------------------------------------------------ I/O


def subscriptions(site: str | None) -> list[str]:
    """The topic filters: every node's ``metrics`` and ``status`` of one site, or of all sites."""
    seg = "+" if site is None else topics.validate_segment("site", site)
    return [f"{topics.PREFIX}/{seg}/+/metrics", f"{topics.PREFIX}/{seg}/+/status"]


async def follow(cfg: MqttConfig, site: str | None, state: TopState, *, identifier: str) -> None:
    """Feed ``state`` from the broker until cancelled; on failure, record why and retry."""
    backoff = Backoff(cfg.reconnect_min_s, cfg.reconnect_max_s)
    link = state.link
    link.url = cfg.url
    while True:
        try:
            client = make_client(cfg, identifier=identifier)
            async with client:
                link.connected, link.ever_connected = True, True
                link.error, link.retry_in_s = None, None
                backoff.reset()
                for filt in subscriptions(site):
                    await client.subscribe(filt, qos=0)
                async for msg in client.messages:
                    payload = msg.payload
                    if isinstance(payload, bytes | bytearray):
                        state.feed(str(msg.topic), bytes(payload), time.monotonic(), time.time_ns())
        except (aiomqtt.MqttError, OSError, ssl.SSLError, ValueError) as e:
            link.connected = False
            link.error = str(e) or type(e).__name__
            delay = backoff.next_delay()
            link.retry_in_s = delay
            await asyncio.sleep(delay)


# ------------------------------------------------------------------------------------ command


def configure_parser(p: argparse.ArgumentParser) -> None:
    """The ``kwatt top`` options."""
    p.add_argument(
        "--broker",
        default=os.environ.get("KWATT_BROKER", "mqtt://127.0.0.1:1883"),
        help="mqtt://host:port or mqtts://host:port (default $KWATT_BROKER or mqtt://127.0.0.1:1883)",
    )
    p.add_argument("--site", help="only this site (default: every site)")
    p.add_argument("--username", help="MQTT user name")
    p.add_argument("--password-file", help="file holding the MQTT password")
    p.add_argument("--ca-file", help="CA certificate(s) to verify the broker (TLS)")
    p.add_argument("--cert-file", help="client certificate (mutual TLS)")
    p.add_argument("--key-file", help="client key (mutual TLS)")
    p.add_argument("--sort", choices=SORT_KEYS, default="power", help="sort nodes (default power)")
    p.add_argument("--reverse", action="store_true", help="reverse the sort order")
    p.add_argument("--limit", type=int, default=20, help="nodes to list (default 20; rest summed)")
    p.add_argument(
        "--devices",
        choices=("auto", "all", "none"),
        default="auto",
        help="device rows under each node (auto: when they fit)",
    )
    p.add_argument("--node", dest="node_pattern", metavar="REGEX", help="only nodes matching")
    p.add_argument("--vendor", help="only devices of this vendor (e.g. furiosa)")
    p.add_argument("--model", help="only devices of this model (e.g. rngd)")
    p.add_argument("--offline", action="store_true", help="only offline or stale nodes")
    p.add_argument("--throttled", action="store_true", help="only nodes with a throttling device")
    p.add_argument(
        "--work",
        choices=WORK_KINDS,
        help="only services counting this kind of work (default: every service in its own kind: "
        "the first of tokens, inferences, requests it reports)",
    )
    p.add_argument(
        "--target",
        type=_target,
        action="append",
        default=[],
        metavar="[SERVICE|KIND=]WORK_PER_J",
        help="perf/W target (colours green/red): for one service (chatbot=2.5), one kind of work "
        "(inferences=30) or, bare, every service; repeatable",
    )
    p.add_argument(
        "--targets",
        dest="targets_file",
        type=Path,
        metavar="FILE",
        help="targets YAML merged over analytics/targets.yaml (as kwatt report --targets): "
        "without --target, NPU rows aim at the phase ratio × the GPU measured live on the same "
        "service, or × the published reference",
    )
    p.add_argument("--phase", choices=PHASES, help="phase of the targets (default from the file)")
    p.add_argument(
        "--width",
        type=_width,
        metavar="N",
        help="lay the screen out in N columns (default: the terminal's width)",
    )
    p.add_argument(
        "--stale", type=float, default=10.0, help="seconds without metrics before STALE (10)"
    )
    p.add_argument(
        "--max-skew",
        type=float,
        default=DEFAULT_MAX_SKEW_S,
        help="warn about a node whose clock is off by more (s; kwatt report's bound, 0.8)",
    )
    p.add_argument(
        "--refresh", type=float, default=0.5, help="seconds between screen updates (0.5)"
    )
    p.add_argument("--duration", type=float, help="exit after this many seconds")
    p.add_argument(
        "--once",
        action="store_true",
        help="listen for --duration seconds (default 3), print one screen, exit",
    )


#: The narrowest ``--width``.
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


def _target(text: str) -> tuple[str, float]:
    """``--target``: ``N`` (key ``*``), ``SERVICE=N`` or ``KIND=N`` with N > 0."""
    name, sep, value = text.rpartition("=")
    try:
        n = float(value)
    except ValueError:
        n = math.nan
    if not (n > 0 and math.isfinite(n)) or (sep and not name):
        raise argparse.ArgumentTypeError(
            f"expected [SERVICE|KIND=]WORK_PER_J with WORK_PER_J > 0, got {text!r}"
        )
    return (name if sep else "*", n)


def _mqtt_config(args: argparse.Namespace) -> MqttConfig:
    tls = None
    if args.ca_file or args.cert_file or args.key_file:
        tls = TlsConfig(ca_file=args.ca_file, cert_file=args.cert_file, key_file=args.key_file)
    return MqttConfig(
        url=args.broker,
        username=args.username,
        password_file=args.password_file,
        tls=tls,
        connect_timeout_s=5.0,
        reconnect_min_s=0.5,
        reconnect_max_s=5.0,
    )


def view_options(args: argparse.Namespace) -> ViewOptions:
    title = f"kwatt top · {args.broker}" + (f" · site {args.site}" if args.site else "")
    return ViewOptions(
        sort=args.sort,
        reverse=args.reverse,
        limit=args.limit,
        devices=args.devices,
        node_pattern=args.node_pattern,
        vendor=args.vendor,
        model=args.model,
        only_offline=args.offline,
        only_throttled=args.throttled,
        target_work_per_j=dict(args.target).get("*"),
        targets_doc=load_targets(args.targets_file),
        phase=args.phase,
        targets=tuple((k, v) for k, v in args.target if k != "*"),
        work=args.work,
        stale_s=args.stale,
        title=title,
    )


_KEYS_HINT = "keys: j/k or ↑/↓ select a node · d devices all/auto/none · q quit"


class _Keys:
    """Single keys from a terminal on stdin (cbreak mode, restored on exit): the selection."""

    def __init__(self) -> None:
        self.pending: deque[str] = deque()
        self._fd: int | None = None
        self._saved: list[Any] = []

    def __enter__(self) -> _Keys:
        if not sys.stdin.isatty():
            return self
        fd = sys.stdin.fileno()
        self._saved = termios.tcgetattr(fd)
        tty.setcbreak(fd)
        self._fd = fd
        asyncio.get_running_loop().add_reader(fd, self._read)
        return self

    @property
    def active(self) -> bool:
        return self._fd is not None

    def _read(self) -> None:
        assert self._fd is not None
        data = os.read(self._fd, 64).decode(errors="replace")
        data = data.replace("\x1b[A", "k").replace("\x1b[B", "j")
        self.pending.extend(data)

    def __exit__(self, *exc: object) -> None:
        if self._fd is None:
            return
        asyncio.get_running_loop().remove_reader(self._fd)
        termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)
        self._fd = None


async def watch(
    cfg: MqttConfig,
    site: str | None,
    opts: ViewOptions,
    console: Console,
    *,
    once: bool,
    duration_s: float | None,
    refresh_s: float,
    width: int | None = None,
    max_skew_s: float = 0.8,
) -> int:
    """Run the live view (or one ``--once`` screen); 0, or 1 when the broker was never reached."""
    state = TopState(max_skew_s)
    identifier = f"kwatt-top-{socket.gethostname()[:32]}-{os.getpid()}"
    follower = asyncio.create_task(follow(cfg, site, state, identifier=identifier))
    start = time.monotonic()
    try:
        if once:
            await asyncio.sleep(3.0 if duration_s is None else duration_s)
            console.print(render(state, opts, time.monotonic(), width=width))
        else:
            await _live(state, opts, console, start, duration_s, refresh_s, width)
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
    if not state.link.ever_connected:
        print(
            f"kwatt top: cannot reach the MQTT broker {cfg.url}: {state.link.error or 'timeout'}",
            file=sys.stderr,
        )
        return 1
    return 0


async def _live(
    state: TopState,
    opts: ViewOptions,
    console: Console,
    start: float,
    duration_s: float | None,
    refresh_s: float,
    width: int | None,
) -> None:
    """The refreshing screen, at the terminal's size; keys move the selection."""
    selected: tuple[str, str] | None = None
    modes: tuple[Literal["auto", "all", "none"], ...] = ("auto", "all", "none")
    with _Keys() as keys, Live(console=console, auto_refresh=False, screen=False) as live:
        hint = _KEYS_HINT if keys.active else None
        while duration_s is None or time.monotonic() - start < duration_s:
            now = time.monotonic()
            while keys.pending:
                key = keys.pending.popleft()
                if key == "q":
                    return
                if key == "d":
                    nxt = modes[(modes.index(opts.devices) + 1) % len(modes)]
                    opts = dataclasses.replace(opts, devices=nxt)
                elif key in "jk":
                    order = selection_order(state, opts, now)
                    if order:
                        at = order.index(selected) if selected in order else 0
                        at = min(max(at + (1 if key == "j" else -1), 0), len(order) - 1)
                        selected = order[at]
            screen = render(
                state,
                opts,
                now,
                width=width,
                height=console.size.height - 1,
                selected=selected,
                keys_hint=hint,
            )
            live.update(screen, refresh=True)
            await asyncio.sleep(refresh_s)


def run(args: argparse.Namespace) -> int:
    """``kwatt top``."""
    if args.refresh <= 0 or args.refresh > 1.0:
        print("kwatt top: --refresh must be in (0, 1] seconds", file=sys.stderr)
        return 2
    if args.node_pattern:
        try:
            re.compile(args.node_pattern)
        except re.error as e:
            print(f"kwatt top: --node: bad regular expression: {e}", file=sys.stderr)
            return 2
    try:
        cfg = _mqtt_config(args)
        if args.site is not None:
            topics.validate_segment("site", args.site)
        opts = view_options(args)
    except ValueError as e:  # TargetsError included
        print(f"kwatt top: {e}", file=sys.stderr)
        return 2
    console = Console() if args.width is None else Console(width=args.width)
    try:
        return asyncio.run(
            watch(
                cfg,
                args.site,
                opts,
                console,
                once=args.once,
                duration_s=args.duration,
                refresh_s=args.refresh,
                width=args.width,
                max_skew_s=args.max_skew,
            )
        )
    except KeyboardInterrupt:
        return 130
