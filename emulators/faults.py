"""Faults injected into an emulated node at run time, by schedule or by command.

Two ways in (both read by the node at every step, so a fault takes effect on the next step):

1. **Schedule**: ``--faults FILE`` (YAML or JSON) with ``faults: [ {kind, at_s, ...}, ... ]``; ``at_s``
   is emulator time (seconds since the node started).
2. **Command**: drop a JSON file into ``ROOT/.kwatt-emulator/control.d/`` (one fault object or a
   list); the node applies it at its next step (``at_s`` absent = now) and renames the file to
   ``*.applied`` (or ``*.rejected`` with the reason in ``*.error``). ``kwatt emulate fault --root
   DIR --kind ... `` writes such a file; so does :func:`send`. Files are written atomically (temp file
   + rename), so the node never reads half a command.

Kinds (``device`` selects by serial, UUID, PCI bus id, ``vendor:N`` index or ``*`` = all devices):

=================  ==========================================================  ======================
kind               effect                                                      observable at
=================  ==========================================================  ======================
``disappear``      device vanishes for ``duration_s`` then re-enumerates with  sysfs dirs, tool rows
                   a new index (serial / UUID / bus id unchanged)
``tool_hang``      tool ``tool`` sleeps ``value`` s before answering           executable
``tool_garbage``   tool prints random bytes                                    executable
``tool_truncate``  tool prints the first half of its output                    executable
``tool_exit``      tool exits with status ``value`` (default 1)                executable
``na``             ``fields`` (DeviceState names) shown as not available       every surface
``nan``            ``fields`` shown as NaN                                     every surface
``stuck``          the device's sensors repeat their last values               every surface
``counter_reset``  cycle / energy counters restart from 0 (one shot)           counters
``clock_step``     the node's wall clock jumps by ``value`` s (one shot)       timestamps
``power_limit``    power limit set to ``value`` W (one shot)                   power, throttle flags
``governor``       governor set to ``value`` 0 = performance, 1 = powersave    clocks
``pause``          the node stops stepping: emulator time stands still and no  every surface
                   file, tool output or endpoint changes, for ``duration_s``
                   of *wall* time (absent = until ``resume``)
``resume``         ends a ``pause``                                            every surface
=================  ==========================================================  ======================

``duration_s`` (absent = until the end of the run) applies to the lasting kinds (disappear, tool_*,
na, nan, stuck).

``pause`` is for conformance tests that compare a vendor's own tool or library with the emulator's
truth: hold the node still, read both, resume. A pause command is taken only between two steps (never
while the node is rewriting its files), and its control file is renamed ``*.applied`` only once the
node has stopped, so :func:`pause` (send and wait for ``*.applied``) returns when every surface is
stable. The time spent paused is left out of emulator time, so counters do not jump on resume.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from kwatt.emulators.state import DeviceState, ToolFaults, write_atomic

__all__ = [
    "FAULT_KINDS",
    "ONE_SHOT",
    "PAUSE_KINDS",
    "Fault",
    "FaultEngine",
    "FaultError",
    "control_dir",
    "load_schedule",
    "parse_fault",
    "pause",
    "resume",
    "send",
]

FAULT_KINDS = (
    "disappear",
    "tool_hang",
    "tool_garbage",
    "tool_truncate",
    "tool_exit",
    "na",
    "nan",
    "stuck",
    "counter_reset",
    "clock_step",
    "power_limit",
    "governor",
    "pause",
    "resume",
)
#: handled between steps by the node's run loop (FaultEngine.poll_commands(pause=True)), not by advance()
PAUSE_KINDS = frozenset({"pause", "resume"})
ONE_SHOT = frozenset({"counter_reset", "clock_step", "power_limit", "governor"})
_TOOL_KINDS = frozenset({"tool_hang", "tool_garbage", "tool_truncate", "tool_exit"})
_DEVICE_KINDS = frozenset(
    {"disappear", "na", "nan", "stuck", "counter_reset", "power_limit", "governor"}
)


class FaultError(ValueError):
    """A malformed fault (unknown kind, missing target)."""


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str
    at_s: float | None = None  # emulator time; None = at the next step
    duration_s: float | None = None  # lasting kinds; None = for the rest of the run
    device: str | None = None  # serial | uuid | bus id | "vendor:N" | "*"
    tool: str | None = None  # executable name, e.g. "furiosa-smi"
    fields: tuple[str, ...] = ()  # DeviceState field names (na, nan)
    value: float | None = None


def parse_fault(doc: object, where: str = "fault") -> Fault:
    if not isinstance(doc, dict):
        raise FaultError(f"{where}: expected a mapping, got {type(doc).__name__}")
    known = {"kind", "at_s", "duration_s", "device", "tool", "fields", "value"}
    if unknown := set(doc) - known:
        raise FaultError(f"{where}: unknown keys {sorted(unknown)}")
    kind = doc.get("kind")
    if kind not in FAULT_KINDS:
        raise FaultError(f"{where}.kind: expected one of {', '.join(FAULT_KINDS)}, got {kind!r}")

    def num(key: str) -> float | None:
        v = doc.get(key)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise FaultError(f"{where}.{key}: expected a number, got {v!r}")
        return float(v)

    device, tool, fields = doc.get("device"), doc.get("tool"), doc.get("fields", [])
    if device is not None and not isinstance(device, str):
        raise FaultError(f"{where}.device: expected a string")
    if tool is not None and not isinstance(tool, str):
        raise FaultError(f"{where}.tool: expected a string")
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        raise FaultError(f"{where}.fields: expected a list of field names")
    if kind in _TOOL_KINDS and not tool:
        raise FaultError(f"{where}: {kind} needs tool")
    if kind in _DEVICE_KINDS and not device:
        raise FaultError(f"{where}: {kind} needs device")
    if kind in ("na", "nan"):
        bad = [f for f in fields if f not in DeviceState.__dataclass_fields__]
        if not fields or bad:
            raise FaultError(f"{where}.fields: DeviceState field names needed, bad: {bad}")
    if kind in ("clock_step", "power_limit", "governor", "tool_hang") and num("value") is None:
        raise FaultError(f"{where}: {kind} needs value")
    return Fault(
        kind=kind,
        at_s=num("at_s"),
        duration_s=num("duration_s"),
        device=device,
        tool=tool,
        fields=tuple(fields),
        value=num("value"),
    )


def _faults_of(doc: object, where: str) -> list[Fault]:
    if isinstance(doc, dict) and "faults" in doc:
        doc = doc["faults"]
    items = doc if isinstance(doc, list) else [doc]
    return [parse_fault(item, f"{where}[{i}]") for i, item in enumerate(items)]


def load_schedule(path: Path) -> list[Fault]:
    """Faults of a schedule file (YAML or JSON: ``faults: [...]`` or a bare list)."""
    return _faults_of(yaml.safe_load(path.read_text(encoding="utf-8")), str(path))


def control_dir(root: Path) -> Path:
    return root / ".kwatt-emulator" / "control.d"


def send(root: Path, fault: Fault, name: str | None = None) -> Path:
    """Inject ``fault`` into the node running at ``root`` (applied at its next step)."""
    doc = {k: v for k, v in _asdict(fault).items() if v not in (None, ())}
    d = control_dir(root)
    path = d / f"{name or f'{os.getpid()}-{os.urandom(4).hex()}'}.json"
    write_atomic(path, json.dumps(doc))
    return path


def _wait_applied(path: Path, timeout_s: float) -> None:
    applied, rejected = path.with_suffix(".applied"), path.with_suffix(".rejected")
    deadline = time.monotonic() + timeout_s
    while not applied.exists():
        if rejected.exists():
            err = path.with_suffix(".error")
            reason = err.read_text(encoding="utf-8").strip() if err.exists() else "?"
            raise FaultError(f"{path}: rejected by the node: {reason}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path}: not applied within {timeout_s:g} s (is the node running?)")
        time.sleep(0.01)


def pause(root: Path, duration_s: float | None = None, timeout_s: float = 10.0) -> None:
    """Hold the node at ``root`` still; returns once it has stopped (its files no longer change).

    ``duration_s`` is wall time (absent = until :func:`resume`)."""
    _wait_applied(send(root, Fault(kind="pause", duration_s=duration_s)), timeout_s)


def resume(root: Path, timeout_s: float = 10.0) -> None:
    """End a :func:`pause`; returns once the node has taken the command."""
    _wait_applied(send(root, Fault(kind="resume")), timeout_s)


def _asdict(f: Fault) -> dict[str, object]:
    return {
        "kind": f.kind,
        "at_s": f.at_s,
        "duration_s": f.duration_s,
        "device": f.device,
        "tool": f.tool,
        "fields": list(f.fields) if f.fields else None,
        "value": f.value,
    }


@dataclass(slots=True)
class _Active:
    fault: Fault
    until_s: float  # inf = for the rest of the run


@dataclass(frozen=True, slots=True)
class FaultEvent:
    """A fault starting or ending at this step, for the node to act on."""

    fault: Fault
    starting: bool


@dataclass(slots=True)
class FaultEngine:
    """Pending and active faults of one node."""

    root: Path
    pending: list[Fault] = field(default_factory=list)
    active: list[_Active] = field(default_factory=list)
    wall_offset_ns: int = 0
    log: list[tuple[float, str]] = field(default_factory=list)  # (t_s, what happened)
    #: time.monotonic() at which a pause ends (inf: until resume); None = not paused
    paused_until: float | None = None

    def schedule(self, faults: Iterable[Fault]) -> None:
        self.pending.extend(faults)

    def poll_commands(self, *, pause: bool = False) -> None:
        """Read and consume the command files in ``control.d`` (oldest first).

        ``pause=False`` (from inside a step) leaves ``pause``/``resume`` commands where they are: the
        node's run loop takes them between steps with ``pause=True``, so that a pause never lands
        while the node is rewriting its files."""
        d = control_dir(self.root)
        if not d.is_dir():
            return
        files = sorted(
            (p for p in d.iterdir() if p.suffix == ".json" and not p.name.startswith(".")),
            key=lambda p: (p.stat().st_mtime_ns, p.name),
        )
        for path in files:
            try:
                faults = _faults_of(json.loads(path.read_text(encoding="utf-8")), path.name)
            except FileNotFoundError:
                continue  # taken meanwhile (a node reading its control.d twice)
            except (OSError, ValueError) as e:
                write_atomic(path.with_suffix(".error"), f"{e}\n")
                path.replace(path.with_suffix(".rejected"))
                continue
            if any(f.kind in PAUSE_KINDS for f in faults):
                if not pause:
                    continue
                for f in faults:
                    self._pause_command(f)
                self.pending.extend(f for f in faults if f.kind not in PAUSE_KINDS)
            else:
                self.pending.extend(faults)
            path.replace(path.with_suffix(".applied"))

    def _pause_command(self, f: Fault) -> None:
        if f.kind == "pause":
            d = f.duration_s
            self.paused_until = math.inf if d is None else time.monotonic() + d
        elif f.kind == "resume":
            self.paused_until = None

    def paused(self) -> bool:
        """Whether the node is paused now (a timed pause ends by itself)."""
        if self.paused_until is not None and time.monotonic() >= self.paused_until:
            self.paused_until = None
        return self.paused_until is not None

    def advance(self, t_s: float) -> list[FaultEvent]:
        """Start due faults and end expired ones at emulator time ``t_s``."""
        events: list[FaultEvent] = []
        keep: list[_Active] = []
        for a in self.active:
            if a.until_s <= t_s:
                events.append(FaultEvent(a.fault, starting=False))
                self.log.append((t_s, f"end {a.fault.kind}"))
            else:
                keep.append(a)
        self.active = keep
        due = [f for f in self.pending if f.at_s is None or f.at_s <= t_s]
        self.pending = [f for f in self.pending if not (f.at_s is None or f.at_s <= t_s)]
        for f in due:
            if f.kind in PAUSE_KINDS:
                self._pause_command(f)
                self.log.append((t_s, f.kind))
                continue
            events.append(FaultEvent(f, starting=True))
            self.log.append((t_s, f"start {f.kind}"))
            if f.kind == "clock_step":
                self.wall_offset_ns += round((f.value or 0.0) * 1e9)
            if f.kind not in ONE_SHOT:
                until = float("inf") if f.duration_s is None else t_s + f.duration_s
                self.active.append(_Active(f, until))
        return events

    # ------------------------------------------------------------------ queries of active faults
    def _device_faults(self, kind: str, keys: Sequence[str]) -> list[Fault]:
        return [
            a.fault
            for a in self.active
            if a.fault.kind == kind and (a.fault.device == "*" or a.fault.device in keys)
        ]

    def device_view(
        self, keys: Sequence[str]
    ) -> tuple[bool, bool, tuple[str, ...], tuple[str, ...]]:
        """(present, stuck, na_fields, nan_fields) of the device known by ``keys``."""
        present = not self._device_faults("disappear", keys)
        stuck = bool(self._device_faults("stuck", keys))
        na = tuple(dict.fromkeys(f for x in self._device_faults("na", keys) for f in x.fields))
        nan = tuple(dict.fromkeys(f for x in self._device_faults("nan", keys) for f in x.fields))
        return present, stuck, na, nan

    def tool_faults(self) -> tuple[tuple[str, ToolFaults], ...]:
        by_tool: dict[str, ToolFaults] = {}
        for a in self.active:
            f = a.fault
            if f.kind not in _TOOL_KINDS or f.tool is None:
                continue
            cur = by_tool.get(f.tool, ToolFaults())
            if f.kind == "tool_hang":
                cur = ToolFaults(f.value or 0.0, cur.garbage, cur.truncate, cur.exit_code)
            elif f.kind == "tool_garbage":
                cur = ToolFaults(cur.hang_s, True, cur.truncate, cur.exit_code)
            elif f.kind == "tool_truncate":
                cur = ToolFaults(cur.hang_s, cur.garbage, True, cur.exit_code)
            else:
                code = 1 if f.value is None else int(f.value)
                cur = ToolFaults(cur.hang_s, cur.garbage, cur.truncate, code)
            by_tool[f.tool] = cur
        return tuple(sorted(by_tool.items()))

    @staticmethod
    def matches(fault: Fault, keys: Sequence[str]) -> bool:
        return fault.device == "*" or fault.device in keys
