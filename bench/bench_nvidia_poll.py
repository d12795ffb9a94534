"""Cost per poll of the NVIDIA collectors: NVML (nvidia-ml-py) vs spawning ``nvidia-smi``.

Writes one snapshot of N emulated GPUs (h100 and t4 alternating) into a temporary root, installs the
emulated ``ROOT/bin/nvidia-smi`` and ``libnvidia-ml.so.1`` and times ``collect()`` of the ``nvml``
collector (the real nvidia-ml-py over the emulated library) and of the ``nvidia_smi`` collector in
csv and xml modes.

    .venv/bin/python bench/bench_nvidia_poll.py --gpus 2 --polls 50

Prints one line per collector (median and p90 wall time per poll) and a JSON summary. Benchmarks print;
they never assert. No real GPU is involved: the NVML figure is nvidia-ml-py's ctypes calls into the
emulated library (which answers from a text state file it re-reads when it changes);
the nvidia-smi figure is dominated by starting a Python process, as a real nvidia-smi start is by
loading the driver library.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from kwatt.collectors import nvidia_smi, nvml
from kwatt.collectors.base import Collector
from kwatt.emulators import libnvml
from kwatt.emulators.nvidia import NvidiaSurface
from kwatt.emulators.state import DeviceState, Snapshot, write_snapshot
from kwatt.emulators.surfaces import SurfaceContext


def _devices(n: int) -> tuple[DeviceState, ...]:
    out = []
    for i in range(n):
        model = "h100" if i % 2 == 0 else "t4"
        out.append(
            DeviceState(
                index=i,
                model=model,
                vendor="nvidia",
                serial=f"16549220{i:05d}",
                uuid=f"GPU-00000000-0000-4000-8000-{i:012x}",
                bus_id=f"0000:{0x1B + i:02x}:00.0",
                t_s=1.0,
                util_ratio=0.5,
                power_w=300.0 if model == "h100" else 40.0,
                energy_j=1234.5,
                temp_c=55.0,
                clock_hz=1.5e9,
                mem_used_bytes=2**33,
                mem_total_bytes=2**36,
                power_limit_w=700.0 if model == "h100" else 70.0,
            )
        )
    return tuple(out)


async def _time(c: Collector, polls: int) -> list[float]:
    await c.collect()  # warm-up (imports, first init)
    times = []
    for _ in range(polls):
        t0 = time.perf_counter()
        await c.collect()
        times.append(time.perf_counter() - t0)
    await c.aclose()
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpus", type=int, default=2)
    ap.add_argument("--polls", type=int, default=50)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        devices = _devices(args.gpus)
        surface = NvidiaSurface(SurfaceContext(root=root, seed=0))
        surface.setup(root, devices)
        snap = Snapshot(1.0, time.time_ns(), devices, None)
        write_snapshot(root, snap)
        surface.render(snap)
        libnvml.load_in_process(root)  # as LD_LIBRARY_PATH=ROOT/.kwatt-emulator/nvml would
        tool = str(root / "bin" / "nvidia-smi")
        collectors: dict[str, Collector] = {
            "nvml (nvidia-ml-py)": nvml.PLUGIN.create("nvml", nvml.Config()),
            "nvidia_smi csv": nvidia_smi.PLUGIN.create(
                "smi", nvidia_smi.Config(tool=tool, mode="csv")
            ),
            "nvidia_smi xml": nvidia_smi.PLUGIN.create(
                "smi", nvidia_smi.Config(tool=tool, mode="xml")
            ),
        }
        summary = {}
        for name, c in collectors.items():
            times = asyncio.run(_time(c, args.polls))
            med = statistics.median(times) * 1e3
            p90 = statistics.quantiles(times, n=10)[-1] * 1e3
            summary[name] = {"median_ms": round(med, 3), "p90_ms": round(p90, 3)}
            print(f"{name:24s} median {med:8.3f} ms/poll  p90 {p90:8.3f} ms/poll")
        print(
            json.dumps(
                {
                    "gpus": args.gpus,
                    "polls": args.polls,
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "results": summary,
                }
            )
        )


if __name__ == "__main__":
    main()
