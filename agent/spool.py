"""The agent's on-disk spool: store and forward for batches (DESIGN §5, docs/delivery.md).

Every batch is appended to the spool before it is published and leaves it only after the broker's
PUBACK. It implements the :class:`kwatt.agent.runtime.Outbox` boundary (``put``/``head``/``ack``/``__len__``/
``bytes``/``dropped_points``/``last_seq``).

On disk, in ``dir``:

* ``seg-<first seq, 20 digits>.log``: append-only segment files. Each record is framed as::

      magic  b"KWS1"        4 bytes
      length u32 LE         payload length
      crc    u32 LE         CRC-32 (zlib) of seq ‖ points ‖ payload
      seq    u64 LE         the batch's sequence number
      points u32 LE         points in the batch
      payload               ``length`` bytes of line protocol

  A new segment is started when the current one reaches ``segment_bytes``. A segment whose records
  are all acknowledged (or dropped for the quota) is deleted, except the one being written.
* ``ack``: one fixed 28-byte record, rewritten in place: acknowledged seq (u64), dropped points (u64),
  dropped batches (u64), CRC-32 (u32). Everything at or below the acknowledged seq is done.

* ``lock``: ``flock(2)``-ed while a Spool has the directory open: a second agent on the same spool
  is refused with :class:`SpoolError` (the kernel drops the lock when the process dies).

Recovery (``Spool(...)`` on an existing directory) reads ``ack``, scans the segments in order and
keeps every record above the acknowledged seq. A record that does not check out (short header, bad
magic, impossible length, short payload, CRC mismatch: the torn tail of a write interrupted by
SIGKILL or a power cut) ends that segment: the file is truncated there, the event is logged with the
file and offset and counted in ``torn_records``; it never raises. A torn or missing ``ack`` record
counts as "nothing acknowledged", which replays batches the broker may already have: harmless,
because writes are idempotent (DESIGN §4) — a duplicate, never a loss.

The sequence number continues across restarts: the next seq is one past the larger of the last
record on disk and the acknowledged seq.

Durability (``fsync``): a record is written with ``write(2)`` before ``put`` returns, so it survives a
SIGKILL of the agent under every policy (the kernel holds it). ``fsync`` decides what survives a
kernel crash or power loss:

* ``always``: a batch is fsynced before it is handed to the publisher (group commit: one fsync, in a
  worker thread, covers every record written since the last one), so nothing the broker ever saw
  can be lost, and collection never waits on the disk.
* ``interval``: fsync at most every ``fsync_interval_s`` (in a worker thread); a power cut loses at
  most that much.
* ``never``: leave it to the kernel's writeback (typically ≤ 30 s, ``vm.dirty_expire_centisecs``).

The quota (``max_bytes``, counting framed records not yet acknowledged) is kept by dropping the oldest
batches, counted in ``dropped_points``; ``put`` never blocks or fails for lack of room. A disk error
in ``put`` (disk full, I/O error) is logged and the batch is kept in memory instead, so collection
goes on; it is published from memory and lost only if the agent also dies.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import logging
import os
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from kwatt.agent.batch import Batch

__all__ = ["FsyncPolicy", "Spool", "SpoolError", "SpoolRecovery", "read_spool"]

log = logging.getLogger("kwatt.spool")

FsyncPolicy = Literal["always", "interval", "never"]
_Bytes = bytes  # the Spool class has a ``bytes`` property, which shadows the type inside it

MAGIC = b"KWS1"
_HEADER = struct.Struct("<4sIIQI")  # magic, length, crc, seq, points
HEADER_BYTES = _HEADER.size  # 24
_ACK = struct.Struct("<QQQI")  # acked seq, dropped points, dropped batches, crc
_SEG_PREFIX, _SEG_SUFFIX = "seg-", ".log"
#: A record longer than this is corruption, not a batch (the ingest refuses 4 MiB payloads anyway).
MAX_RECORD_BYTES = 256 * 1024 * 1024


class SpoolError(OSError):
    """The spool directory cannot be used at all (not creatable, not writable); names the path."""


@dataclass(frozen=True, slots=True)
class _Entry:
    """Where one unacknowledged batch lives."""

    seq: int
    points: int
    segment: Path
    offset: int  # of the header
    length: int  # payload bytes

    @property
    def framed(self) -> int:
        return HEADER_BYTES + self.length


@dataclass(frozen=True, slots=True)
class SpoolRecovery:
    """What opening an existing spool found."""

    pending_batches: int
    pending_points: int
    acked_seq: int
    last_seq: int
    torn_records: int


def _frame(seq: int, points: int, payload: bytes) -> bytes:
    body = struct.pack("<QI", seq, points) + payload
    return _HEADER.pack(MAGIC, len(payload), zlib.crc32(body), seq, points) + payload


def _seg_name(first_seq: int) -> str:
    return f"{_SEG_PREFIX}{first_seq:020d}{_SEG_SUFFIX}"


def _segments(directory: Path) -> list[Path]:
    out = []
    for p in directory.iterdir():
        name = p.name
        if name.startswith(_SEG_PREFIX) and name.endswith(_SEG_SUFFIX):
            digits = name[len(_SEG_PREFIX) : -len(_SEG_SUFFIX)]
            if digits.isdigit():
                out.append(p)
    return sorted(out)


def _scan(path: Path) -> tuple[list[_Entry], int, str | None]:
    """Records of one segment file, the offset where the valid data ends, and why it ended early."""
    entries: list[_Entry] = []
    with path.open("rb") as f:
        data = f.read()
    off = 0
    while off < len(data):
        if len(data) - off < HEADER_BYTES:
            return entries, off, f"short header ({len(data) - off} bytes)"
        magic, length, crc, seq, points = _HEADER.unpack_from(data, off)
        if magic != MAGIC:
            return entries, off, f"bad magic {magic!r}"
        if length > MAX_RECORD_BYTES:
            return entries, off, f"impossible length {length}"
        end = off + HEADER_BYTES + length
        if end > len(data):
            return (
                entries,
                off,
                f"short payload ({len(data) - off - HEADER_BYTES} of {length} bytes)",
            )
        body = data[off + 12 : end]  # seq ‖ points ‖ payload
        if zlib.crc32(body) != crc:
            return entries, off, "CRC mismatch"
        entries.append(_Entry(seq, points, path, off, length))
        off = end
    return entries, off, None


def _read_ack(path: Path) -> tuple[int, int, int]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return 0, 0, 0
    if len(raw) != _ACK.size:
        log.warning("%s: %d bytes, expected %d: replaying everything", path, len(raw), _ACK.size)
        return 0, 0, 0
    seq, dp, db, crc = _ACK.unpack(raw)
    if zlib.crc32(raw[:-4]) != crc:
        log.warning("%s: CRC mismatch: replaying everything (duplicates, not loss)", path)
        return 0, 0, 0
    return seq, dp, db


class Spool:
    """A directory of segment files implementing the agent's Outbox."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_bytes: int = 256 * 1024 * 1024,
        segment_bytes: int | None = None,
        fsync: FsyncPolicy = "interval",
        fsync_interval_s: float = 1.0,
    ) -> None:
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes or max(64 * 1024, min(16 * 1024 * 1024, max_bytes // 8))
        self.fsync: FsyncPolicy = fsync
        self.fsync_interval_s = fsync_interval_s
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            probe = self.dir / ".probe"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise SpoolError(e.errno, f"spool dir {self.dir}: not writable: {e.strerror}") from None
        # One agent per spool: a second writer would interleave records and acks. flock(2) is
        # released by the kernel when the process dies, so a SIGKILLed agent leaves no stale lock.
        try:
            self._lock_fd: int | None = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            raise SpoolError(
                e.errno, f"spool dir {self.dir}: in use by another agent (lock held): {e.strerror}"
            ) from None
        self._ack_path = self.dir / "ack"
        self._q: collections.deque[_Entry] = collections.deque()
        self._memory: dict[int, _Bytes] = {}  # seq -> payload of batches the disk refused
        self._bytes = 0
        self._nonempty = asyncio.Event()
        self._fd: int | None = None
        self._seg: Path | None = None
        self._seg_size = 0
        self._written_seq = 0  # highest seq written to the active fd
        self._synced_seq = 0  # highest seq known fsynced
        self._last_sync = time.monotonic()
        self._sync_task: asyncio.Future[None] | None = None
        self._head_cache: Batch | None = None
        self.torn_records = 0
        self.disk_errors = 0
        self.recovery = self._recover()

    # ------------------------------------------------------------------ recovery

    def _recover(self) -> SpoolRecovery:
        acked, self._dropped_points, self._dropped_batches = _read_ack(self._ack_path)
        last = acked
        segments = _segments(self.dir)
        for seg in segments:
            entries, valid_end, why = _scan(seg)
            if why is not None:
                self.torn_records += 1
                log.warning(
                    "%s: torn record at offset %d (%s): discarding the %d byte(s) after it",
                    seg,
                    valid_end,
                    why,
                    seg.stat().st_size - valid_end,
                )
                with seg.open("r+b") as f:
                    f.truncate(valid_end)
            for e in entries:
                last = max(last, e.seq)
                if e.seq > acked:
                    self._q.append(e)
                    self._bytes += e.framed
        live = {e.segment for e in self._q}
        for seg in segments:
            if seg not in live:
                seg.unlink()
        self._acked_seq = acked
        self._last_seq = last
        self._synced_seq = last  # what is on disk now stays there or was torn
        if self._q:
            self._nonempty.set()
        rec = SpoolRecovery(
            len(self._q), sum(e.points for e in self._q), acked, last, self.torn_records
        )
        if self._q or self.torn_records:
            log.info(
                "spool %s: %d batch(es), %d point(s) to replay (seq %d..%d), %d torn record(s)",
                self.dir,
                rec.pending_batches,
                rec.pending_points,
                self._q[0].seq if self._q else 0,
                last,
                self.torn_records,
            )
        return rec

    # ------------------------------------------------------------------ Outbox

    @property
    def last_seq(self) -> int:
        """The highest seq ever put (persisted: the agent continues from here)."""
        return self._last_seq

    @property
    def bytes(self) -> int:
        return self._bytes

    @property
    def dropped_points(self) -> int:
        return self._dropped_points

    @property
    def dropped_batches(self) -> int:
        return self._dropped_batches

    def __len__(self) -> int:
        return len(self._q)

    def put(self, batch: Batch) -> None:
        """Append ``batch``; drop the oldest batches beyond the quota. Never blocks; a disk error
        keeps the batch in memory. Raises only for a seq that does not increase (a caller's bug)."""
        if batch.seq <= self._last_seq:
            raise ValueError(f"spool {self.dir}: seq {batch.seq} is not above {self._last_seq}")
        frame = _frame(batch.seq, batch.points, batch.payload)
        try:
            fd = self._writable(batch.seq, len(frame))
            offset = self._seg_size
            os.write(fd, frame)
            self._seg_size += len(frame)
            assert self._seg is not None
            entry = _Entry(batch.seq, batch.points, self._seg, offset, len(batch.payload))
            self._written_seq = batch.seq
        except OSError as e:
            self.disk_errors += 1
            log.error(  # noqa: TRY400 (the message carries the OS error; no traceback)
                "spool %s: cannot write batch seq=%d (%s): keeping it in memory only",
                self.dir,
                batch.seq,
                e,
            )
            self._memory[batch.seq] = batch.payload
            entry = _Entry(batch.seq, batch.points, self.dir / "(memory)", -1, len(batch.payload))
            self._close_fd()  # start a fresh segment next time
        self._last_seq = batch.seq
        self._q.append(entry)
        self._bytes += entry.framed
        self._enforce_quota()
        self._nonempty.set()
        if self.fsync == "interval" and time.monotonic() - self._last_sync >= self.fsync_interval_s:
            self._start_sync()

    async def head(self) -> Batch:
        """The oldest unacknowledged batch (under ``fsync: always``, once it is fsynced)."""
        while True:
            while not self._q:
                self._nonempty.clear()
                await self._nonempty.wait()
            e = self._q[0]
            if self.fsync == "always" and e.offset >= 0 and e.seq > self._synced_seq:
                self._start_sync()
                if self._sync_task is None or self._sync_task.done():
                    # nothing open to sync (the segment was closed, and fsynced, meanwhile)
                    self._synced_seq = max(self._synced_seq, self._written_seq)
                else:
                    await asyncio.shield(self._sync_task)
                continue  # the head may have been dropped meanwhile
            if self._head_cache is not None and self._head_cache.seq == e.seq:
                return self._head_cache
            try:
                payload = self._read(e)
            except OSError as err:
                log.error(  # noqa: TRY400 (the message carries the OS error; no traceback)
                    "spool %s: cannot read batch seq=%d at %s:%d (%s): dropping it",
                    self.dir,
                    e.seq,
                    e.segment,
                    e.offset,
                    err,
                )
                self._drop_head()
                continue
            self._head_cache = Batch(e.seq, payload, e.points)
            return self._head_cache

    def ack(self, batch: Batch) -> None:
        """The broker has ``batch``: forget it (and everything older still queued)."""
        if not self._q or self._q[0].seq != batch.seq:
            return  # dropped for the quota while in flight
        e = self._q.popleft()
        self._bytes -= e.framed
        self._memory.pop(e.seq, None)
        self._acked_seq = max(self._acked_seq, e.seq)
        self._write_ack()
        self._collect_segments(e.segment)

    # ------------------------------------------------------------------ internals

    def _read(self, e: _Entry) -> _Bytes:
        if e.offset < 0:
            return self._memory[e.seq]
        with e.segment.open("rb") as f:
            f.seek(e.offset)
            raw = f.read(e.framed)
        if len(raw) != e.framed:
            raise OSError(f"short read ({len(raw)} of {e.framed} bytes)")
        _, length, crc, seq, _ = _HEADER.unpack_from(raw)
        if seq != e.seq or length != e.length or zlib.crc32(raw[12:]) != crc:
            raise OSError("record changed on disk (CRC or header mismatch)")
        return raw[HEADER_BYTES:]

    def _writable(self, seq: int, size: int) -> int:
        if self._fd is not None and self._seg_size + size > self.segment_bytes and self._seg_size:
            self._close_fd()
        if self._fd is None:
            self._seg = self.dir / _seg_name(seq)
            self._fd = os.open(self._seg, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._seg_size = os.fstat(self._fd).st_size
            if self.fsync != "never":
                # the new directory entry must survive too (fsync(2): "also needs an explicit
                # fsync() on a file descriptor for the directory")
                dfd = os.open(self.dir, os.O_RDONLY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
        return self._fd

    def _close_fd(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if self.fsync != "never":
                os.fsync(fd)  # once per segment
                self._synced_seq = max(self._synced_seq, self._written_seq)
        except OSError as e:
            log.error("spool %s: fsync of %s failed: %s", self.dir, self._seg, e)  # noqa: TRY400
            self._synced_seq = max(self._synced_seq, self._written_seq)  # cannot do better: go on
        finally:
            os.close(fd)

    def _start_sync(self) -> None:
        """fsync the active segment in a worker thread (one at a time; a group commit)."""
        if self._fd is None or (self._sync_task is not None and not self._sync_task.done()):
            return
        fd = os.dup(self._fd)  # the thread owns its own descriptor: rotation cannot close it
        upto = self._written_seq
        self._last_sync = time.monotonic()

        def sync() -> None:
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

        async def run() -> None:
            try:
                await asyncio.to_thread(sync)
                self._synced_seq = max(self._synced_seq, upto)
            except OSError as e:
                log.error("spool %s: fsync failed: %s", self.dir, e)  # noqa: TRY400
                self._synced_seq = max(self._synced_seq, upto)  # nothing better to do: go on

        self._sync_task = asyncio.ensure_future(run())

    def _enforce_quota(self) -> None:
        while self._bytes > self.max_bytes and len(self._q) > 1:
            old = self._q[0]
            log.warning(
                "spool %s over %d bytes: dropped batch seq=%d (%d points)",
                self.dir,
                self.max_bytes,
                old.seq,
                old.points,
            )
            self._drop_head()

    def _drop_head(self) -> None:
        e = self._q.popleft()
        self._bytes -= e.framed
        self._memory.pop(e.seq, None)
        self._dropped_points += e.points
        self._dropped_batches += 1
        self._acked_seq = max(self._acked_seq, e.seq)  # "done with", so recovery skips it
        self._write_ack()
        self._collect_segments(e.segment)

    def _write_ack(self) -> None:
        body = struct.pack("<QQQ", self._acked_seq, self._dropped_points, self._dropped_batches)
        raw = body + struct.pack("<I", zlib.crc32(body))
        try:
            fd = os.open(self._ack_path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.pwrite(fd, raw, 0)
            finally:
                os.close(fd)
        except OSError as e:  # a lost ack replays a batch: a duplicate, never a loss
            log.error("spool %s: cannot record ack seq=%d: %s", self.dir, self._acked_seq, e)  # noqa: TRY400

    def _collect_segments(self, seg: Path) -> None:
        """Delete ``seg`` if nothing queued lives in it and it is not being written."""
        if seg == self._seg or seg.name == "(memory)":
            if seg == self._seg and not self._q and self._seg_size >= self.segment_bytes // 2:
                self._close_fd()  # fully acknowledged and big: start afresh
                self._seg = None
                self._unlink(seg)
            return
        # Entries are in seq order and a segment holds a contiguous run of them, so once the head
        # lives elsewhere nothing queued lives in ``seg``.
        if self._q and self._q[0].segment == seg:
            return
        self._unlink(seg)

    def _unlink(self, seg: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            try:
                seg.unlink()
            except OSError as e:
                log.error("spool %s: cannot delete %s: %s", self.dir, seg, e)  # noqa: TRY400

    async def aclose(self) -> None:
        """Finish a pending fsync and close the active segment (fsynced unless ``never``)."""
        if self._sync_task is not None:
            with contextlib.suppress(Exception):
                await self._sync_task
        self._close_fd()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None


def read_spool(directory: str | os.PathLike[str]) -> list[Batch]:
    """The batches a spool directory would replay, oldest first, without changing anything on disk
    (for tests and ``kwatt`` diagnostics)."""
    d = Path(directory)
    if not d.is_dir():
        return []
    acked, _, _ = _read_ack(d / "ack")
    out: list[Batch] = []
    for seg in _segments(d):
        entries, _, _ = _scan(seg)
        data = seg.read_bytes()
        for e in entries:
            if e.seq > acked:
                start = e.offset + HEADER_BYTES
                out.append(Batch(e.seq, data[start : start + e.length], e.points))
    return out
