"""``kwatt demo --fault KIND@START[:DURATION]``: faults injected into the demo's own processes,
and the accounting of what an agent kill cost.

:func:`parse_fault` reads the option into a :class:`Fault`; :class:`Injector` runs the faults
against the private Mosquitto/InfluxDB and the ingest and agent processes, and records when each
was injected and restored. :func:`agent_kill_accounting` reconstructs what a SIGKILLed agent
published from the batch ``seq`` numbers InfluxDB holds; :func:`seqs_complete` tells when every
seq a killed agent numbered is stored.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kwatt.demo.procs import Children, Procs
from kwatt.demo.services import Influxd, Mosquitto
from kwatt.wire.influx import InfluxQL
from kwatt.wire.settings import parse_duration

__all__ = [
    "FAULT_KINDS",
    "Fault",
    "Injector",
    "agent_kill_accounting",
    "parse_fault",
    "seqs_complete",
]


#: What ``--fault KIND@START[:DURATION]`` can inject into the demo's own processes.
#: ``broker``/``influxdb``: the private Mosquitto/InfluxDB is stopped (SIGTERM) at START and started
#: again on the same port after DURATION (default 10 s). ``ingest-kill``: the ingest worker is
#: SIGKILLed and started again with the same config and client id after DURATION (default 0).
#: ``agent-kill``: node-01's agent is SIGKILLed and started again with the same config (its spool
#: replays) after DURATION (default 0).
FAULT_KINDS = ("broker", "influxdb", "ingest-kill", "agent-kill")


_DEFAULT_FAULT_DURATION_S = {
    "broker": 10.0,
    "influxdb": 10.0,
    "ingest-kill": 0.0,
    "agent-kill": 0.0,
}


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected fault: ``kind`` at ``start_s`` after the fleet is up, for ``duration_s``."""

    kind: str
    start_s: float
    duration_s: float

    def to_json(self) -> dict[str, object]:
        return {"kind": self.kind, "start_s": self.start_s, "duration_s": self.duration_s}


def parse_fault(text: str) -> Fault:
    """``broker@20s:15s`` → ``Fault("broker", 20.0, 15.0)`` (START and DURATION as in configs)."""
    kind, sep, when = text.strip().partition("@")
    kind = kind.strip()
    if kind not in FAULT_KINDS or not sep or not when.strip():
        raise ValueError(
            f"--fault {text!r}: expected KIND@START[:DURATION] with KIND one of "
            + ", ".join(FAULT_KINDS)
        )
    start, colon, duration = when.partition(":")
    try:
        start_s = parse_duration(start.strip())
        duration_s = parse_duration(duration.strip()) if colon else _DEFAULT_FAULT_DURATION_S[kind]
    except ValueError as e:
        raise ValueError(f"--fault {text!r}: {e}") from None
    return Fault(kind, start_s, duration_s)


def _node_seqs(q: InfluxQL, site: str, since_ns: int, node: str) -> list[tuple[int, int]]:
    """(time ns, seq) of every ``agent`` point ``node`` has in InfluxDB: one per batch."""
    where = f"\"site\" = '{site}' AND \"node\" = '{node}' AND time >= {since_ns}"
    return [
        (int(row[0]), int(row[1]))
        for s in q.query(f'SELECT "seq" FROM "agent" WHERE {where}')
        for row in s.values
        if row[1] is not None
    ]


def _missing_seqs(rows: Sequence[tuple[int, int]], last_seq: int) -> list[int]:
    seqs = {seq for _, seq in rows}
    first = min(seqs, default=1)
    return [k for k in range(first, max(last_seq, max(seqs, default=0)) + 1) if k not in seqs]


def seqs_complete(
    q: InfluxQL,
    site: str,
    since_ns: int,
    kills: Mapping[str, int],
    stats: Mapping[str, Mapping[str, int]],
) -> bool:
    return all(
        not _missing_seqs(_node_seqs(q, site, since_ns, node), stats[node].get("last_seq", 0))
        for node in kills
    )


def agent_kill_accounting(
    q: InfluxQL,
    site: str,
    since_ns: int,
    node: str,
    kill_ns: int,
    stats: Mapping[str, int],
    interval_s: float,
) -> dict[str, object]:
    """What a SIGKILLed (and restarted) agent published, and what the kill cost.

    A killed agent writes no stats file, so its first run's ``published_points`` is unknown. Its
    batch ``seq`` numbering continues across the restart (the spool keeps it) and every batch
    carries one ``agent`` point with its seq, so the batches it published over both runs are seqs
    ``first..last_seq`` (``last_seq`` from the restarted agent's stats). Each message is written to
    InfluxDB whole (one write per message, acknowledged only after it), so the node's published
    points are its stored points plus, for every seq missing from InfluxDB, a mean batch's worth
    (counted as lost). ``lost_to_agent_kill`` is the open batch the kill threw away (sampled, never
    batched, so it has no seq): the points per batch times the share of an interval between the last
    batch closed before the kill and the kill, at most one batch (one flush interval).
    """
    rows = _node_seqs(q, site, since_ns, node)
    missing = _missing_seqs(rows, stats.get("last_seq", 0))
    where = f"\"site\" = '{site}' AND \"node\" = '{node}' AND time >= {since_ns}"
    stored = sum(q.count_points(m, where) for m in ("accel", "serving", "agent", "host"))
    batches = len({seq for _, seq in rows})
    per_batch = stored / batches if batches else 0.0
    before = [t for t, _ in rows if t <= kill_ns]
    open_s = min(interval_s, (kill_ns - max(before)) / 1e9) if before else interval_s
    return {
        "kill_time_ns": kill_ns,
        "stored_points": stored,
        "stored_batches": batches,
        "duplicate_batches": len(rows) - batches,
        "missing_seqs": missing,
        "last_seq": stats.get("last_seq", 0),
        "published_points_after_restart": stats.get("published_points", 0),
        "replayed_batches": stats.get("replayed_batches", 0),
        "published_points": stored + round(len(missing) * per_batch),
        "open_batch_s": round(open_s, 3),
        "lost_to_agent_kill": round(per_batch * open_s / interval_s),
    }


@dataclass
class Injector:
    """Runs ``--fault``s against the demo's own processes and records what it did."""

    faults: Sequence[Fault]
    procs: Procs
    children: Children
    mosq: Mosquitto | None
    influxd: Influxd | None
    log_dir: Path
    events: list[dict[str, object]] = field(default_factory=list)
    #: node → wall time (ns) its agent was SIGKILLed
    agent_kills: dict[str, int] = field(default_factory=dict)
    #: names of children down on purpose right now
    down: set[str] = field(default_factory=set)

    async def run(self, t0: float) -> None:
        await asyncio.gather(*(self._one(k, f, t0) for k, f in enumerate(self.faults, start=1)))

    async def _one(self, k: int, fault: Fault, t0: float) -> None:
        await asyncio.sleep(max(0.0, t0 + fault.start_s - time.monotonic()))
        event: dict[str, object] = {**fault.to_json(), "at_s": round(time.monotonic() - t0, 2)}
        self.events.append(event)
        if fault.kind in ("broker", "influxdb"):
            svc: Mosquitto | Influxd | None = self.mosq if fault.kind == "broker" else self.influxd
            assert svc is not None  # run_demo refuses these faults with external services
            await asyncio.to_thread(svc.stop)
            await asyncio.sleep(fault.duration_s)
            await asyncio.to_thread(svc.start)
        elif fault.kind == "ingest-kill":
            old = self.children.ingest
            self.down.add(old.name)
            self.procs.kill(old)
            await asyncio.sleep(fault.duration_s)
            self.children.ingest = self.procs.start(f"ingest-restart{k}", old.argv, self.log_dir)
            self.down.discard(old.name)
        else:  # agent-kill: the first node's agent
            node, old, stats_path = self.children.agents[0]
            self.down.add(old.name)
            self.procs.kill(old)
            self.agent_kills[node] = time.time_ns()
            await asyncio.sleep(fault.duration_s)
            new = self.procs.start(f"agent-{node}-restart{k}", old.argv, self.log_dir, old.env)
            self.children.agents[0] = (node, new, stats_path)
            self.down.discard(old.name)
        event["restored_at_s"] = round(time.monotonic() - t0, 2)
