"""The furiosa collector's cost per poll: sysfs vs furiosa-smi (JSON) on an emulated node.

Run: ``.venv/bin/python bench/bench_furiosa_poll.py [POLLS]`` (1 Warboy + 2 RNGD; the emulated tool is a
Python script, so its spawn is dearer than the real Rust binary's, but two processes per poll remain).
"""

from __future__ import annotations

import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path

from kwatt.collectors import furiosa
from kwatt.emulators.node import Node, NodeOptions, parse_devices


async def main(polls: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        opts = NodeOptions(devices=parse_devices("warboy,rngd:2"), services=("steady",))
        async with Node(root, opts) as node:
            node.step(1.0)
            for source in ("sysfs", "smi"):
                c = furiosa.PLUGIN.create("npu", furiosa.Config(root=str(root), source=source))
                await c.collect()  # discovery
                kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                t0, c0 = time.perf_counter(), time.process_time()
                for _ in range(polls):
                    await c.collect()
                wall = (time.perf_counter() - t0) / polls * 1e3
                cpu = (time.process_time() - c0) / polls * 1e3
                kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                spent = kids1.ru_utime + kids1.ru_stime - kids0.ru_utime - kids0.ru_stime
                tool = spent / polls * 1e3
                print(
                    f"{source}: {wall:.2f} ms wall, {cpu:.2f} ms agent CPU, "
                    f"{tool:.2f} ms tool CPU per poll (3 cards)"
                )


asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 50))
