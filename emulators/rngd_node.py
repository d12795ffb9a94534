"""The RNGD-only emulated node: N FuriosaAI RNGD cards under ``ROOT/sys`` and one furiosa-llm
``/metrics`` endpoint (the first emulated node; :class:`kwatt.emulators.node.Node` generalises it).

One workload drives every card; each card is one engine of the serving runtime, so the serving
counters follow the device physics (:mod:`kwatt.emulators.rngd`, its own physics, not
:mod:`kwatt.emulators.physics`). Each :meth:`EmulatedNode.step` advances the physics to a monotonic
time, rewrites the sysfs files atomically and, with ``truth_log``, appends one ground-truth line
(:class:`kwatt.emulators.truth.RngdTruthRecord`, written with :func:`kwatt.emulators.truth.encode`).

Still used by the collector, pipeline, delivery, live-view and analytics-accuracy tests, and run as
``python -m kwatt.emulators.node --root DIR …`` (:func:`main`, the options without a subcommand):
it prints ``{"root": ..., "serving_url": ...}`` on one line once the tree and the endpoint are
ready, and stops on SIGTERM/SIGINT or ``--duration``.
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
from typing import IO

from kwatt.emulators import rngd
from kwatt.emulators.rngd import PE_COUNT, RngdDevice, RngdSysfs, SysfsWriter
from kwatt.emulators.serving import MetricsServer, ServingModel
from kwatt.emulators.truth import RngdDeviceTruth, RngdTruthRecord, ServingTruth, encode

__all__ = ["EmulatedNode", "main"]


class EmulatedNode:
    """N emulated RNGD cards and one serving endpoint, under ``root`` and on a loopback port."""

    def __init__(
        self,
        root: Path,
        *,
        devices: int = 4,
        seed: int = 0,
        serving_port: int = 0,
        workload: str = "steady",
        truth_log: Path | None = None,
        symlinks: bool = True,
    ) -> None:
        if devices < 1:
            raise ValueError(f"devices must be >= 1, got {devices}")
        if workload not in rngd.WORKLOADS:
            raise ValueError(f"workload {workload!r}: expected one of {', '.join(rngd.WORKLOADS)}")
        self.root = Path(root)
        self.seed = seed
        self.workload = workload
        self.truth_log = truth_log
        self.devices = tuple(RngdDevice(i, seed=seed, workload=workload) for i in range(devices))
        self.serving = ServingModel(devices, seed=seed)
        self._writer = SysfsWriter(self.root)
        self._sysfs = [RngdSysfs(self._writer, d, symlinks=symlinks) for d in self.devices]
        self._server = MetricsServer(self.serving.render, port=serving_port)
        self._truth: IO[str] | None = None
        self._origin_s: float | None = None
        self._last_s = 0.0
        self._started = False

    @property
    def serving_url(self) -> str:
        """Base URL of the serving runtime; its metrics are at ``serving_url + "/metrics"``."""
        return f"http://{MetricsServer.HOST}:{self._server.port}"

    async def start(self) -> None:
        """Write the whole tree (initial state, before any step) and start the HTTP endpoint."""
        if self._started:
            raise RuntimeError("EmulatedNode already started")
        await asyncio.to_thread(self._write_initial)
        await self._server.start()
        self._started = True

    def _write_initial(self) -> None:
        for s in self._sysfs:
            s.write_static()
            s.write_dynamic()
        if self.truth_log is not None:
            self.truth_log.parent.mkdir(parents=True, exist_ok=True)
            self._truth = self.truth_log.open("a", encoding="utf-8", buffering=1)

    def step(self, now_s: float) -> RngdTruthRecord:
        """Advance to monotonic time ``now_s`` (the first call sets the origin), rewrite, log truth.

        Returns the ground-truth record of this step (the line appended to ``truth_log``).
        """
        record, files = self._advance(now_s)
        self._writer.write_many(files)
        self._log(record)
        return record

    def _advance(self, now_s: float) -> tuple[RngdTruthRecord, list[tuple[Path, str]]]:
        """The physics of one step: its truth record and the files to write (not written yet)."""
        if not self._started:
            raise RuntimeError("EmulatedNode.step() before start()")
        if self._origin_s is None:
            self._origin_s = self._last_s = now_s
        dt_s = now_s - self._last_s
        if dt_s < 0:
            raise ValueError(f"time went backwards: {now_s} < {self._last_s}")
        t_mid_s = (self._last_s + now_s) / 2 - self._origin_s
        latencies: list[float] = []
        for d in self.devices:
            tokens = d.advance(t_mid_s, dt_s)
            if dt_s > 0:
                index = d.identity.index
                latencies += self.serving.advance(index, tokens, d.util_ratio, d.clock_ratio)
        self._last_s = now_s
        files = [f for s in self._sysfs for f in s.dynamic_files()]
        return self._truth_record(now_s - self._origin_s, dt_s, latencies), files

    def _log(self, record: RngdTruthRecord) -> None:
        if self._truth is not None:
            self._truth.write(encode(record))

    def _truth_record(self, t_s: float, dt_s: float, latencies: list[float]) -> RngdTruthRecord:
        return RngdTruthRecord(
            t_s=t_s,
            dt_s=dt_s,
            wall_ns=time.time_ns(),
            devices=tuple(
                RngdDeviceTruth(
                    index=d.identity.index,
                    device=d.identity.uuid,
                    sn=d.identity.sn,
                    bdf=d.identity.bdf,
                    util_ratio=d.util_ratio,
                    power_w=d.power_w,
                    energy_j=d.energy_j,
                    temp_c=d.peak_temp_c,
                    clock_hz=d.clock_mhz * 1e6,
                    throttle_reason=d.throttle_reason,
                    mem_used_bytes=d.mem_used_bytes_per_pe() * PE_COUNT,
                )
                for d in self.devices
            ),
            serving=ServingTruth(
                requests_total=self.serving.requests_total,
                tokens_total=self.serving.generation_tokens_total,
                prompt_tokens_total=self.serving.prompt_tokens_total,
                latencies_s=tuple(latencies),
            ),
        )

    async def run(self, stop: asyncio.Event, period_s: float = 0.1) -> None:
        """Step on the monotonic clock every ``period_s`` until ``stop`` is set.

        The files are written in a worker thread, so the event loop (and the HTTP endpoint) stays
        responsive on a slow disk. A step rewrites about 20 files per card: measured at ~0.9 ms per
        card on tmpfs and ~17 ms per card on an ext4 disk, so give a many-card node a tmpfs root
        (``/dev/shm``) or a longer period.
        """
        while not stop.is_set():
            record, files = self._advance(time.monotonic())
            await asyncio.to_thread(self._writer.write_many, files)
            self._log(record)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(period_s):
                    await stop.wait()

    async def aclose(self) -> None:
        """Stop the endpoint and close the truth log; the files stay where they are."""
        await self._server.aclose()
        if self._truth is not None:
            self._truth.close()
            self._truth = None

    async def __aenter__(self) -> EmulatedNode:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m kwatt.emulators.node",
        description="Emulate a node with FuriosaAI RNGD cards and a furiosa-llm /metrics endpoint.",
    )
    p.add_argument("--root", type=Path, required=True, help="directory to write ROOT/sys under")
    p.add_argument("--devices", type=int, default=4, help="number of RNGD cards (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    p.add_argument("--port", type=int, default=0, help="serving port on 127.0.0.1 (0 = any free)")
    p.add_argument("--workload", choices=rngd.WORKLOADS, default="steady")
    p.add_argument("--truth-log", type=Path, default=None, help="append ground truth here (JSONL)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--period", type=float, default=0.1, help="physics step, seconds (default 0.1)")
    return p


async def _amain(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    node = EmulatedNode(
        args.root,
        devices=args.devices,
        seed=args.seed,
        serving_port=args.port,
        workload=args.workload,
        truth_log=args.truth_log,
    )
    async with node:
        print(
            json.dumps({"root": str(args.root.resolve()), "serving_url": node.serving_url}),
            flush=True,
        )
        if args.duration is not None:
            loop.call_later(args.duration, stop.set)
        await node.run(stop, args.period)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.devices < 1 or args.period <= 0:
        print("--devices must be >= 1 and --period > 0", file=sys.stderr)
        return 2
    return asyncio.run(_amain(args))
