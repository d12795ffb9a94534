"""Cost per poll of the Rebellions and Sapeon collectors against an emulated node.

Usage: ``.venv/bin/python bench/bench_rbln_sapeon.py [--polls 30]``

Builds a node root with the real surfaces (2 ATOM, one ATOM-Max card = 4 dies, one REBEL-Quad; one
X220-compact and one X330) and times, per poll (median and p90 over ``--polls``, wall clock):

- rebellions ``collect()`` with ``rbln-smi -j`` and with the text table (``-j`` refused);
- reading every ``/sys/class/rebellions/rbln*/status`` (what sysfs offers: no power,
  docs/device-interfaces.md §2.0);
- sapeon ``collect()`` through ``sapeon-smi --json`` and through hwmon (tool absent).

The emulated executables are Python scripts, so a spawn costs a Python start-up; a vendor's native
binary starts faster but still costs a fork/exec per poll, whereas sysfs costs a few file reads. It
prints; it never asserts (DESIGN §2).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from kwatt.collectors import rebellions, sapeon
from kwatt.emulators.rebellions import RebellionsSurface
from kwatt.emulators.sapeon import SapeonSurface
from kwatt.emulators.state import DeviceState, Snapshot, write_snapshot
from kwatt.emulators.surfaces import SurfaceContext


def _dev(index: int, model: str, vendor: str, bus: int, card: int) -> DeviceState:
    return DeviceState(
        index=index,
        model=model,
        vendor=vendor,
        serial=f"S{vendor[:3]}{index:08d}",
        uuid=f"{vendor}-{index}",
        bus_id=f"0000:{bus:02x}:00.0",
        t_s=1.0,
        util_ratio=0.6,
        power_w=42.0,
        energy_j=1000.0,
        temp_c=50.0,
        clock_hz=1e9,
        mem_used_bytes=1 << 30,
        mem_total_bytes=16 << 30,
        power_limit_w=65.0,
        card=card,
    )


def build(root: Path) -> None:
    devs = [
        _dev(0, "atom", "rebellions", 0x51, 0),
        _dev(1, "atom", "rebellions", 0x52, 1),
        *(_dev(2 + k, "atom-max", "rebellions", 0x53 + k, 2) for k in range(4)),
        _dev(6, "rebel-quad", "rebellions", 0x57, 3),
        _dev(0, "x220-compact", "sapeon", 0x81, 4),
        _dev(1, "x330", "sapeon", 0x82, 5),
    ]
    snap = Snapshot(t_s=1.0, wall_ns=time.time_ns(), devices=tuple(devs), host=None)
    write_snapshot(root, snap)
    for surface in (
        RebellionsSurface(SurfaceContext(root=root, seed=0)),
        SapeonSurface(SurfaceContext(root=root, seed=0)),
    ):
        surface.setup(root, snap.devices)
        surface.render(snap)
    text_only = root / "bin" / "rbln-smi-no-json"
    text_only.write_text(
        f'#!/bin/sh\n[ "$1" = "-j" ] && exit 2\nexec {root}/bin/rbln-smi "$@"\n', encoding="utf-8"
    )
    text_only.chmod(0o755)


def timed(polls: int, fn: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    async def run() -> list[float]:
        await fn()  # warm-up (imports, page cache, the text-only switch)
        out = []
        for _ in range(polls):
            t0 = time.perf_counter()
            await fn()
            out.append(time.perf_counter() - t0)
        return out

    times = sorted(asyncio.run(run()))
    return statistics.median(times) * 1e3, times[int(0.9 * (len(times) - 1))] * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--polls", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build(root)
        r_json = rebellions.PLUGIN.create("r", rebellions.Config(tool=str(root / "bin/rbln-smi")))
        r_text = rebellions.PLUGIN.create(
            "r", rebellions.Config(tool=str(root / "bin/rbln-smi-no-json"))
        )
        s_tool = sapeon.PLUGIN.create(
            "s", sapeon.Config(tool=str(root / "bin/sapeon-smi"), root=tmp)
        )
        s_hwmon = sapeon.PLUGIN.create("s", sapeon.Config(tool="absent-sapeon-smi", root=tmp))

        async def sysfs() -> object:
            return rebellions.read_sysfs(root)

        cases: list[tuple[str, Callable[[], Awaitable[object]]]] = [
            ("rebellions collect(), rbln-smi -j (7 devices)", r_json.collect),
            ("rebellions collect(), text table (7 devices)", r_text.collect),
            ("rebellions sysfs status of 7 devices", sysfs),
            ("sapeon collect(), sapeon-smi --json (2 devices)", s_tool.collect),
            ("sapeon collect(), hwmon (2 devices)", s_hwmon.collect),
        ]
        print(
            f"# {platform.python_implementation()} {platform.python_version()}, "
            f"{os.cpu_count()} CPUs, {args.polls} polls; median / p90 ms per poll"
        )
        for label, fn in cases:
            median, p90 = timed(args.polls, fn)
            print(f"{label:<52} {median:8.2f} / {p90:8.2f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
