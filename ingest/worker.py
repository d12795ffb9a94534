"""``kwatt ingest``: MQTT → validation → InfluxDB, at least once (DESIGN §4, §5).

* Subscribes ``$share/<group>/kwatt/v1/+/+/metrics`` at QoS 1 with a fixed client id and a persistent
  session, so any number of workers split the load and messages queue at the broker while a worker is
  away.
* Acknowledges a message to the broker (manual PUBACK, paho's ``manual_ack``) only after InfluxDB
  accepted the lines it carries. A write that fails with a transient error (connection, 5xx) is retried
  with capped backoff and nothing is acknowledged meanwhile; a worker killed at any point loses nothing,
  since its unacknowledged messages are redelivered. Writes are idempotent: a point is measurement + tags
  + timestamp, so a redelivered message overwrites itself.
* Every payload is parsed and validated line by line. Good lines are kept; bad lines (syntax, unknown
  fields, wrong types, values outside their plausible range (DESIGN §3), timestamps before 2000 or
  more than ``max_future_s`` (1 h) ahead, ``site``/``node`` tags that differ from the topic) go to a
  dead-letter record with the reason and a bounded copy, and are counted. A payload that is not UTF-8 or
  is oversized is dead-lettered whole. A message InfluxDB refuses for good (4xx) is dead-lettered too,
  never retried forever. Nothing is dropped silently.
* Estimates each node's clock offset from what it receives (:class:`ClockOffsets`) and writes it per
  node and window in the ``ingest`` measurement (``clock_offset_s``), which ``kwatt report`` and
  ``kwatt top`` check against their skew bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import aiomqtt

from kwatt.ingest.config import IngestConfig
from kwatt.ingest.seqtrack import SeqTracker
from kwatt.wire import lineproto, topics
from kwatt.wire.influx import InfluxRejected, InfluxUnavailable, Writer, make_writer
from kwatt.wire.model import Measurement, Sample
from kwatt.wire.mqtt import Backoff, make_client

__all__ = ["ClockOffsets", "DeadLetters", "Ingest", "IngestStats"]

log = logging.getLogger("kwatt.ingest")

_DEADLETTER_COPY_BYTES = 4096


class _StopUnwritten(Exception):
    """Stop was requested while InfluxDB could not take the pending batch."""


@dataclass
class IngestStats:
    messages: int = 0
    points_written: int = 0
    lines_rejected: int = 0
    messages_deadlettered: int = 0
    writes: int = 0
    write_retries: int = 0
    batches_rejected: int = 0
    seq_missing: int = 0
    seq_duplicates: int = 0


class DeadLetters:
    """Append-only JSON-lines record of rejected input: time, topic, reason, bounded payload copy."""

    def __init__(self, directory: str | None) -> None:
        self.path = Path(directory) / "deadletter.jsonl" if directory else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def record(self, topic: str, reason: str, payload: bytes) -> None:
        head = payload[:_DEADLETTER_COPY_BYTES]
        log.warning("dead letter from %s: %s", topic, reason)
        if self.path is None:
            return
        doc = {
            "ts_ns": time.time_ns(),
            "topic": topic,
            "reason": reason,
            "payload": head.decode("utf-8", "backslashreplace"),
            "payload_bytes": len(payload),
            "truncated": len(payload) > len(head),
        }
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(doc, ensure_ascii=False) + "\n")


@dataclass
class _Pending:
    """Lines accepted from MQTT messages not yet acknowledged, in arrival order."""

    lines: list[bytes]
    mids: list[tuple[int, int]]  # (mid, qos) of each message; qos 0 needs no ack
    points: int
    first_at: float
    seqs: list[tuple[str, str, int]] = dataclasses.field(default_factory=list)


class ClockOffsets:
    """Each node's clock offset from what it sends (DESIGN §4 ``ingest.clock_offset_s``).

    Per message, ``newest sample timestamp - receive time`` is the node's clock offset minus that
    message's delivery delay (sampling to batch close, broker, network). The largest value over a
    window is therefore the offset, low by the window's shortest delay (a fraction of the agent's
    flush interval on a healthy node): a positive figure (node ahead) cannot come from delays; a
    negative one is a clock behind or a node whose data arrives late (e.g. a spool replaying).
    """

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._open: dict[tuple[str, str], tuple[float, int]] = {}  # node -> (opened at, max ns)
        self._closed: list[tuple[str, str, float]] = []

    def observe(self, site: str, node: str, ahead_ns: int, now_s: float) -> None:
        key = (site, node)
        cur = self._open.get(key)
        if cur is not None and now_s - cur[0] >= self.window_s:
            self._closed.append((site, node, cur[1] / 1e9))
            cur = None
        if cur is None:
            self._open[key] = (now_s, ahead_ns)
        elif ahead_ns > cur[1]:
            self._open[key] = (cur[0], ahead_ns)

    def take_closed(self, now_s: float) -> list[tuple[str, str, float]]:
        """(site, node, offset s) of every window that ended since the last call."""
        for key, (opened, ahead_ns) in list(self._open.items()):
            if now_s - opened >= self.window_s:
                self._closed.append((*key, ahead_ns / 1e9))
                del self._open[key]
        out, self._closed = self._closed, []
        return out


class Ingest:
    """One ingest worker."""

    def __init__(self, config: IngestConfig, *, writer: Writer | None = None) -> None:
        self.config = config
        self.writer = writer or make_writer(config.influx)
        self.stats = IngestStats()
        self.deadletters = DeadLetters(config.deadletter_dir)
        self._pending = _Pending([], [], 0, 0.0)
        self._writing: asyncio.Future[None] | None = None  # the write in flight (see _flush)
        self._inflight: _Pending | None = None  # its batch, until written
        self._ready = asyncio.Event()
        self._connected = asyncio.Event()
        self.seqs = SeqTracker()
        self.clocks = ClockOffsets(config.clock_window_s)
        # the worker's name as a tag value: its client id with anything a tag may not hold replaced
        self.worker = re.sub(r"[^A-Za-z0-9._:-]", "_", config.client_id())[:256]

    @property
    def connected(self) -> asyncio.Event:
        """Set while subscribed to the broker."""
        return self._connected

    async def run(self, stop: asyncio.Event) -> IngestStats:
        cfg = self.config
        backoff = Backoff(cfg.mqtt.reconnect_min_s, cfg.mqtt.reconnect_max_s)
        sub = topics.subscription("metrics", group=cfg.group if cfg.shared else None)
        while not stop.is_set():
            client = make_client(
                cfg.mqtt,
                identifier=cfg.client_id(),
                persistent=True,
                max_inflight=cfg.batch.max_unacked_messages,
            )
            # Manual acknowledgement: PUBACK only after the write (paho-mqtt >= 2.0).
            client._client.manual_ack_set(True)
            self._pending = _Pending([], [], 0, 0.0)  # unacked messages will be redelivered
            self._inflight = None
            try:
                async with client:
                    await client.subscribe(sub, qos=1)
                    backoff.reset()
                    self._connected.set()
                    log.info("subscribed to %s on %s as %s", sub, cfg.mqtt.url, cfg.client_id())
                    await self._consume(client, stop)
            except _StopUnwritten:
                unwritten = len(self._pending.mids)
                if self._inflight is not None:
                    unwritten += len(self._inflight.mids)
                log.warning(
                    "stopping with %d message(s) unwritten and unacknowledged; the broker "
                    "redelivers them",
                    unwritten,
                )
                break
            except aiomqtt.MqttError as e:
                self._connected.clear()
                delay = backoff.next_delay()
                log.warning("MQTT %s: %s; reconnecting in %.1f s", cfg.mqtt.url, e, delay)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await stop.wait()
        self._connected.clear()
        await asyncio.to_thread(self.writer.close)
        return self.stats

    async def _consume(self, client: aiomqtt.Client, stop: asyncio.Event) -> None:
        max_delay = self.config.batch.max_delay_s
        messages = client.messages.__aiter__()
        # aiomqtt's own queue (pinned aiomqtt>=2.5,<3, like ``_client`` below): messages already
        # received are taken from it directly, without the two tasks and waits per message that
        # ``__anext__`` costs; the iterator is awaited only when it is empty.
        queue: asyncio.Queue[aiomqtt.Message] = client._queue
        next_msg: asyncio.Task[aiomqtt.Message] | None = None
        stop_task = asyncio.ensure_future(stop.wait())
        try:
            while True:
                if next_msg is None:
                    next_msg = asyncio.ensure_future(messages.__anext__())
                timeout = None
                if self._pending.mids:
                    timeout = max(0.0, self._pending.first_at + max_delay - time.monotonic())
                done, _ = await asyncio.wait(
                    {next_msg, stop_task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if next_msg in done:
                    msg = next_msg.result()
                    next_msg = None
                    self._accept(msg)
                    while not self._batch_full() and not queue.empty():
                        self._accept(queue.get_nowait())
                    if self._batch_full():
                        await self._flush(client, stop)
                elif self._pending.mids:
                    await self._flush(client, stop)
                if stop_task in done:
                    await self._flush(client, stop)
                    await self._wait_written()
                    return
        finally:
            stop_task.cancel()
            if next_msg is not None:
                next_msg.cancel()
            # never leave a write running into the next connection's (the writer is not shared)
            await self._wait_written()

    def _batch_full(self) -> bool:
        p = self._pending
        return (
            p.points >= self.config.batch.max_points
            or len(p.mids) >= self.config.batch.max_unacked_messages
        )

    def _accept(self, msg: aiomqtt.Message) -> None:
        """Validate one message and add its good lines to the pending batch."""
        self.stats.messages += 1
        topic = str(msg.topic)
        payload = msg.payload if isinstance(msg.payload, bytes | bytearray) else b""
        payload = bytes(payload)
        if not self._pending.mids:
            self._pending.first_at = time.monotonic()
        self._pending.mids.append((msg.mid, msg.qos))
        try:
            name = topics.parse_topic(topic)
            if name.kind != "metrics":
                raise topics.TopicError(f"{topic}: not a metrics topic")
        except topics.TopicError as e:
            self.stats.messages_deadlettered += 1
            self.deadletters.record(topic, str(e), payload)
            return
        if len(payload) > self.config.batch.max_payload_bytes:
            self.stats.messages_deadlettered += 1
            self.deadletters.record(
                topic,
                f"payload of {len(payload)} bytes exceeds {self.config.batch.max_payload_bytes}",
                payload,
            )
            return
        recv_ns = time.time_ns()
        result = lineproto.scan_payload(
            payload,
            max_bytes=self.config.batch.max_payload_bytes,
            now_ns=recv_ns,
            max_skew_s=self.config.max_future_s,
        )
        whole = [err for err in result.errors if err.line == 0]
        if whole:  # not UTF-8, empty, oversized: the payload as a whole is rejected
            self.stats.lines_rejected += max(1, payload.count(b"\n"))
            self.stats.messages_deadlettered += 1
            self.deadletters.record(topic, whole[0].reason, payload)
            return
        bad = {err.line: err.reason for err in result.errors}
        raw_lines = payload.split(b"\n")
        kept = 0
        newest_ns = 0
        keep = self._pending.lines.append
        for line in result.lines:
            site = node = collector = None
            for k, v in line.tags:
                if k == "site":
                    site = v
                elif k == "node":
                    node = v
                elif k == "collector":
                    collector = v
            if site != name.site or node != name.node:
                bad[line.line] = (
                    f"tags site={site} node={node} differ from topic site={name.site} "
                    f"node={name.node}"
                )
                continue
            if line.measurement == Measurement.INGEST:
                bad[line.line] = "measurement 'ingest' is written by the ingest, not by agents"
                continue
            if line.measurement == Measurement.AGENT and collector is None:
                point = line.point or lineproto.parse_line(line.text)
                seq = dict(point.fields).get("seq")
                if isinstance(seq, int):
                    self._pending.seqs.append((name.site, name.node, seq))
            raw = raw_lines[line.line - 1]
            keep(raw)
            kept += 1
            ts = int(raw[raw.rindex(b" ") + 1 :])
            newest_ns = max(newest_ns, ts)
        self._pending.points += kept
        if newest_ns:
            self.clocks.observe(name.site, name.node, newest_ns - recv_ns, time.monotonic())
        if bad:
            self.stats.lines_rejected += len(bad)
            first = sorted(bad.items())[:5]
            reason = "; ".join(f"line {n}: {r}" for n, r in first)
            if len(bad) > len(first):
                reason += f"; and {len(bad) - len(first)} more"
            if not kept:
                self.stats.messages_deadlettered += 1
            self.deadletters.record(
                topic, f"{len(bad)} bad line(s), {kept} kept: {reason}", payload
            )

    async def _flush(self, client: aiomqtt.Client, stop: asyncio.Event) -> None:
        """Start writing the pending lines; their messages are acknowledged once written.

        One write is in flight at a time: the next batch is validated while the previous one is
        written, and its write starts only after the previous one (and its acknowledgements)
        finished, so writes and acknowledgements keep arrival order.
        """
        p = self._pending
        if not p.mids:
            return
        await self._wait_written()
        self._pending = _Pending([], [], 0, 0.0)
        self._inflight = p
        self._writing = asyncio.ensure_future(self._write_and_ack(client, p, stop))

    async def _wait_written(self) -> None:
        """Wait for the write in flight (if any); re-raises :class:`_StopUnwritten`."""
        writing = self._writing
        if writing is None:
            return
        try:
            await asyncio.shield(writing)
        finally:
            if writing.done():
                self._writing = None
                if not writing.cancelled() and writing.exception() is None:
                    self._inflight = None

    async def _write_and_ack(
        self, client: aiomqtt.Client, p: _Pending, stop: asyncio.Event
    ) -> None:
        """Write ``p``'s lines, then acknowledge their messages. Retries until written."""
        if p.lines:
            body = b"\n".join(p.lines) + b"\n" + self._seq_lines(p.seqs)
            retry = Backoff(self.config.retry_min_s, self.config.retry_max_s)
            while True:
                try:
                    await asyncio.to_thread(self.writer.write, body)
                    self.stats.writes += 1
                    self.stats.points_written += p.points
                    break
                except InfluxUnavailable as e:
                    self.stats.write_retries += 1
                    delay = retry.next_delay()
                    log.warning("InfluxDB unavailable (%s); retrying in %.1f s", e, delay)
                    if stop.is_set():
                        # shutting down: leave the messages unacknowledged; they are redelivered
                        raise _StopUnwritten from e
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay):
                            await stop.wait()
                except InfluxRejected as e:
                    self.stats.batches_rejected += 1
                    self.deadletters.record("(batch)", f"InfluxDB rejected the batch: {e}", body)
                    break
        ack = client._client.ack
        for mid, qos in p.mids:
            if qos > 0:
                ack(mid, qos)

    def _seq_lines(self, seqs: list[tuple[str, str, int]]) -> bytes:
        """Account the batch seqs of this write; one ``ingest`` point per node they came from."""
        for site, node, seq in seqs:
            self.seqs.observe(site, node, seq)
        self.stats.seq_missing, self.stats.seq_duplicates = self.seqs.totals()
        now = time.time_ns()
        out = [
            lineproto.encode(
                [Sample.ingest(now, worker=self.worker, clock_offset_s=offset_s)],
                site=site,
                node=node,
            )
            for site, node, offset_s in self.clocks.take_closed(time.monotonic())
        ]
        for site, node, c in self.seqs.take_changed():
            sample = Sample.ingest(
                now,
                worker=self.worker,
                seq_last=c.seq_last,
                seq_missing=c.seq_missing,
                seq_duplicates_total=c.seq_duplicates_total,
                seq_resets_total=c.seq_resets_total,
            )
            out.append(lineproto.encode([sample], site=site, node=node))
        return b"".join(out)

    def stats_dict(self) -> dict[str, int]:
        return asdict(self.stats)
