"""Many emulated nodes in one process, for scale tests (``kwatt emulate fleet``, see
:mod:`kwatt.emulators.cli`).

:class:`Fleet` starts and closes its nodes together and steps them on one event loop every
``period_s`` wall seconds (emulator time runs ``speed`` × faster); a node paused by a ``pause`` fault
on its own root is left out of the step, and the paused wall time is left out of its emulator time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from types import TracebackType

from kwatt.emulators.node import Node

__all__ = ["Fleet"]


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
