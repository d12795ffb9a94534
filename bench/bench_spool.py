"""Cost of the agent spool's fsync policies (agent/spool.py): batches/s through put → head → ack.

Usage: ``python bench/bench_spool.py [--batches 2000] [--size 2048] [--dir /var/tmp] [--repeat 3]``

Each run pushes ``--batches`` batches of ``--size`` bytes through a fresh spool in ``--dir`` the way
the agent does (put, then the publisher's head and ack) under ``fsync: always``, ``interval`` (1 s)
and ``never``, plus the in-memory outbox for reference. ``always`` is measured in its worst case: one
batch at a time, so every batch pays one fsync (the agent at one batch per flush interval is in
this case; under backlog, group commit shares one fsync among many batches). Figures: batches/s and
µs per batch, best of ``--repeat``. It prints; it never asserts (DESIGN §2). The figures depend on
the disk: name it when you quote them (docs/delivery.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from kwatt.agent.batch import Batch
from kwatt.agent.runtime import MemoryOutbox, Outbox
from kwatt.agent.spool import Spool


async def one_run(outbox: Outbox, batches: int, payload: bytes) -> float:
    t0 = time.perf_counter()
    for seq in range(1, batches + 1):
        outbox.put(Batch(seq, payload, 10))
        b = await outbox.head()
        outbox.ack(b)
    await outbox.aclose()
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=2000)
    ap.add_argument("--size", type=int, default=2048, help="payload bytes per batch")
    ap.add_argument("--dir", default=None, help="where to put the spool (default: a temp dir)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    payload = (b"accel,site=s,node=n,vendor=v,model=m,device=d power_w=1.5 1\n" * 200)[: args.size]
    base = Path(args.dir or tempfile.gettempdir())
    print(
        f"# bench_spool: {args.batches} batches x {args.size} B, best of {args.repeat}; "
        f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cpu(s), "
        f"spool under {base} ({_fs_type(base)})"
    )
    print(f"{'policy':<10} {'batches/s':>11} {'us/batch':>10} {'MB/s':>8}")
    for policy in ("memory", "never", "interval", "always"):
        best = float("inf")
        for _ in range(args.repeat):
            d = Path(tempfile.mkdtemp(prefix="bench-spool-", dir=base))
            try:
                outbox: Outbox
                if policy == "memory":
                    outbox = MemoryOutbox(1 << 30)
                else:
                    outbox = Spool(d, fsync=policy, fsync_interval_s=1.0)  # type: ignore[arg-type]
                best = min(best, asyncio.run(one_run(outbox, args.batches, payload)))
            finally:
                shutil.rmtree(d, ignore_errors=True)
        rate = args.batches / best
        print(f"{policy:<10} {rate:>11,.0f} {1e6 / rate:>10.1f} {rate * args.size / 1e6:>8.1f}")
    return 0


def _fs_type(path: Path) -> str:
    """The filesystem holding ``path`` (from /proc/mounts; longest matching mount point)."""
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts", encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                mnt, fs = parts[1], parts[2]
                if str(path.resolve()).startswith(mnt) and len(mnt) > len(best):
                    best, kind = mnt, f"{fs} on {parts[0]}"
    except OSError:
        pass
    return kind


if __name__ == "__main__":
    sys.exit(main())
