"""The agent's on-disk spool (agent/spool.py): framing, ack, replay, torn tails, quota, seq, fsync."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kwatt.agent.batch import Batch
from kwatt.agent.config import agent_config_from
from kwatt.agent.runtime import MemoryOutbox, make_outbox
from kwatt.agent.spool import HEADER_BYTES, Spool, SpoolError, _frame, read_spool
from kwatt.wire.settings import ConfigError

REPO = Path(__file__).resolve().parents[2]


def segments(d: Path) -> list[Path]:
    return sorted(d.glob("seg-*.log"))


def batch(seq: int, size: int = 100) -> Batch:
    line = f"accel,site=s,node=n,vendor=v,model=m,device=d{seq} power_w={seq}.5 {seq}\n".encode()
    payload = (line * (size // len(line) + 1))[:size]
    return Batch(seq, payload, points=seq % 7 + 1)


async def drain(sp: Spool) -> list[Batch]:
    out = []
    while len(sp):
        b = await sp.head()
        out.append(b)
        sp.ack(b)
    return out


def test_put_head_ack_in_order_and_files_are_collected(tmp_path: Path) -> None:
    async def main() -> None:
        sp = Spool(tmp_path, segment_bytes=4096, fsync="never")
        sent = [batch(i, 500) for i in range(1, 41)]
        for b in sent:
            sp.put(b)
        assert len(sp) == 40 and sp.bytes == 40 * (500 + HEADER_BYTES)
        assert len(segments(tmp_path)) > 3  # rotated
        got = await drain(sp)
        assert got == sent
        assert sp.bytes == 0 and sp.dropped_points == 0
        # every segment but (at most) the active one is gone
        assert len(segments(tmp_path)) <= 1
        await sp.aclose()

    asyncio.run(main())


def test_restart_replays_unacked_in_order_and_continues_seq(tmp_path: Path) -> None:
    async def main() -> None:
        sp = Spool(tmp_path, segment_bytes=8192, fsync="never")
        for i in range(1, 21):
            sp.put(batch(i, 300))
        for _ in range(7):
            sp.ack(await sp.head())
        await sp.aclose()

        again = Spool(tmp_path, segment_bytes=8192, fsync="never")
        assert again.recovery.pending_batches == 13
        assert again.recovery.acked_seq == 7 and again.last_seq == 20
        assert [b.seq for b in read_spool(tmp_path)] == list(range(8, 21))
        again.put(batch(21))
        got = await drain(again)
        assert [b.seq for b in got] == list(range(8, 22))
        assert got[0] == batch(8, 300)
        await again.aclose()
        # fully acknowledged: the numbering still continues
        third = Spool(tmp_path, fsync="never")
        assert len(third) == 0 and third.last_seq == 21

    asyncio.run(main())


@pytest.mark.parametrize("cut", [1, 5, HEADER_BYTES - 1, HEADER_BYTES, HEADER_BYTES + 50])
def test_torn_tail_is_discarded_not_fatal(tmp_path: Path, cut: int) -> None:
    """A record cut anywhere (SIGKILL mid-write) is detected and dropped; the rest survives."""

    async def main() -> None:
        sp = Spool(tmp_path, fsync="never")
        for i in range(1, 6):
            sp.put(batch(i, 200))
        await sp.aclose()
        seg = segments(tmp_path)[-1]
        with seg.open("ab") as f:  # the start of a 6th record, cut short
            f.write(Spool_frame(6, batch(6, 200))[:cut])
        again = Spool(tmp_path, fsync="never")
        assert again.torn_records == 1
        assert seg.stat().st_size == 5 * (200 + HEADER_BYTES)  # truncated at the torn record
        assert [b.seq for b in await drain(again)] == [1, 2, 3, 4, 5]
        again.put(batch(6, 200))  # writing goes on after the truncation
        assert [b.seq for b in await drain(again)] == [6]

    asyncio.run(main())


def Spool_frame(seq: int, b: Batch) -> bytes:
    return _frame(seq, b.points, b.payload)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 12),
    flip=st.integers(0, 10_000),
    garbage=st.binary(max_size=64),
)
def test_corruption_anywhere_never_crashes_and_keeps_a_prefix(
    tmp_path_factory: pytest.TempPathFactory, n: int, flip: int, garbage: bytes
) -> None:
    d = tmp_path_factory.mktemp("corrupt")

    async def main() -> None:
        sp = Spool(d, fsync="never")
        for i in range(1, n + 1):
            sp.put(batch(i, 120))
        await sp.aclose()
        seg = segments(d)[0]
        data = bytearray(seg.read_bytes())
        pos = flip % len(data)
        data[pos] ^= 0xFF
        seg.write_bytes(bytes(data) + garbage)
        again = Spool(d, fsync="never")
        got = [b.seq for b in await drain(again)]
        # the records before the damaged one are intact and in order; nothing after it is trusted
        damaged = pos // (120 + HEADER_BYTES) + 1
        assert got == list(range(1, damaged))
        assert again.torn_records == 1

    asyncio.run(main())


def test_quota_drops_oldest_counts_and_persists_the_count(tmp_path: Path) -> None:
    async def main() -> None:
        framed = 1000 + HEADER_BYTES
        sp = Spool(tmp_path, max_bytes=10 * framed, segment_bytes=4096, fsync="never")
        for i in range(1, 31):
            sp.put(batch(i, 1000))  # never blocks, never raises
        assert len(sp) == 10 and sp.bytes == 10 * framed
        dropped = sum(batch(i).points for i in range(1, 21))
        assert sp.dropped_points == dropped and sp.dropped_batches == 20
        await sp.aclose()
        # on disk: at most the quota plus one segment
        on_disk = sum(p.stat().st_size for p in segments(tmp_path))
        assert on_disk <= 10 * framed + 4096
        again = Spool(tmp_path, max_bytes=10 * framed, fsync="never")
        assert again.dropped_points == dropped
        assert [b.seq for b in await drain(again)] == list(range(21, 31))

    asyncio.run(main())


@pytest.mark.parametrize("policy", ["always", "interval", "never"])
def test_every_fsync_policy_delivers_the_same(tmp_path: Path, policy: str) -> None:
    async def main() -> None:
        sp = Spool(tmp_path, fsync=policy, fsync_interval_s=0.01, segment_bytes=4096)  # type: ignore[arg-type]
        sent = []
        for i in range(1, 31):
            sent.append(batch(i, 400))
            sp.put(sent[-1])
            if i % 10 == 0:
                await asyncio.sleep(0.02)
        assert await drain(sp) == sent
        await sp.aclose()

    asyncio.run(main())


def test_sigkill_mid_stream_loses_nothing_that_put_returned(tmp_path: Path) -> None:
    """A child process appends batches and prints each seq after put() returns; SIGKILL it at a
    random moment: every printed seq is replayed by the next Spool (a torn tail is allowed)."""
    code = textwrap.dedent(
        f"""
        import sys
        from kwatt.agent.batch import Batch
        from kwatt.agent.spool import Spool
        sp = Spool({str(tmp_path / "sp")!r}, fsync="never", segment_bytes=65536)
        seq = 0
        while True:
            seq += 1
            sp.put(Batch(seq, b"x" * (1000 + seq % 500), 3))
            print(seq, flush=True)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(int(line))
        if len(seen) == 3000:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait()
    rest = proc.stdout.read().split()
    proc.stdout.close()
    last_printed = max(seen + [int(x) for x in rest])
    sp = Spool(tmp_path / "sp", fsync="never")
    got = [b.seq for b in read_spool(tmp_path / "sp")]
    # every put() that returned is there, in order, with no gap; at most one more (written, not
    # yet printed) beyond the last printed
    assert got[:last_printed] == list(range(1, last_printed + 1))
    assert len(got) - last_printed in (0, 1)
    assert sp.last_seq == len(got)


def test_one_agent_per_spool_dir(tmp_path: Path) -> None:
    async def main() -> None:
        first = Spool(tmp_path, fsync="never")
        with pytest.raises(SpoolError, match=r"in use by another agent"):
            Spool(tmp_path, fsync="never")
        await first.aclose()
        second = Spool(tmp_path, fsync="never")  # released on close
        await second.aclose()

    asyncio.run(main())


def test_config_and_make_outbox(tmp_path: Path) -> None:
    base = {"site": "s", "node": "n"}
    assert isinstance(make_outbox(agent_config_from(base, where="t")), MemoryOutbox)
    cfg = agent_config_from(
        {**base, "spool": {"dir": str(tmp_path / "sp"), "fsync": "always"}}, where="t"
    )
    assert cfg.spool is not None and cfg.spool.fsync == "always"
    assert isinstance(make_outbox(cfg), Spool)
    with pytest.raises(ConfigError, match=r"spool.fsync: expected one of"):
        agent_config_from({**base, "spool": {"dir": "x", "fsync": "sometimes"}}, where="t")
    with pytest.raises(ConfigError, match=r"spool.max_bytes"):
        agent_config_from({**base, "spool": {"dir": "x", "max_bytes": 10}}, where="t")
