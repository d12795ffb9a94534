"""The ``bindings`` source of the ``furiosa`` collector: FuriosaAI's Python binding
(``furiosa_smi`` 2026.4, else ``furiosa_smi_py`` 2026.1; the calls of each version are listed in
:mod:`kwatt.collectors.furiosa.bindings_parse`). Every call's error is turned into an
:class:`~kwatt.collectors.driverlib.Outcome`; one poll's calls run in a worker thread under the poll
timeout (:class:`~kwatt.collectors.driverlib.WorkerCalls`)."""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable, Mapping
from types import ModuleType

from kwatt.collectors.base import CollectorError, CollectorUnavailable, ParseError
from kwatt.collectors.driverlib import DeviceGone, Outcome, WorkerCalls, outcome_error
from kwatt.collectors.furiosa.bindings_parse import (
    BindingReading,
    binding_outcome,
    binding_sample,
    parse_binding,
)
from kwatt.collectors.furiosa.config import BINDING_MODULES, Config
from kwatt.collectors.furiosa.parse import VENDOR
from kwatt.wire.model import DeviceInfo, Sample

log = logging.getLogger(__name__)

#: One poll's readings: the driver version, and each card's (wall time of its read, values).
Readings = tuple[str | None, list[tuple[int, BindingReading]]]


class _Binding:
    """The loaded binding module; every error of a call is turned into an :class:`Outcome`."""

    def __init__(self, module: ModuleType) -> None:
        self.module = module
        self.name = module.__name__
        if not callable(getattr(module, "list_devices", None)):
            raise CollectorUnavailable(f"{self.name}: not a furiosa_smi module (no list_devices())")
        errors: list[type[BaseException]] = [RuntimeError]  # furiosa_smi_py raises RuntimeError
        smi_error = getattr(module, "SmiError", None)  # furiosa_smi 2026.4
        if isinstance(smi_error, type) and issubclass(smi_error, Exception):
            errors.append(smi_error)
        self.errors = tuple(errors)
        self.initialised = not callable(getattr(module, "init", None))  # 2026.4 has no init()

    def init(self) -> None:
        if not self.initialised:
            self.call(self.module, "init")
            self.initialised = True

    def call(self, obj: object, method: str, *args: object) -> object:
        """``obj.method(*args)``; every failure becomes a collector error (or :class:`DeviceGone`)."""
        fn = getattr(obj, method, None)
        if not callable(fn):
            raise CollectorUnavailable(f"{self.name}: no {method}() (binding too old?)")
        return self._invoke(fn, method, args, absent_ok=False)

    def optional(self, obj: object, method: str, *args: object) -> object:
        """``obj.method(*args)``, or None when the method is missing (another binding version) or
        the library says the value is not available (an ABSENT outcome)."""
        if obj is None:
            return None
        fn = getattr(obj, method, None)
        if not callable(fn):
            return None
        return self._invoke(fn, method, args, absent_ok=True)

    def value(self, obj: object, method: str) -> object:
        """A measurement: as :meth:`optional`, and DEVICE_GONE is an absent value too.

        furiosa-smi-py 2026.1.2 answers ``power_consumption()`` with "Device not found error" when
        only the card's hwmon power file is missing (its log: "Device not found: /dev/rngd/npu0";
        tests/conformance/test_collector_furiosa_bindings.py); a card that really went away fails its identity
        calls (left out of the poll) or has no value left (no sample)."""
        if obj is None:
            return None
        fn = getattr(obj, method, None)
        if not callable(fn):
            return None
        return self._invoke(fn, method, (), absent_ok=True, gone_is_absent=True)

    def _invoke(
        self,
        fn: Callable[..., object],
        method: str,
        args: tuple[object, ...],
        absent_ok: bool,
        gone_is_absent: bool = False,
    ) -> object:
        try:
            return fn(*args)
        except self.errors as e:
            kind = binding_outcome(e)
            if absent_ok and (
                kind is Outcome.ABSENT or (gone_is_absent and kind is Outcome.DEVICE_GONE)
            ):
                return None
            msg = f"{self.name} {method}(): {type(e).__name__}: {str(e)[:200]} ({kind.value})"
            if kind is Outcome.REINIT:
                self.initialised = not callable(getattr(self.module, "init", None))
            raise outcome_error(kind, msg) from None
        except Exception as e:  # a binding that breaks its own contract: typed, never a crash
            raise CollectorError(
                f"{self.name} {method}(): unexpected {type(e).__name__}: {str(e)[:200]}"
            ) from None

    def items(self, value: object, what: str) -> list[object]:
        """A list the binding returned (a list, a tuple, or any iterable)."""
        if value is None:
            return []
        if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
            raise ParseError(f"{self.name}: {what}: expected a list, got {type(value).__name__}")
        try:
            return list(value)
        except Exception as e:
            raise CollectorError(f"{self.name}: {what}: {type(e).__name__}: {e}") from None


def _version_text(b: _Binding, v: object) -> object:
    """A ``VersionInfo`` as sysfs writes a version (``X.Y.Z, metadata``); strings pass through."""
    if v is None or isinstance(v, str):
        return v
    major = b.optional(v, "major")
    if major is None:
        return str(v)
    text = f"{major}.{b.optional(v, 'minor')}.{b.optional(v, 'patch')}"
    pre = b.optional(v, "prerelease")
    meta = b.optional(v, "metadata")
    text += f"~{pre}" if pre else ""
    return f"{text}, {meta}" if meta else text


def _bdf_text(b: _Binding, v: object) -> object:
    """A 2026.4 ``Bdf`` (domain, bus, device, function) as ``0000:6d:00.0``; strings pass through."""
    if v is None or isinstance(v, str):
        return v
    parts = [b.optional(v, k) for k in ("domain", "bus", "device", "function")]
    ints = [p for p in parts if isinstance(p, int) and not isinstance(p, bool) and p >= 0]
    if len(ints) == 4:
        return f"{ints[0]:04x}:{ints[1]:02x}:{ints[2]:02x}.{ints[3]:x}"
    return v  # parse_binding names the wrong type


def _per_core(b: _Binding, value: object, what: str, *methods: str) -> list[tuple[object, ...]]:
    """``(core, value, …)`` rows of a per-PE result: a ``{core: value}`` dict (furiosa_smi 2026.4),
    whose values are read with ``methods`` when given, or a list of objects with ``core()`` and
    ``methods`` (furiosa_smi_py)."""
    if isinstance(value, dict):
        return [
            (core, *(b.optional(v, m) for m in methods)) if methods else (core, v)
            for core, v in value.items()
        ]
    return [
        (b.optional(row, "core"), *(b.optional(row, m) for m in methods))
        for row in b.items(value, what)
    ]


def _read_binding_card(b: _Binding, dev: object) -> BindingReading:
    """One card's values through whichever binding version is loaded (calls only; no conversion)."""
    info = b.optional(dev, "device_info")  # furiosa_smi_py: identity lives on DeviceInfo
    ident = dev if info is None else info
    arch = b.call(ident, "arch")
    name = b.optional(ident, "name") if info is not None else b.optional(dev, "device_name")
    temperature = b.value(dev, "device_temperature")
    freq = b.value(dev, "core_frequency")
    if freq is not None and not isinstance(freq, dict):
        freq = b.optional(freq, "pe_frequency")  # furiosa_smi_py: CoreFrequency
    clocks = (
        None
        if freq is None
        else tuple(
            r[1]
            for r in _per_core(
                b, freq, "pe_frequency()", *(() if isinstance(freq, dict) else ("frequency",))
            )
        )
    )
    status = b.value(dev, "core_status")
    if status is not None and not isinstance(status, dict):
        status = b.optional(status, "pe_status")  # furiosa_smi_py: CoreStatuses
    occupied = (
        None
        if status is None
        else tuple(
            (r[0], None if r[1] is None else str(r[1]))
            for r in _per_core(
                b, status, "pe_status()", *(() if isinstance(status, dict) else ("status",))
            )
        )
    )
    pc = b.value(dev, "performance_counter")  # furiosa_smi 2026.4: {core: counter}
    if pc is None:
        pc = b.optional(b.value(dev, "device_performance_counter"), "pe_performance_counters")
    counters = (
        None
        if pc is None
        else tuple(
            (r[0], r[1], r[2])
            for r in _per_core(b, pc, "performance counters", "cycle_count", "task_execution_cycle")
        )
    )
    # memory: memory_usage() of furiosa_smi 2026.4 only; furiosa_smi_py 2026.1.2's
    # memory_utilization() reports 0 bytes in use on every PE whatever alloc_status says
    usage = b.value(dev, "memory_usage")
    memory = (
        None
        if not isinstance(usage, dict)
        else tuple(
            (r[1], r[2])
            for r in _per_core(b, usage, "memory_usage()", "in_use_bytes", "total_bytes")
        )
    )
    throttle = b.value(dev, "throttle_reason")
    if throttle is not None and not isinstance(throttle, int):  # ThrottleReason member(s)
        members = (
            b.items(throttle, "throttle_reason()") if hasattr(throttle, "__iter__") else [throttle]
        )
        throttle = tuple(str(m) for m in members)
    return BindingReading(
        arch=None if arch is None else str(arch),
        name=name,
        uuid=b.optional(ident, "uuid"),
        serial=b.optional(ident, "serial"),
        bdf=_bdf_text(b, b.optional(ident, "bdf")),
        firmware=_version_text(b, b.optional(ident, "firmware_version")),
        power_w=b.value(dev, "power_consumption"),
        temp_c=b.value(temperature, "soc_peak"),
        pe_clock_mhz=clocks,
        occupied=occupied,
        counters=counters,
        memory=memory,
        power_limit_mw=b.value(dev, "power_limit"),
        throttle=throttle,
    )


class BindingsSource:
    """The loaded binding (imported once: an import that failed is not retried until the agent
    restarts), its calls in a worker thread, and the counters of the previous poll."""

    def __init__(self, name: str, config: Config) -> None:
        self.name = name
        self.config = config
        self._binding: _Binding | None = None
        self._binding_missing: str | None = None  # why no binding module could be imported
        self._binding_counters: dict[str, Mapping[int, tuple[int, int]]] = {}
        self._calls = WorkerCalls()

    def load(self) -> _Binding:
        """Import the binding once; an import that failed is not retried (restart the agent after
        installing it)."""
        if self._binding is not None:
            return self._binding
        if self._binding_missing is not None:
            raise CollectorUnavailable(self._binding_missing)
        names = (self.config.bindings_module,) if self.config.bindings_module else BINDING_MODULES
        errors: list[str] = []
        for name in names:
            try:
                module = importlib.import_module(name)
            except Exception as e:  # ImportError, or a native library that does not load
                errors.append(f"{name}: {type(e).__name__}: {str(e)[:200]}")
                continue
            self._binding = _Binding(module)
            return self._binding
        self._binding_missing = (
            f"no furiosa_smi binding ({'; '.join(errors)}); pip install 'kwatt[furiosa]'"
        )
        raise CollectorUnavailable(self._binding_missing)

    async def read(self) -> Readings:
        """One poll's binding calls in a worker thread, at most ``timeout_s``; while a blocked call
        still runs, no second one is started."""
        return await self._calls.run(
            self._poll,
            self.config.timeout_s,
            blocked=f"{self.name}: the previous furiosa_smi call is still blocked",
            late=(
                f"{self.name}: the furiosa_smi binding did not answer within "
                f"{self.config.timeout_s:g} s"
            ),
        )

    def _poll(self) -> Readings:
        b = self.load()
        b.init()
        try:
            devices = b.items(b.call(b.module, "list_devices"), "list_devices()")
        except DeviceGone as e:
            raise CollectorUnavailable(str(e)) from None
        if not devices:
            raise CollectorUnavailable(
                f"{b.name}: list_devices() found no card (is the rngd or npu driver loaded?)"
            )
        try:
            driver = _version_text(b, b.optional(b.module, "driver_info"))
        except DeviceGone:
            driver = None
        out: list[tuple[int, BindingReading]] = []
        for i, dev in enumerate(devices):
            ts_ns = time.time_ns()
            try:
                out.append((ts_ns, _read_binding_card(b, dev)))
            except DeviceGone as e:
                log.warning("%s: card %d: %s", self.name, i, e)
        if not out:
            raise CollectorError(f"{self.name}: all {len(devices)} cards went away during the poll")
        return (driver if isinstance(driver, str) else None), out

    async def collect(self) -> list[Sample]:
        _, readings = await self.read()
        source = self._binding.name if self._binding is not None else "furiosa_smi"
        counters: dict[str, Mapping[int, tuple[int, int]]] = {}
        samples: list[Sample] = []
        for ts_ns, reading in readings:
            d = parse_binding(reading, self._binding_counters, source)
            if d.counters is not None:
                counters[d.tag] = d.counters
            sample = binding_sample(d, ts_ns, source)
            if sample is not None:
                samples.append(sample)
        self._binding_counters = counters
        return samples

    async def inventory(self) -> list[DeviceInfo]:
        driver, readings = await self.read()
        source = self._binding.name if self._binding is not None else "furiosa_smi"
        out: list[DeviceInfo] = []
        for _, reading in readings:
            d = parse_binding(reading, None, source)
            out.append(
                DeviceInfo(
                    vendor=VENDOR,
                    model=d.model,
                    id=d.tag,
                    collector=self.name,
                    driver_version=driver,
                    firmware_version=d.firmware,
                    bus_id=d.bdf,
                )
            )
        return out
