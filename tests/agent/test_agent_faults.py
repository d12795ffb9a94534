"""Every collector end to end against a running emulated node, with every injected fault (issue #3).

Real processes only: ``kwatt emulate node`` with every catalogue model, ``kwatt agent`` with the
config the node printed (poll interval and timeout changed, nothing else), a real Mosquitto (the
``mosquitto`` fixture) and an MQTT subscriber here that parses every payload with
:func:`kwatt.wire.lineproto.parse_payload` (the ingest's strict parser: a NaN or a wrong type is an error).
Faults go in through the node's control directory, by ``kwatt emulate fault`` and by
:func:`kwatt.emulators.faults.send`.

What is checked (DESIGN §3, §4, §6; docs/emulators.md "Faults"):

* every catalogue model is reported with every field its surface offers (:data:`OFFERED`), in SI
  units, within what the catalogue allows (:func:`si_problems`); so are the host meters and the
  serving runtimes;
* a tool fault (hang past the timeout, garbage, half the output, a non-zero exit) shows as
  ``collect_ok=0`` of the collector running that tool, which returns to ``collect_ok=1`` by itself
  when the fault ends; the other collectors keep ``collect_ok=1`` and the agent runs on;
* device faults (disappear, na, nan, stuck, counter_reset, clock_step, power_limit, governor) never
  stop the agent or fail a poll; a value that is not available or NaN is absent, never 0 or NaN; a
  device that comes back has the same ``device`` tag; a counter reset is published as the raw
  counter restarting (DESIGN §3: counters may reset) and analytics flags it as a reset, never a
  negative increment (DESIGN §6);
* the config that ``kwatt doctor`` prints for the node runs unchanged in ``kwatt agent``
  (tests/agent/test_doctor.py checks it with ``--check`` and in-process polls; here a real agent
  process publishes to a real broker).

A NaN temperature of a FuriosaAI card leaves only that field absent (its own test below).

One node and one agent serve the whole module (starting them costs seconds on the 2-core CI
machine); the tests run in file order and each leaves the node without an active fault. Nothing
waits a fixed time: every step waits for what it needs to see, with generous timeouts. Whether a
sample was read while a fault was shown is decided from the poll that read it (its start and
``collect_duration_s``, :class:`Reading`) and the steps the node logged (:class:`Started`), never
from how long things usually take.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
import yaml
from pipeline_helpers import uniq

from kwatt.analytics.energy import counter_curve
from kwatt.demo.services import Mosquitto
from kwatt.emulators.catalogue import ModelSpec, load_catalogue
from kwatt.emulators.faults import Fault, send
from kwatt.emulators.serving import E2E_LATENCY_BUCKETS_S
from kwatt.emulators.state import DeviceState, read_snapshot
from kwatt.emulators.truth import decode as decode_truth
from kwatt.wire import lineproto
from kwatt.wire.documents import Status, decode_status

pytestmark = [pytest.mark.services, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
#: The phase-1 NPUs and the GPUs (the phase-2/3 PIM devices of issue 16, read by the generic
#: command collector, are tested in tests/demo/test_phases.py).
CATALOGUE = {k: s for k, s in load_catalogue().items() if s.phase in ("phase1_npu", "baseline")}
#: chatbot on every device that runs an LLM; traffic (Triton) on the Warboy and the X220s
SERVICES = "chatbot,traffic"
#: Poll interval of every collector (the printed config says 1 s; shorter keeps the test quick).
INTERVAL_S = 0.5
#: Poll (and tool) timeout: long enough that a loaded 2-core machine never times out a healthy poll.
TIMEOUT_S = 3.0
#: How long (emulator seconds = wall seconds at --speed 1) a lasting fault lasts.
TOOL_FAULT_S = 2.0
#: A hung tool sleeps this long, past the timeout.
HANG_S = TIMEOUT_S + 3.0
DEVICE_FAULT_S = 4.0
#: How long to wait for anything the agent should publish (slow, shared CI machine).
WAIT_S = 60.0

#: The collectors of the printed config, by name, and what each polls through (None: files/HTTP).
COLLECTORS: dict[str, str | None] = {
    "furiosa": None,  # sysfs; furiosa-smi only where sysfs has no card, never here
    "rebellions": "rbln-smi",
    "sapeon": "sapeon-smi",
    "nvml": "nvml",  # the emulated libnvidia-ml.so.1 honours the "nvml" tool faults hang and exit
    "nvidia-smi": "nvidia-smi",
    "rapl": None,
    "hwmon": None,
    "ipmi": "ipmitool",
    "redfish": None,
    "chatbot-furiosa-llm": None,
    "chatbot-vllm-rbln": None,
    "chatbot-vllm": None,
    "traffic-triton": None,
}
COLLECTOR_OF_TOOL = {tool: name for name, tool in COLLECTORS.items() if tool is not None}
TOOL_KINDS = ("tool_hang", "tool_garbage", "tool_truncate", "tool_exit")
#: The executables, each faulted with every kind over four rounds (Latin square: one kind per
#: tool per round, every kind in every round).
TOOLS = ("rbln-smi", "sapeon-smi", "nvidia-smi", "ipmitool")
#: NVML is a library (nothing to garble or cut): hung in round 0, failing in round 2, and a healthy
#: neighbour of the faulted tools in rounds 1 and 3.
NVML_ROUNDS = {0: "tool_hang", 2: "tool_exit"}

# ---------------------------------------------------------------- what each surface offers
ALL_ACCEL = frozenset(
    {
        "power_w",
        "energy_j",
        "util_ratio",
        "temp_c",
        "clock_hz",
        "mem_used_bytes",
        "mem_total_bytes",
        "power_limit_w",
        "throttled",
    }
)
#: The ``accel`` fields each emulated surface offers (docs/emulators.md, emulators/*.py):
#:
#: * RNGD (``rngd_mgmt`` + PE ``metrics`` + hwmon ``rngdN``): ``npu_clocks``, ``power_limit_mw``,
#:   ``throttle_reason``, memory, cycle counters, ``power1_average``, ``temp*_input``; no energy
#:   counter (the chip has no ``energy*_input``);
#: * Warboy (``npu_mgmt`` + ``perf_regs`` + hwmon ``furiosa_warboy``): ``ne_clk_freq_info``, cycle
#:   counters, power and temperatures; no power limit, throttle reason, memory or energy file;
#: * ``rbln-smi -j`` (§2.1): ``card_power``, ``temperature``, ``util``, ``memory.used/total``,
#:   ``pstate`` (throttling); no clock, power limit or energy;
#: * ``sapeon-smi --json`` (assumed surface): every field, energy in mJ;
#: * NVML: every field (energy in mJ); ``nvidia-smi`` the same but energy (it has no counter).
OFFERED: dict[str, frozenset[str]] = {
    "rngd": ALL_ACCEL - {"energy_j"},
    "warboy": frozenset({"power_w", "temp_c", "util_ratio", "clock_hz"}),
    "rebellions": frozenset(
        {"power_w", "temp_c", "util_ratio", "mem_used_bytes", "mem_total_bytes", "throttled"}
    ),
    "sapeon": ALL_ACCEL,
    "nvidia": ALL_ACCEL,
}
NVIDIA_SMI_OFFERED = ALL_ACCEL - {"energy_j"}
#: Fields computed from counter deltas (absent from a device's first sample).
DELTA_FIELDS = frozenset({"util_ratio"})
#: ``host`` samples: (source, zone) → fields. RAPL: two packages with a DRAM subzone each; hwmon:
#: the PSU meter and amd_energy's two sockets; DCMI: the system; Redfish: chassis 1.
HOST_OFFERED: dict[tuple[str, str | None], frozenset[str]] = {
    ("rapl", "package-0"): frozenset({"energy_j"}),
    ("rapl", "package-1"): frozenset({"energy_j"}),
    ("rapl", "package-0/dram"): frozenset({"energy_j"}),
    ("rapl", "package-1/dram"): frozenset({"energy_j"}),
    ("hwmon", "power_meter/power1"): frozenset({"power_w"}),
    ("hwmon", "amd_energy/Esocket0"): frozenset({"energy_j"}),
    ("hwmon", "amd_energy/Esocket1"): frozenset({"energy_j"}),
    ("dcmi", None): frozenset({"power_w"}),
    ("redfish", "1"): frozenset({"power_w", "energy_j"}),
}
#: Readings of the whole system (BMC, PSU meter): host + accelerators + chassis.
SYSTEM_METERS = {("hwmon", "power_meter/power1"), ("dcmi", None), ("redfish", "1")}
_LLM = frozenset({"requests_total", "tokens_total", "latency_p50_s", "latency_p99_s"})
#: ``serving`` samples: (service, runtime) → fields (Triton has no latency histogram).
SERVING_OFFERED: dict[tuple[str, str], frozenset[str]] = {
    ("chatbot", "furiosa-llm"): _LLM,
    ("chatbot", "vllm-rbln"): _LLM,
    ("chatbot", "vllm"): _LLM,
    ("traffic", "triton"): frozenset({"requests_total", "inferences_total"}),
}
#: Fields that only some samples of a runtime carry (a window with no completed request has none).
SERVING_SOMETIMES = frozenset({"latency_p50_s", "latency_p99_s"})


def spec_of(vendor: str, model_tag: str) -> ModelSpec:
    """The catalogue model of a published ``accel`` sample (its tag is the key or the name)."""
    for spec in CATALOGUE.values():
        if spec.vendor == vendor and model_tag in (spec.key, spec.name):
            return spec
    raise AssertionError(f"accel sample of a model not in the catalogue: {vendor}/{model_tag}")


def offered(spec: ModelSpec) -> frozenset[str]:
    return OFFERED.get(spec.key) or OFFERED[spec.vendor]


# ---------------------------------------------------------------- points
Fields = dict[str, float | int]


def tags(p: lineproto.Point) -> dict[str, str]:
    return dict(p.tags)


def fields(p: lineproto.Point) -> Fields:
    return dict(p.fields)


def collect_ok(points: Iterable[lineproto.Point], collector: str) -> list[int]:
    """``collect_ok`` of one collector's polls, in order."""
    return [
        int(fields(p)["collect_ok"])
        for p in points
        if p.measurement == "agent" and tags(p).get("collector") == collector
    ]


def by_device(points: Iterable[lineproto.Point]) -> dict[str, list[lineproto.Point]]:
    out: dict[str, list[lineproto.Point]] = defaultdict(list)
    for p in points:
        if p.measurement == "accel":
            out[tags(p)["device"]].append(p)
    return out


@dataclass(frozen=True)
class Reading:
    """An ``accel`` sample with the poll that read it: the agent adds a poll's samples and then
    its ``agent`` point (start time, ``collect_duration_s``) with no await in between, so on the
    wire a poll's samples come right before its ``agent`` point."""

    point: lineproto.Point
    collector: str
    start_s: float
    end_s: float

    @property
    def fields(self) -> Fields:
        return fields(self.point)


def readings(points: Iterable[lineproto.Point]) -> dict[str, list[Reading]]:
    """``accel`` readings by device tag."""
    out: dict[str, list[Reading]] = defaultdict(list)
    pending: list[lineproto.Point] = []
    for p in points:
        if p.measurement != "agent":
            pending.append(p)
            continue
        collector = tags(p).get("collector")
        if collector is None:
            continue  # the batch's own point (seq)
        start = p.ts_ns / 1e9
        end = start + float(fields(p)["collect_duration_s"])
        for q in pending:
            if q.measurement == "accel":
                out[tags(q)["device"]].append(Reading(q, collector, start, end))
        pending = []
    return out


def read_inside(rs: Iterable[Reading], t0: float, t1: float) -> list[Reading]:
    """Readings of polls that ran entirely between wall times ``t0`` and ``t1`` (s)."""
    return [r for r in rs if t0 <= r.start_s and r.end_s <= t1]


def si_problems(points: Iterable[lineproto.Point]) -> list[str]:
    """Values outside what DESIGN §3 units and the catalogue allow (a W/mW, °C/m°C, Hz/MHz, 0–1/%
    or byte/MiB slip lands far outside), and a 0 where a real reading is never 0."""
    bad: list[str] = []
    system_lo = system_hi = 2 * (45 + 8) + 60.0  # CPU packages, DRAM, chassis (emulators/node.py)
    for spec in CATALOGUE.values():
        n = spec.devices_per_card
        system_lo += 0.5 * spec.idle_w.value * n
        system_hi += 1.2 * spec.tdp_w.value * n + 2 * (110 - 45 + 14 - 8)
    for p in points:
        f, t = fields(p), tags(p)
        where = f"{p.measurement} {t.get('device') or t.get('source') or t.get('runtime')}"
        checks: dict[str, tuple[float, float]] = {}
        if p.measurement == "accel":
            s = spec_of(t["vendor"], t["model"])
            lim = max(s.power_limit_w.value, s.tdp_w.value)
            mem = s.memory_bytes.value
            checks = {
                "power_w": (0.5 * s.idle_w.value, 1.2 * s.tdp_w.value),
                "temp_c": (10.0, s.thermal_shutdown_c.value),
                "clock_hz": (0.99e6 * s.clock_min_mhz.value, 1.01e6 * s.clock_max_mhz.value),
                "util_ratio": (0.0, 1.0),
                "mem_total_bytes": (0.97 * mem, 1.03 * mem),
                "mem_used_bytes": (0.0, 1.03 * mem),
                "power_limit_w": (0.1 * s.tdp_w.value, 1.05 * lim),
                "throttled": (0, 1),
                "energy_j": (0.0, 1e7),
            }
        elif p.measurement == "host":
            power = (
                (system_lo / 0.94, system_hi / 0.94)
                if (t["source"], t.get("zone")) in SYSTEM_METERS
                else (1.0, 1000.0)
            )
            checks = {"power_w": power, "energy_j": (0.0, 1e8)}
        elif p.measurement == "serving":
            # a quantile of the histogram lies within its finite buckets; saturation (a device
            # gone, a powersave clock) drives it to minutes
            top = max(E2E_LATENCY_BUCKETS_S)
            checks = {
                "latency_p50_s": (1e-4, top),
                "latency_p99_s": (1e-4, top),
                "requests_total": (0, 1e9),
                "tokens_total": (0, 1e10),
                "inferences_total": (0, 1e10),
            }
        elif p.measurement == "agent":
            checks = {"collect_ok": (0, 1), "collect_duration_s": (0.0, 60.0)}
        for k, v in f.items():
            lo, hi = checks.get(k, (-float("inf"), float("inf")))
            if not lo <= v <= hi:
                bad.append(f"{where}: {k}={v!r} outside [{lo:g}, {hi:g}]")
        p50, p99 = f.get("latency_p50_s"), f.get("latency_p99_s")
        if p50 is not None and p99 is not None and p50 > p99:
            bad.append(f"{where}: p50 {p50} > p99 {p99}")
    return bad


# ---------------------------------------------------------------- processes and the wire
def kwatt(*args: str) -> list[str]:
    return [sys.executable, "-m", "kwatt.cli", *args]


def read_line(stream: IO[str], timeout_s: float, what: str) -> str:
    """One line of a child's output, or fail after ``timeout_s``."""
    box: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: box.put(stream.readline()), daemon=True).start()
    try:
        return box.get(timeout=timeout_s)
    except queue.Empty:
        raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}") from None


@dataclass
class Recorder:
    """Every metrics point of one site/node, in arrival order, through a real MQTT subscription."""

    points: list[lineproto.Point] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    status: Status | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_message(self, _client: object, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.endswith("/metrics"):
            result = lineproto.parse_payload(msg.payload)
            with self.lock:
                self.points.extend(result.points)
                self.errors.extend(str(e) for e in result.errors)
        elif msg.topic.endswith("/status"):
            with self.lock:
                self.status = decode_status(msg.payload)

    def mark(self) -> int:
        with self.lock:
            return len(self.points)

    def since(self, mark: int = 0) -> list[lineproto.Point]:
        with self.lock:
            return self.points[mark:]


@dataclass
class Subscription:
    client: mqtt.Client
    rec: Recorder

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def subscribe(broker: Mosquitto, topic: str) -> Subscription:
    rec = Recorder()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=uniq("faults-sub"))
    subscribed = threading.Event()
    client.on_message = rec.on_message
    client.on_subscribe = lambda *_: subscribed.set()
    client.connect("127.0.0.1", broker.port)
    client.subscribe(topic, qos=1)
    client.loop_start()
    if not subscribed.wait(30):
        client.loop_stop()
        raise AssertionError(f"no SUBACK for {topic}")
    return Subscription(client, rec)


def tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-n:]
    except OSError:
        return ""


def stop(proc: subprocess.Popen[Any], timeout_s: float = 30.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


@dataclass
class Rig:
    """The emulated node, the agent reading it, and what the agent published."""

    tmp: Path
    root: Path
    site: str
    ready: dict[str, str]
    node: subprocess.Popen[str]
    agent: subprocess.Popen[bytes]
    sub: Subscription
    logs: dict[str, Path]
    truth: Path
    #: Where the stream stood once every collector had succeeded (start-up polls before it).
    started_mark: int = 0

    @property
    def rec(self) -> Recorder:
        return self.sub.rec

    def diag(self) -> str:
        return "".join(f"\n--- {k} log (tail):\n{tail(p)}" for k, p in self.logs.items())

    def wait(self, predicate: Callable[[], object], what: str, timeout_s: float = WAIT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if self.agent.poll() is not None or self.node.poll() is not None:
                raise AssertionError(f"a process died while waiting for {what}{self.diag()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
            time.sleep(0.05)

    def assert_running(self) -> None:
        assert self.agent.poll() is None, f"the agent exited{self.diag()}"
        assert self.node.poll() is None, f"the emulated node exited{self.diag()}"

    def snapshot(self) -> tuple[DeviceState, ...]:
        return read_snapshot(self.root).devices

    def inject(self, *faults: Fault, cli: int = 0) -> Started:
        """Send ``faults`` (the first ``cli`` of them through ``kwatt emulate fault``) and wait until
        the node has applied them and rendered the step (its ground-truth line is written after
        the surfaces)."""
        offset = self.truth.stat().st_size
        paths = []
        for k, f in enumerate(faults):
            if k < cli:
                args = ["emulate", "fault", "--root", str(self.root), "--kind", f.kind]
                for opt, value in (
                    ("--device", f.device),
                    ("--tool", f.tool),
                    ("--value", f.value),
                    ("--duration", f.duration_s),
                ):
                    if value is not None:
                        args += [opt, str(value)]
                if f.fields:
                    args += ["--fields", ",".join(f.fields)]
                r = subprocess.run(
                    kwatt(*args), cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120
                )
                assert r.returncode == 0, r.stderr
                paths.append(Path(r.stdout.strip()))
            else:
                paths.append(send(self.root, f))
        want = Counter(f"start {f.kind}" for f in faults)
        first_ns: list[int] = []

        def started() -> bool:
            with self.truth.open("rb") as log:
                log.seek(offset)
                lines = log.read().split(b"\n")[:-1]  # complete lines only
            seen: Counter[str] = Counter()
            for line in lines:
                record = decode_truth(line)
                events = [e for e in record.faults if e in want]
                if events and not first_ns:
                    first_ns.append(record.wall_ns)
                seen.update(events)
            return all(seen[e] >= n for e, n in want.items())

        for path in paths:
            error = path.with_suffix(".error")
            self.wait(
                lambda p=path, e=error: p.with_suffix(".applied").exists() or e.exists(), path.name
            )
            assert not error.exists(), tail(error)
        self.wait(started, f"the node to render {sorted(want)}")
        return Started(first_ns[0] / 1e9, time.time())


@dataclass(frozen=True)
class Started:
    """When a batch of faults started: the emulator step that applied the first (its wall time),
    and when the test saw every one applied and rendered (surfaces show them from then on)."""

    first_s: float
    seen_s: float

    def inside(self, duration_s: float) -> tuple[float, float]:
        """Wall times when the surfaces surely showed lasting faults of ``duration_s``: from the
        test seeing them rendered to the step that ends them, at ``duration_s`` (speed 1) after
        the step that started the first (0.05 s for the wall and monotonic clocks to differ)."""
        return self.seen_s, self.first_s + duration_s - 0.05

    def end(self, duration_s: float) -> float:
        """Wall time after which the lasting faults are over (rendered within a step or two)."""
        return self.first_s + duration_s + 0.5


@pytest.fixture(scope="module")
def rig(mosquitto: Mosquitto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    tmp = tmp_path_factory.mktemp("faults")
    root, printed = tmp / "root", tmp / "printed.yaml"
    site = uniq("faults")
    logs = {"node": tmp / "node.log", "agent": tmp / "agent.log"}
    with contextlib.ExitStack() as files:
        yield from _rig(mosquitto, tmp, root, printed, site, logs, files)


def _rig(
    mosquitto: Mosquitto,
    tmp: Path,
    root: Path,
    printed: Path,
    site: str,
    logs: dict[str, Path],
    files: contextlib.ExitStack,
) -> Iterator[Rig]:
    node = subprocess.Popen(
        kwatt("emulate", "node", "--devices", ",".join(CATALOGUE), "--service", SERVICES,
              "--root", str(root), "--period", "0.25", "--site", site, "--name", "n0",
              "--mqtt", mosquitto.url, "--print-config", str(printed),
              "--truth-log", str(tmp / "truth.jsonl")),
        cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=files.enter_context(logs["node"].open("wb")), text=True,
    )  # fmt: skip
    agent: subprocess.Popen[bytes] | None = None
    sub: Subscription | None = None
    try:
        assert node.stdout is not None
        ready = json.loads(read_line(node.stdout, WAIT_S, "the node's ready line"))
        doc = yaml.safe_load(printed.read_text(encoding="utf-8"))
        assert [c["name"] for c in doc["collectors"]] == list(COLLECTORS), doc["collectors"]
        assert (doc["site"], doc["node"], doc["mqtt"]["url"]) == (site, "n0", mosquitto.url)
        for c in doc["collectors"]:
            c["interval_s"], c["timeout_s"] = INTERVAL_S, TIMEOUT_S
        doc["publish"] = {"flush_interval_s": 0.25}
        config = tmp / "agent.yaml"
        config.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        sub = subscribe(mosquitto, f"kwatt/v1/{site}/n0/#")
        agent = subprocess.Popen(
            kwatt("agent", "--config", str(config)),
            cwd=REPO,
            env={**ENV, "LD_LIBRARY_PATH": ready["nvml_lib"]},  # the emulated libnvidia-ml.so.1
            stdout=subprocess.DEVNULL,
            stderr=files.enter_context(logs["agent"].open("wb")),
        )
        r = Rig(tmp, root, site, ready, node, agent, sub, logs, tmp / "truth.jsonl")
        r.wait(
            lambda: all(collect_ok(r.rec.since(), c).count(1) >= 2 for c in COLLECTORS),
            "every collector to succeed twice",
        )
        r.started_mark = r.rec.mark()
        yield r
    finally:
        if agent is not None:
            stop(agent)
        stop(node)
        if node.stdout is not None:
            node.stdout.close()
        if sub is not None:
            sub.close()


# ================================================================ (b) every field, SI units
def check_accel_fields(
    points: Sequence[lineproto.Point], *, with_nvidia_smi: bool, min_polls: int
) -> None:
    """Every catalogue model is there, each visible device once, and each collector reports every
    field the device's surface offers (:data:`OFFERED`) in each of its samples."""
    read = readings(points)
    models: dict[str, set[str]] = defaultdict(set)
    for device, rs in read.items():
        spec = spec_of(tags(rs[0].point)["vendor"], tags(rs[0].point)["model"])
        models[spec.key].add(device)
        want = offered(spec)
        expect = {spec.vendor: want}
        if spec.vendor == "nvidia":  # NVML and nvidia-smi read the same GPU, one device tag
            expect = {"nvml": want}
            if with_nvidia_smi:
                expect["nvidia-smi"] = NVIDIA_SMI_OFFERED  # it has no energy counter
        by_collector: dict[str, list[set[str]]] = defaultdict(list)
        for r in rs:
            by_collector[r.collector].append(set(r.fields))
        assert set(by_collector) == set(expect), (device, sorted(by_collector))
        for source, got in by_collector.items():
            expected = expect[source]
            assert len(got) >= min_polls, (device, source, len(got))
            # every field in every sample; a delta (utilization from cycle counters) needs two
            # reads with the counters moved in between, so only the union must have it
            assert set().union(*got) == expected, (spec.key, device, source, sorted(expected))
            for g in got:
                assert expected - DELTA_FIELDS <= g <= expected, (
                    spec.key, device, source, sorted(expected - g), sorted(g - expected),
                )  # fmt: skip
    assert {k: len(v) for k, v in models.items()} == {
        k: s.devices_per_card for k, s in CATALOGUE.items()
    }, "every catalogue model, each visible device once"


def test_every_model_reports_every_field_its_surface_offers_in_si_units(rig: Rig) -> None:
    rig.wait(
        lambda: all(collect_ok(rig.rec.since(), c).count(1) >= 4 for c in COLLECTORS),
        "four polls of every collector",
    )
    points = rig.rec.since()
    assert not rig.rec.errors, rig.rec.errors[:5]
    steady = rig.rec.since(rig.started_mark)
    failing = {c: collect_ok(steady, c) for c in COLLECTORS if 0 in collect_ok(steady, c)}
    assert not failing, ("a healthy poll failed", failing, rig.diag())
    assert not (bad := si_problems(points)), bad[:10]

    # accel: every catalogue model, each device with every field its surface offers
    check_accel_fields(points, with_nvidia_smi=True, min_polls=3)
    for device, pts in by_device(points).items():
        spec = spec_of(tags(pts[0])["vendor"], tags(pts[0])["model"])
        limits = {fields(p)["power_limit_w"] for p in pts if "power_limit_w" in fields(p)}
        assert not limits or limits == {spec.power_limit_w.value}, (device, limits)
        for p in pts:
            f = fields(p)
            if "mem_used_bytes" in f:
                assert f["mem_used_bytes"] <= f["mem_total_bytes"], (device, f)
        energy = [fields(p)["energy_j"] for p in pts if "energy_j" in fields(p)]
        assert energy == sorted(energy), (device, "energy counter went backwards", energy)

    # host meters: every zone each surface offers
    host: dict[tuple[str, str | None], list[lineproto.Point]] = defaultdict(list)
    for p in points:
        if p.measurement == "host":
            host[(tags(p)["source"], tags(p).get("zone"))].append(p)
    assert set(host) == set(HOST_OFFERED), sorted(set(host) ^ set(HOST_OFFERED), key=str)
    for key, pts in host.items():
        for p in pts:
            assert set(fields(p)) == HOST_OFFERED[key], (key, fields(p))
        energy = [fields(p)["energy_j"] for p in pts if "energy_j" in fields(p)]
        assert energy == sorted(energy), (key, "host energy went backwards")
    rapl_pkg = sum(fields(host[("rapl", f"package-{k}")][-1])["energy_j"] for k in (0, 1))
    rapl_dram = sum(fields(host[("rapl", f"package-{k}/dram")][-1])["energy_j"] for k in (0, 1))
    assert rapl_pkg > rapl_dram > 0  # J, not µJ: packages 45–110 W, DRAM 8–14 W each

    # serving runtimes: counters that only grow, latency in seconds
    serving: dict[tuple[str, str], list[dict[str, float | int]]] = defaultdict(list)
    for p in points:
        if p.measurement == "serving":
            serving[(tags(p)["service"], tags(p)["runtime"])].append(fields(p))
    assert set(serving) == set(SERVING_OFFERED), sorted(serving)
    for key, samples in serving.items():
        want = SERVING_OFFERED[key]
        union = set().union(*samples)
        assert union == want, (key, sorted(want ^ union))
        for f in samples:
            assert set(f) >= want - SERVING_SOMETIMES, (key, f)
        for counter in want - SERVING_SOMETIMES:
            values = [f[counter] for f in samples]
            assert values == sorted(values) and values[-1] > 0, (key, counter, values)
        if "latency_p50_s" in want:  # seconds, not ms: a healthy node answers within a minute
            p50 = [f["latency_p50_s"] for f in samples if "latency_p50_s" in f]
            assert 0 < float(np.median(p50)) < 60, (key, p50)


# ================================================================ (a) tool faults
def failed(rig: Rig, mark: int, name: str) -> Callable[[], bool]:
    return lambda: 0 in collect_ok(rig.rec.since(mark), name)


def recovered(rig: Rig, mark: int, name: str) -> Callable[[], bool]:
    """A poll of ``name`` failed after ``mark`` and a later one succeeded."""

    def check() -> bool:
        oks = collect_ok(rig.rec.since(mark), name)
        return 0 in oks and 1 in oks[oks.index(0) :]

    return check


def tool_fault(tool: str, kind: str) -> Fault:
    """A hang outlives the poll timeout (the tool must be killed); an exit has status 3."""
    value = {"tool_hang": HANG_S, "tool_exit": 3.0}.get(kind)
    return Fault(kind, tool=tool, duration_s=TOOL_FAULT_S, value=value)


def test_tool_faults_show_in_collect_ok_of_that_collector_only_and_recover(rig: Rig) -> None:
    """Four rounds; in each, every tool has a different fault kind, so each (tool, kind) pair runs
    once. The collectors without a faulted tool must not notice; the faulted ones must fail while
    the fault lasts and succeed again afterwards, in the same agent process."""
    agent_pid = rig.agent.pid
    covered: list[tuple[str, str]] = []
    for rnd in range(len(TOOL_KINDS)):
        plan = {tool: TOOL_KINDS[(i + rnd) % len(TOOL_KINDS)] for i, tool in enumerate(TOOLS)}
        if rnd in NVML_ROUNDS:
            plan["nvml"] = NVML_ROUNDS[rnd]
        faults = [tool_fault(tool, kind) for tool, kind in plan.items()]
        mark = rig.rec.mark()
        rig.inject(*faults, cli=1)
        faulted = {COLLECTOR_OF_TOOL[tool]: (tool, kind) for tool, kind in plan.items()}
        for name, (tool, kind) in faulted.items():
            rig.wait(failed(rig, mark, name), f"collect_ok=0 of {name} under {kind} of {tool}")
            rig.wait(recovered(rig, mark, name), f"{name} to recover after {kind} of {tool}")
            covered.append((tool, kind))
            if kind == "tool_hang":  # the poll was cut at its timeout, not left to hang
                polls = [
                    fields(p)
                    for p in rig.rec.since(mark)
                    if p.measurement == "agent" and tags(p).get("collector") == name
                ]
                first = next(f for f in polls if f["collect_ok"] == 0)
                assert 0.9 * TIMEOUT_S <= first["collect_duration_s"] < HANG_S, (name, first)
        window = rig.rec.since(mark)
        for name in COLLECTORS:
            if name not in faulted:
                oks = collect_ok(window, name)
                assert oks and set(oks) == {1}, (f"round {rnd}: {name} failed", plan, oks)
        rig.assert_running()
    assert rig.agent.pid == agent_pid
    assert sorted(covered) == sorted(
        [(t, k) for t in TOOLS for k in TOOL_KINDS] + [("nvml", k) for k in NVML_ROUNDS.values()]
    )
    assert not rig.rec.errors, rig.rec.errors[:5]
    # every collector is back to polling normally
    mark = rig.rec.mark()
    rig.wait(
        lambda: all(collect_ok(rig.rec.since(mark), c).count(1) >= 2 for c in COLLECTORS),
        "every collector to succeed twice after the tool faults",
    )


# ================================================================ device faults
def test_device_faults_never_stop_the_agent_and_values_stay_honest(rig: Rig) -> None:
    before = rig.rec.since()
    tag_of: dict[str, list[str]] = defaultdict(list)  # catalogue key → device tags (sorted)
    for device, pts in sorted(by_device(before).items()):
        tag_of[spec_of(tags(pts[0])["vendor"], tags(pts[0])["model"]).key].append(device)
    tags_before = set(by_device(before))
    snap = {d.model: d for d in rig.snapshot()}
    dies = sorted((d for d in rig.snapshot() if d.model == "atom-max"), key=lambda d: d.bus_id)
    card_sid = tag_of["atom-max"][0].rsplit("-", 1)[0]
    die = {k: f"{card_sid}-{k}" for k in range(len(dies))}  # die k = rank of its PCI address
    assert sorted(die.values()) == tag_of["atom-max"]

    def one(key: str) -> str:
        (tag,) = tag_of[key]
        return tag

    d = DEVICE_FAULT_S
    lasting = [
        # disappear: one device per vendor, selected by uuid, bus id, serial and model key
        Fault("disappear", device=snap["warboy"].uuid, duration_s=d),
        Fault("disappear", device=dies[2].bus_id, duration_s=d),
        Fault("disappear", device=snap["x220-compact"].serial, duration_s=d),
        Fault("disappear", device="t4", duration_s=d),
        # not available / NaN: one device per vendor each (the RNGD's NaN has its own test)
        *(Fault("na", device=k, fields=("power_w",), duration_s=d)
          for k in ("rngd", "atom", "x220-enterprise", "l4")),
        *(Fault("nan", device=k, fields=("temp_c",), duration_s=d)
          for k in ("rebel-quad", "x330", "a100")),
        *(Fault("nan", device=k, fields=("energy_j",), duration_s=d)
          for k in ("x220-enterprise", "a100")),
        Fault("stuck", device=dies[0].bus_id, duration_s=d),
        Fault("stuck", device="h100", duration_s=d),
    ]  # fmt: skip
    one_shot = [
        Fault("counter_reset", device="x330"),
        Fault("counter_reset", device="l40s"),
        Fault("power_limit", device="rngd", value=100.0),
        Fault("power_limit", device="l40s", value=200.0),
        Fault("power_limit", device="x220-enterprise", value=80.0),
        Fault("governor", device="rngd", value=1),
        Fault("governor", device="l40s", value=1),
        Fault("governor", device="x330", value=1),
    ]
    energy_before = {
        k: max(fields(p)["energy_j"] for p in by_device(before)[one(k)] if "energy_j" in fields(p))
        for k in ("x330", "l40s")
    }
    mark = rig.rec.mark()
    clock_step = Fault("clock_step", value=3600.0)  # the node's wall clock jumps an hour
    restore = [
        *(
            Fault("power_limit", device=k, value=CATALOGUE[k].power_limit_w.value)
            for k in ("rngd", "l40s", "x220-enterprise")
        ),
        *(Fault("governor", device=k, value=0) for k in ("rngd", "l40s", "x330")),
    ]
    try:
        started = rig.inject(*lasting, *one_shot)
        rig.inject(clock_step, cli=1)
        restore.append(Fault("clock_step", value=-3600.0))
        check_device_faults(rig, mark, started, one, die, energy_before, tags_before)
    finally:  # leave the node as it was: limits, governors and the clock back
        back = rig.inject(*restore)
    for key in ("rngd", "l40s", "x220-enterprise"):
        limit = CATALOGUE[key].power_limit_w.value
        rig.wait(
            seen_after(rig, mark, one(key), back.seen_s, has("power_limit_w", limit)),
            f"the power limit of {key} back to {limit} W",
        )
    rig.assert_running()


def has(name: str, value: float | None = None) -> Callable[[Fields], bool]:
    return lambda f: name in f and (value is None or f[name] == value)


def restarted(before: float) -> Callable[[Fields], bool]:
    """An energy counter below what it had reached before a reset."""
    return lambda f: "energy_j" in f and 0 <= f["energy_j"] < before


def seen_after(
    rig: Rig, mark: int, device: str, t_s: float, pred: Callable[[Fields], bool]
) -> Callable[[], bool]:
    """Whether ``device`` published, after ``mark``, a sample read after ``t_s`` that ``pred`` likes."""

    def seen() -> bool:
        return any(
            p.ts_ns > t_s * 1e9 and pred(fields(p))
            for p in by_device(rig.rec.since(mark)).get(device, [])
        )

    return seen


def check_device_faults(
    rig: Rig,
    mark: int,
    started: Started,
    one: Callable[[str], str],
    die: dict[int, str],
    energy_before: dict[str, float],
    tags_before: set[str],
) -> None:
    d = DEVICE_FAULT_S
    end = started.end(d)
    # disappear: gone while it lasts, back under the same device tag
    gone = {one("warboy"), die[2], one("x220-compact"), one("t4")}
    for device in gone:
        rig.wait(seen_after(rig, mark, device, end, lambda f: True), f"{device} to come back")
    # na / nan: the field is absent while the fault lasts (never 0, never NaN), back afterwards
    missing = {(one(k), "power_w") for k in ("rngd", "atom", "x220-enterprise", "l4")}
    missing |= {(one(k), "temp_c") for k in ("rebel-quad", "x330", "a100")}
    missing |= {(one(k), "energy_j") for k in ("x220-enterprise", "a100")}
    for device, name in missing:
        rig.wait(seen_after(rig, mark, device, end, has(name)), f"{name} of {device} back")
    # power_limit / governor: the new limit and the lowest clock are published
    for key, limit in (("rngd", 100.0), ("l40s", 200.0), ("x220-enterprise", 80.0)):
        rig.wait(
            seen_after(rig, mark, one(key), started.seen_s, has("power_limit_w", limit)),
            f"{key} limited to {limit} W",
        )
    for key in ("rngd", "l40s", "x330"):
        lowest = CATALOGUE[key].clock_min_mhz.value * 1e6
        rig.wait(
            seen_after(rig, mark, one(key), started.seen_s, has("clock_hz", lowest)),
            f"{key} at its lowest clock under the powersave governor",
        )
    # counter_reset: the raw counter restarted (DESIGN §3: counters may reset) and goes on
    for key in ("x330", "l40s"):
        rig.wait(
            seen_after(rig, mark, one(key), started.seen_s, restarted(energy_before[key])),
            f"energy_j of {key} to restart after counter_reset",
        )
    window = rig.rec.since(mark)
    rig.assert_running()

    # nobody failed a poll: a missing, NaN, frozen or vanished device is data, not an error
    oks = {name: collect_ok(window, name) for name in COLLECTORS}
    assert {n: v for n, v in oks.items() if not v or 0 in v} == {}, rig.diag()
    assert not rig.rec.errors, rig.rec.errors[:5]  # no NaN (nor anything else) the parser refuses
    assert not (bad := si_problems(window)), bad[:10]  # never 0 W, 0 °C, ...
    now_ns = time.time_ns()  # clock_step moved the node's clock, not the agent's timestamps
    assert all(abs(p.ts_ns - now_ns) < 300e9 for p in window), "a timestamp took the device clock"

    devices = by_device(window)
    read = readings(window)
    inside = started.inside(d)
    for device in gone:
        during = read_inside(read[device], *inside)
        assert not during, (device, "reported while it was gone", during)
    # the others go on reporting while the faults last: any reading taken in the faults' span of
    # emulator time counts (not only after the test saw them rendered: under load the test's view
    # can lag by most of the span, and a spawned tool's 0.5 s poll would then miss a short window)
    during_faults = (started.first_s, started.first_s + d)
    for device in tags_before - gone:
        assert read_inside(read[device], *during_faults), (device, "not reported during the faults")
    assert set(devices) == tags_before, ("device tags changed", sorted(set(devices) ^ tags_before))
    for device, name in missing:
        during = read_inside(read[device], *inside)
        assert during, (device, "not reported while a field was missing")
        for r in during:
            assert name not in r.fields, (device, name, r)
            assert len(r.fields) >= 3, (device, "lost more than the missing field", r)
    for device, collector in ((die[0], "rebellions"), (one("h100"), "nvml")):
        during = [r.fields for r in read_inside(read[device], *inside) if r.collector == collector]
        assert during, (device, "not reported while stuck")
        for name in ("power_w", "temp_c"):
            assert len({f[name] for f in during}) == 1, (device, name, "moved while stuck", during)
    for key in ("x330", "l40s"):
        pts = [p for p in rig.rec.since() if tags(p).get("device") == one(key)]
        pts = [p for p in pts if "energy_j" in fields(p)]
        t = np.array([p.ts_ns / 1e9 for p in pts])
        e = np.array([fields(p)["energy_j"] for p in pts])
        curve = counter_curve(t, e)
        drops = np.flatnonzero(np.diff(e) < 0)
        assert drops.size >= 1, (key, "the counter reset is not in the published series")
        flagged = np.zeros(drops.size, dtype=bool)
        for flags in (curve.resets, curve.gaps):  # a reset inside a gap is left out as a gap
            if flags is not None:
                flagged |= flags[drops] > 0
        assert flagged.all(), (key, "a counter drop counted as energy")
        assert (curve.energy_j >= 0).all(), (key, "negative energy increment")


def test_nan_temperature_of_a_furiosa_card_is_absent_not_a_failed_poll(rig: Rig) -> None:
    (rngd,) = {
        tags(p)["device"]
        for p in rig.rec.since()
        if p.measurement == "accel" and tags(p)["model"] == "rngd"
    }
    mark = rig.rec.mark()
    duration = 3.0
    started = rig.inject(Fault("nan", device="rngd", fields=("temp_c",), duration_s=duration))
    rig.wait(  # the fault is over and the collector healthy again
        seen_after(rig, mark, rngd, started.end(duration), has("temp_c")),
        "the RNGD's temperature to come back",
    )
    window = rig.rec.since(mark)
    assert set(collect_ok(window, "furiosa")) == {1}
    during = read_inside(readings(window)[rngd], *started.inside(duration))
    assert during, "the RNGD was not reported while its temperature was NaN"
    for r in during:
        assert "temp_c" not in r.fields and "power_w" in r.fields, r


# ================================================================ (c) doctor → agent, unchanged
def test_doctor_config_runs_unchanged_in_kwatt_agent(rig: Rig, mosquitto: Mosquitto) -> None:
    site = uniq("doctor")
    conf = rig.tmp / "doctor.yaml"
    args = ["doctor", "--root", str(rig.root), "--site", site, "--node", "n1"]
    args += ["--broker", mosquitto.url, "--print-config", str(conf)]
    args += ["--redfish", rig.ready["redfish"]]
    for key, url in rig.ready.items():
        kind, _, what = key.partition(":")
        if kind == "serving" and what:
            args += ["--serving", f"{url}/metrics=chatbot:{what}"]
        elif kind == "triton":
            args += ["--serving", f"{url}/metrics={what}:triton"]
    r = subprocess.run(kwatt(*args), cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    text = conf.read_text(encoding="utf-8")
    doc = yaml.safe_load(text)
    names = [c["name"] for c in doc["collectors"]]
    types = {c["type"] for c in doc["collectors"]}
    # every surface of the node, nvidia-smi left out (it reads the GPUs NVML reads)
    assert types == {
        "furiosa", "rebellions", "sapeon", "nvml", "rapl", "hwmon", "ipmi_dcmi", "redfish", "serving",
    }, types  # fmt: skip
    assert names == [n for n in COLLECTORS if n != "nvidia-smi"], names

    sub = subscribe(mosquitto, f"kwatt/v1/{site}/n1/#")
    log = rig.tmp / "doctor-agent.log"
    with log.open("wb") as err:
        agent = subprocess.Popen(
            kwatt("agent", "--config", str(conf)),
            cwd=REPO,
            env={**ENV, "LD_LIBRARY_PATH": rig.ready["nvml_lib"]},
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        deadline = time.monotonic() + WAIT_S
        while not all(collect_ok(sub.rec.since(), n).count(1) >= 3 for n in names):
            assert agent.poll() is None, tail(log)
            assert time.monotonic() < deadline, (
                {n: collect_ok(sub.rec.since(), n) for n in names},
                tail(log),
            )
            time.sleep(0.05)
        points = sub.rec.since()
    finally:
        rc = stop(agent)
        sub.close()
    assert rc == 0, tail(log)
    assert conf.read_text(encoding="utf-8") == text  # fed as printed
    assert not sub.rec.errors, sub.rec.errors[:5]
    assert not (bad := si_problems(points)), bad[:10]
    check_accel_fields(points, with_nvidia_smi=False, min_polls=2)
    assert {
        (tags(p)["source"], tags(p).get("zone")) for p in points if p.measurement == "host"
    } == set(HOST_OFFERED)
    assert {(tags(p)["service"], tags(p)["runtime"]) for p in points if p.measurement == "serving"} == set(SERVING_OFFERED)  # fmt: skip


# ================================================================ and it still stops cleanly
def test_agent_stops_cleanly_after_all_faults(rig: Rig) -> None:
    rig.assert_running()
    assert rig.rec.status is not None and rig.rec.status.state == "online"
    assert stop(rig.agent) == 0, rig.diag()
    deadline = time.monotonic() + WAIT_S
    while rig.rec.status is None or rig.rec.status.state != "offline":
        assert time.monotonic() < deadline, rig.rec.status
        time.sleep(0.05)
    assert rig.rec.status.cause == "stopped"
