"""The node daemon: poll collectors on their schedules, batch, encode, publish over MQTT (DESIGN §1, §4).

Shape (one asyncio TaskGroup):

* one poll task per collector, drift-free on the monotonic clock (tick k fires at start + k·interval;
  ticks missed while a poll overran are skipped, not bunched), every poll under its timeout; a failing
  collector is logged (once per failure streak), counted and retried on its next tick: it never stops the
  others. A reading outside its plausible range (kwatt.wire.model.BOUNDS, DESIGN §3: a sentinel such as
  65535 °C) is made absent, counted and warned about (once a minute per field). Each poll also yields
  an ``agent`` point tagged with the collector: ``collect_ok``, ``collect_duration_s``,
  ``collect_errors_total``, ``out_of_range_total``.
* a flush task that every ``flush_interval_s`` (or as soon as ``max_batch_points`` are waiting) closes a
  batch, appends the ``agent`` point with the node's batch ``seq``, ``dropped_total`` and
  ``spool_bytes``, encodes it as line protocol and puts it in the :class:`Outbox`.
* the publisher: connects with a last will (``status`` = offline, retained), publishes retained
  ``status`` = online and ``inventory``, then sends outbox batches in order at QoS 1; a batch leaves the
  outbox only after the broker's PUBACK, and (MQTT 5, ``require_subscriber``) only if that PUBACK
  does not say "no matching subscribers": a broker that would discard the batch because no ingest is
  subscribed yet (Mosquitto 2.0 does not restore shared subscriptions after a restart) gets it again
  a little later. On a broken connection it reconnects with capped, jittered
  backoff and resends what was not acknowledged.

The outbox is the on-disk spool (agent/spool.py) when ``spool.dir`` is configured, else memory.
On SIGTERM the pollers stop, the last batch is closed, the outbox is flushed (bounded by
``drain_timeout_s``), ``status`` = offline is published and the client disconnects cleanly.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import aiomqtt

from kwatt import __version__
from kwatt.agent.batch import Batch
from kwatt.agent.config import AgentConfig, CollectorEntry
from kwatt.agent.spool import Spool
from kwatt.collectors.base import Collector, CollectorError
from kwatt.wire import lineproto, topics
from kwatt.wire.documents import OfflineCause, State, Status, encode_inventory, encode_status
from kwatt.wire.model import DeviceInfo, Sample, drop_implausible
from kwatt.wire.mqtt import (
    NO_MATCHING_SUBSCRIBERS,
    REFUSED_FOR_GOOD,
    Backoff,
    Client,
    check_node_identity,
    make_client,
)

__all__ = ["Agent", "AgentStats", "Batch", "MemoryOutbox", "OncePoll", "Outbox", "make_outbox"]

log = logging.getLogger("kwatt.agent")


class Outbox(Protocol):
    """Batches waiting for a PUBACK, oldest first: :class:`MemoryOutbox` or :class:`kwatt.agent.spool.Spool`.

    ``last_seq`` is the highest seq ever put (a spool persists it, so the agent's numbering
    continues across restarts); ``aclose`` releases files."""

    def put(self, batch: Batch) -> None: ...
    async def head(self) -> Batch: ...
    def ack(self, batch: Batch) -> None: ...
    def __len__(self) -> int: ...
    @property
    def bytes(self) -> int: ...
    @property
    def dropped_points(self) -> int: ...
    @property
    def last_seq(self) -> int: ...
    async def aclose(self) -> None: ...


class MemoryOutbox:
    """In-memory outbox with a byte quota: when full, the oldest batch is dropped and counted.

    ``put`` never blocks, so collection never waits on the network.
    """

    def __init__(self, max_bytes: int) -> None:
        self._q: collections.deque[Batch] = collections.deque()
        self._max_bytes = max_bytes
        self._bytes = 0
        self._dropped_points = 0
        self._last_seq = 0
        self._nonempty = asyncio.Event()

    def put(self, batch: Batch) -> None:
        self._last_seq = max(self._last_seq, batch.seq)
        self._q.append(batch)
        self._bytes += len(batch.payload)
        while self._bytes > self._max_bytes and len(self._q) > 1:
            old = self._q.popleft()
            self._bytes -= len(old.payload)
            self._dropped_points += old.points
            log.warning("outbox over %d bytes: dropped batch seq=%d", self._max_bytes, old.seq)
        self._nonempty.set()

    async def head(self) -> Batch:
        while not self._q:
            self._nonempty.clear()
            await self._nonempty.wait()
        return self._q[0]

    def ack(self, batch: Batch) -> None:
        if self._q and self._q[0] is batch:
            self._q.popleft()
            self._bytes -= len(batch.payload)
        # else: it was dropped for the quota while in flight; nothing to remove

    def __len__(self) -> int:
        return len(self._q)

    @property
    def bytes(self) -> int:
        return self._bytes

    @property
    def dropped_points(self) -> int:
        return self._dropped_points

    @property
    def last_seq(self) -> int:
        return self._last_seq

    async def aclose(self) -> None:
        return None


def make_outbox(config: AgentConfig) -> Outbox:
    """The spool of ``config.spool``, or a :class:`MemoryOutbox` (logged: nothing survives a crash)."""
    if config.spool is None:
        log.warning(
            "no spool configured: batches wait in memory and are lost if the agent dies "
            "(set spool.dir)"
        )
        return MemoryOutbox(config.publish.queue_max_bytes)
    sp = config.spool
    return Spool(
        sp.dir,
        max_bytes=sp.max_bytes,
        segment_bytes=sp.segment_bytes,
        fsync=sp.fsync,
        fsync_interval_s=sp.fsync_interval_s,
    )


@dataclass
class AgentStats:
    """What the agent did; written to ``--stats-file`` on exit and logged."""

    batched_points: int = 0  # closed into batches (sampled) by this run
    batched_batches: int = 0
    replayed_batches: int = 0  # found in the spool at start (a previous run's)
    published_points: int = 0
    published_batches: int = 0
    last_seq: int = 0
    dropped_points: int = 0
    pending_batches: int = 0
    collect_errors: dict[str, int] = dataclasses.field(default_factory=dict)
    connects: int = 0
    no_subscriber_retries: int = 0
    refused_batches: int = 0  # PUBACK reason in REFUSED_FOR_GOOD: logged, counted, not resent
    refused_points: int = 0


@dataclass
class _PollState:
    errors_total: int = 0
    failing: bool = False
    streak: int = 0  # consecutive failed polls
    last_error: str | None = None  # why the last poll failed; None after a success
    out_of_range_total: int = 0  # readings dropped as implausible (DESIGN §3 ranges)
    warned_ns: dict[str, int] = dataclasses.field(default_factory=dict)  # field -> last warning
    unwarned: dict[str, int] = dataclasses.field(default_factory=dict)  # field -> since then


@dataclass(frozen=True, slots=True)
class OncePoll:
    """What :meth:`Agent.poll_once` saw: the payloads the agent would have published (line
    protocol, in order) and the collectors whose poll failed, with the reason."""

    payloads: tuple[bytes, ...]
    failed: tuple[tuple[str, str], ...]  # (collector name, error)


#: After n consecutive failures a collector waits 2**(n-1) intervals (at most this long) before its
#: next poll, so a missing tool or a dead BMC is not hammered every second; one success resets it.
RETRY_MAX_S = 60.0
#: At most one warning per collector and field this often for readings out of their range.
RANGE_WARN_EVERY_NS = 60 * 10**9


class Agent:
    """One node's agent. Build collectors first (see :func:`kwatt.cli`), then ``await run(stop)``."""

    def __init__(
        self,
        config: AgentConfig,
        collectors: Sequence[tuple[CollectorEntry, Collector]],
        *,
        outbox: Outbox | None = None,
        drain_timeout_s: float = 10.0,
    ) -> None:
        check_node_identity(config.mqtt, config.node)
        self.config = config
        self.collectors = list(collectors)
        self.outbox: Outbox = outbox if outbox is not None else make_outbox(config)
        self.stats = AgentStats(replayed_batches=len(self.outbox))
        self.drain_timeout_s = drain_timeout_s
        self._pending: list[Sample] = []
        self._batch_ready = asyncio.Event()
        self._seq = self.outbox.last_seq  # a spool continues the numbering across restarts
        self._inventory: list[DeviceInfo] = []
        self._site, self._node = config.site, config.node
        self._metrics_topic = topics.metrics_topic(self._site, self._node)
        self._status_topic = topics.status_topic(self._site, self._node)
        self._inventory_topic = topics.inventory_topic(self._site, self._node)
        self._started_ns = time.time_ns()

    # ------------------------------------------------------------------ lifecycle

    async def run(self, stop: asyncio.Event) -> AgentStats:
        """Run until ``stop`` is set, then flush and return the stats."""
        self._inventory = await self._gather_inventory()
        collecting = asyncio.Event()
        collecting.set()
        publisher_done = asyncio.Event()
        async with asyncio.TaskGroup() as tg:
            polls = [tg.create_task(self._poll_loop(e, c, stop)) for e, c in self.collectors]
            flusher = tg.create_task(self._flush_loop(stop))
            tg.create_task(self._publish_loop(publisher_done))
            await stop.wait()
            await asyncio.gather(*polls)
            await flusher
            self._close_batch()
            # drain: give the publisher a bounded time to empty the outbox
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.drain_timeout_s):
                    while len(self.outbox):
                        await asyncio.sleep(0.02)
            publisher_done.set()
        for e, c in self.collectors:
            try:
                await c.aclose()
            except Exception:
                log.exception("collector %s: error while closing", e.name)
        self.stats.pending_batches = len(self.outbox)
        self.stats.dropped_points = self.outbox.dropped_points
        await self.outbox.aclose()
        if self.stats.pending_batches and self.config.spool is not None:
            log.info(
                "exiting with %d unpublished batch(es) kept in the spool %s for the next start",
                self.stats.pending_batches,
                self.config.spool.dir,
            )
        elif self.stats.pending_batches:
            log.warning(
                "exiting with %d unpublished batch(es) (broker unreachable?); without a spool "
                "they are lost",
                self.stats.pending_batches,
            )
        return self.stats

    async def poll_once(self) -> OncePoll:
        """``kwatt agent --once`` (as ``telegraf --test``): poll every collector once, all at the
        same time and each under its timeout, and close the batch(es) exactly as :meth:`run` does
        (same samples, ``agent`` points, batch ``seq`` and encoder); return the payloads instead of
        publishing them. No broker is contacted. Build the agent with a :class:`MemoryOutbox`
        (``outbox=``) so that no spool is opened either. The collectors are closed afterwards."""
        states = [_PollState() for _ in self.collectors]
        async with asyncio.TaskGroup() as tg:
            for (entry, c), state in zip(self.collectors, states, strict=True):
                tg.create_task(self._poll_once(entry, c, state))
        self._close_batch()
        payloads: list[bytes] = []
        while len(self.outbox):
            batch = await self.outbox.head()
            payloads.append(batch.payload)
            self.outbox.ack(batch)
        for entry, c in self.collectors:
            try:
                await c.aclose()
            except Exception:
                log.exception("collector %s: error while closing", entry.name)
        failed: list[tuple[str, str]] = []
        for (entry, _), state in zip(self.collectors, states, strict=True):
            if state.last_error is not None:
                failed.append((entry.name, state.last_error))
        return OncePoll(tuple(payloads), tuple(failed))

    async def _gather_inventory(self) -> list[DeviceInfo]:
        out: list[DeviceInfo] = []
        for entry, c in self.collectors:
            try:
                async with asyncio.timeout(entry.timeout_s):
                    out.extend(await c.inventory())
            except (CollectorError, TimeoutError, OSError) as e:
                log.warning("collector %s: inventory failed: %s", entry.name, e or "timeout")
        return out

    # ------------------------------------------------------------------ polling

    async def _poll_loop(self, entry: CollectorEntry, c: Collector, stop: asyncio.Event) -> None:
        interval_ns = round(entry.interval_s * 1e9)
        start_ns = time.monotonic_ns()
        tick = 0
        state = _PollState()
        while not stop.is_set():
            await self._poll_once(entry, c, state)
            tick += _ticks_until_retry(state.streak, entry.interval_s)
            now = time.monotonic_ns()
            due = start_ns + tick * interval_ns
            if due <= now:  # overran: skip the ticks we missed rather than bunching them
                tick += (now - due) // interval_ns + 1
                due = start_ns + tick * interval_ns
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout((due - now) / 1e9):
                    await stop.wait()

    async def _poll_once(self, entry: CollectorEntry, c: Collector, state: _PollState) -> None:
        ts_ns = time.time_ns()
        t0 = time.perf_counter()
        error: str | None = None
        try:
            async with asyncio.timeout(entry.timeout_s):
                samples = await c.collect()
            self._add(self._plausible(entry.name, samples, state))
        except TimeoutError:
            error = f"no answer within {entry.timeout_s:g} s"
        except CollectorError as e:
            error = str(e)
        except Exception as e:  # a collector bug must not stop the agent
            log.exception("collector %s: unexpected error", entry.name)
            error = f"{type(e).__name__}: {e}"
        duration_s = time.perf_counter() - t0
        state.streak = 0 if error is None else state.streak + 1
        state.last_error = error
        if error is not None:
            state.errors_total += 1
            self.stats.collect_errors[entry.name] = state.errors_total
            if not state.failing:
                log.warning("collector %s failed: %s", entry.name, error)
            else:
                log.debug("collector %s still failing: %s", entry.name, error)
            state.failing = True
        elif state.failing:
            log.info("collector %s recovered after %d failure(s)", entry.name, state.errors_total)
            state.failing = False
        self._add(
            [
                Sample.agent(
                    ts_ns,
                    collector=entry.name,
                    collect_ok=int(error is None),
                    collect_duration_s=duration_s,
                    collect_errors_total=state.errors_total,
                    out_of_range_total=state.out_of_range_total,
                )
            ]
        )

    @staticmethod
    def _plausible(name: str, samples: Sequence[Sample], state: _PollState) -> list[Sample]:
        """``samples`` with every reading outside its plausible range (kwatt.wire.model.BOUNDS) made
        absent, counted in ``out_of_range_total`` and warned about at most once a minute per field."""
        out: list[Sample] = []
        for s in samples:
            kept, bad = drop_implausible(s)
            if kept is not None:
                out.append(kept)
            if not bad:
                continue
            state.out_of_range_total += len(bad)
            now = time.monotonic_ns()
            for v in bad:
                last = state.warned_ns.get(v.field)
                if last is not None and now - last < RANGE_WARN_EVERY_NS:
                    state.unwarned[v.field] = state.unwarned.get(v.field, 0) + 1
                    continue
                state.warned_ns[v.field] = now
                more = state.unwarned.pop(v.field, 0)
                log.warning(
                    "collector %s: %s %s: %s, left out as a failed read%s",
                    name,
                    s.measurement.value,
                    s.tag("device") or s.tag("zone") or s.tag("source") or "",
                    v,
                    f" ({more} more such readings since the last warning)" if more else "",
                )
        return out

    def _add(self, samples: Sequence[Sample]) -> None:
        self._pending.extend(samples)
        if len(self._pending) >= self.config.publish.max_batch_points:
            self._batch_ready.set()

    # ------------------------------------------------------------------ batching

    async def _flush_loop(self, stop: asyncio.Event) -> None:
        period = self.config.publish.flush_interval_s
        while not stop.is_set():
            self._batch_ready.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(period):
                    await _first(stop, self._batch_ready)
            if not stop.is_set():
                self._close_batch()

    def _close_batch(self) -> None:
        limit = self.config.publish.max_batch_points
        while self._pending:
            chunk, self._pending = self._pending[:limit], self._pending[limit:]
            self._seq += 1
            chunk.append(
                Sample.agent(
                    time.time_ns(),
                    seq=self._seq,
                    dropped_total=self.outbox.dropped_points,
                    spool_bytes=self.outbox.bytes,
                )
            )
            payload = lineproto.encode(chunk, site=self._site, node=self._node)
            self.outbox.put(Batch(self._seq, payload, len(chunk)))
            self.stats.batched_points += len(chunk)
            self.stats.batched_batches += 1

    # ------------------------------------------------------------------ publishing

    def _status(self, state: State, cause: OfflineCause | None = None) -> bytes:
        """The retained status (DESIGN §4). ``offline`` carries its ``cause``: ``lost`` (the last
        will: the broker saw the connection die without a DISCONNECT, i.e. a dead agent, host or
        network) or ``stopped`` (a clean shutdown). ``online`` with an old ``since`` and no recent
        metrics is an idle or stuck agent, not a dead one (docs/delivery.md)."""
        return encode_status(Status(state, __version__, self._started_ns, cause))

    def _inventory_payload(self) -> bytes:
        return encode_inventory(self._inventory)

    async def _publish_loop(self, done: asyncio.Event) -> None:
        cfg = self.config.mqtt
        backoff = Backoff(cfg.reconnect_min_s, cfg.reconnect_max_s)
        will = aiomqtt.Will(self._status_topic, self._status("offline", "lost"), qos=1, retain=True)
        identifier = cfg.client_id or f"kwatt-agent-{self._site}-{self._node}"
        while not done.is_set():
            client = make_client(cfg, identifier=identifier, will=will)
            try:
                async with client:
                    self.stats.connects += 1
                    backoff.reset()
                    log.info("connected to %s as %s", cfg.url, identifier)
                    await client.publish(self._status_topic, self._status("online"), 1, True)
                    await client.publish(self._inventory_topic, self._inventory_payload(), 1, True)
                    await self._send_batches(client, done)
                    # clean shutdown: say so (the will only covers unclean disconnects)
                    await client.publish(
                        self._status_topic, self._status("offline", "stopped"), 1, True
                    )
                    return
            except aiomqtt.MqttError as e:
                delay = backoff.next_delay()
                log.warning("MQTT %s: %s; reconnecting in %.1f s", cfg.url, e, delay)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await done.wait()

    async def _send_batches(self, client: Client, done: asyncio.Event) -> None:
        qos = self.config.publish.qos
        retry = Backoff(0.2, 5.0)
        waiting = asyncio.Event()  # a plain flag: set while the broker reports no subscriber
        while True:
            head_task = asyncio.ensure_future(self.outbox.head())
            done_task = asyncio.ensure_future(done.wait())
            finished, _ = await asyncio.wait(
                {head_task, done_task}, return_when=asyncio.FIRST_COMPLETED
            )
            done_task.cancel()
            if head_task not in finished:
                head_task.cancel()
                return
            batch = head_task.result()
            reason = await client.publish_acked(self._metrics_topic, batch.payload, qos)
            if reason == NO_MATCHING_SUBSCRIBERS and self.config.publish.require_subscriber:
                # The broker would discard it (no ingest subscribed yet, e.g. right after a
                # broker restart): keep the batch and try again shortly.
                self.stats.no_subscriber_retries += 1
                if not waiting.is_set():
                    log.warning(
                        "no subscriber for %s (is the ingest running?): holding %d batch(es)",
                        self._metrics_topic,
                        len(self.outbox),
                    )
                    waiting.set()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(retry.next_delay()):
                        await done.wait()
                if done.is_set():
                    return
                continue
            if reason in REFUSED_FOR_GOOD:
                # e.g. 0x87 Not authorized: the ACL does not let this node write this topic
                # (see check_node_identity); resending cannot help, holding would block the rest.
                self.stats.refused_batches += 1
                self.stats.refused_points += batch.points
                log.error(
                    "broker refused batch seq=%d (%d points) on %s with reason 0x%02x; "
                    "dropping it (check mqtt username/certificate vs node and the broker ACL)",
                    batch.seq,
                    batch.points,
                    self._metrics_topic,
                    reason,
                )
                self.outbox.ack(batch)
                continue
            if waiting.is_set():
                log.info("subscriber back for %s", self._metrics_topic)
                waiting.clear()
                retry.reset()
            self.outbox.ack(batch)
            self.stats.published_points += batch.points
            self.stats.published_batches += 1
            self.stats.last_seq = batch.seq


def _ticks_until_retry(streak: int, interval_s: float) -> int:
    """Ticks to the next poll: 1 while polls succeed, then 1, 2, 4, … capped at RETRY_MAX_S."""
    if streak <= 1:
        return 1
    cap = max(1, int(RETRY_MAX_S / interval_s))
    return int(min(2 ** min(streak - 1, 30), cap))


async def _first(*events: asyncio.Event) -> None:
    """Wait until any of ``events`` is set."""
    tasks = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
