"""NVIDIA GPUs through NVML, with nvidia-ml-py's ``pynvml`` (docs/device-interfaces.md §4.1).

Install the optional extra (``pip install kwatt[nvidia]``, which brings ``nvidia-ml-py``; its module is
``pynvml``, which loads the driver's ``libnvidia-ml.so.1``). There is no other binding: an emulated
node is read the same way, through its emulated ``libnvidia-ml.so.1`` put on the agent's
``LD_LIBRARY_PATH`` (emulators/nvidia.py). ``module: pynvml`` in a config is accepted for one
release with a deprecation warning; any other ``module`` is a config error. Per GPU and poll it
calls, in NVML's units (§4.1, §8):

======================================  ==========  ==========================================
call                                    unit        field
======================================  ==========  ==========================================
nvmlDeviceGetTotalEnergyConsumption     mJ          ``energy_j`` (counter since driver load)
nvmlDeviceGetPowerUsage                 mW          ``power_w``
nvmlDeviceGetUtilizationRates().gpu     %           ``util_ratio``
nvmlDeviceGetTemperature(h, GPU=0)      °C          ``temp_c``
nvmlDeviceGetClockInfo(h, SM=1)         MHz         ``clock_hz``
nvmlDeviceGetMemoryInfo                 bytes       ``mem_used_bytes``, ``mem_total_bytes``
nvmlDeviceGetEnforcedPowerLimit         mW          ``power_limit_w``
nvmlDeviceGetCurrentClocksEventReasons  bitmask     ``throttled`` (power/thermal bits)
======================================  ==========  ==========================================

The energy counter is what energy figures are computed from (DESIGN §6: counter deltas beat
integrating sampled power; the 1-s averaged ``GetPowerUsage`` of Ampere-and-newer boards is a gauge
for the live view). The counter counts from the driver's (re)load: it goes back to 0 when the driver
reloads, which the analytics treat as a counter reset. ``NVML_ERROR_NOT_SUPPORTED`` (the energy counter before Volta, a sensor a board
lacks), ``NO_DATA`` and ``NO_PERMISSION`` make that field absent, never 0. Every other NVML return
code goes through :data:`ERRORS` to a typed outcome: a lost GPU (``GPU_IS_LOST``, ``NOT_FOUND``) is
left out of this poll and NVML is re-initialised at the next one (a re-enumerated GPU keeps its UUID,
the device tag); no library or driver is :class:`CollectorUnavailable`; ``TIMEOUT`` is
:class:`CollectorTimeout`; the rest :class:`CollectorError`. NVML calls run in a worker thread under
``timeout_s``; while a blocked call is still running no second one is started.

Cost per poll: a few library calls per device, against a process spawn per poll for
``nvidia-smi`` (see BENCHMARKS.md (Cost per collector poll); ``bench/bench_nvidia_poll.py`` compares the two over emulated GPUs): ``nvml``
is the collector to poll every second, ``nvidia_smi`` the fallback where the binding is not
installed. The emulated library answers from a text file it re-reads when it
changes where real NVML makes driver calls; no real GPU was measured.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from kwatt.collectors.base import CollectorError, CollectorUnavailable, ParseError
from kwatt.collectors.driverlib import (
    DeviceGone,
    Outcome,
    Reinit,
    WorkerCalls,
    outcome_error,
)
from kwatt.collectors.nvidia_common import GpuRecord, device_info, is_throttled, to_sample
from kwatt.collectors.plugin import CollectorPlugin, Entries, Surface
from kwatt.wire.model import DeviceInfo, Sample
from kwatt.wire.units import c_to_c, mhz_to_hz, mj_to_j, mw_to_w, pct_to_ratio

__all__ = [
    "ERRORS",
    "MODULE",
    "PLUGIN",
    "Config",
    "NvmlCollector",
    "NvmlReading",
    "Outcome",
    "outcome",
    "to_record",
]

log = logging.getLogger(__name__)

NVML_TEMPERATURE_GPU = 0
NVML_CLOCK_SM = 1


#: The only binding: nvidia-ml-py's module.
MODULE = "pynvml"


@dataclass(frozen=True)
class Config:
    """Options of an ``nvml`` collector entry."""

    #: Longest a poll's NVML calls may take before the poll fails with CollectorTimeout.
    timeout_s: float = 5.0
    #: Deprecated (accepted for one release, only as ``pynvml``): the binding is always pynvml.
    module: str | None = None

    def __post_init__(self) -> None:
        if self.module is None:
            return
        if self.module != MODULE:
            raise ValueError(
                f"module: {self.module!r} is not accepted: the nvml collector always uses "
                "nvidia-ml-py's pynvml (an emulated node is read through its libnvidia-ml.so.1 "
                "on LD_LIBRARY_PATH); remove the key"
            )
        log.warning("nvml: the 'module' option is deprecated and will be removed: remove it")


#: NVML return code (pynvml ``NVML_ERROR_*``, §4.1) → outcome; codes not listed are FAILED.
ERRORS: Mapping[int, Outcome] = {
    1: Outcome.REINIT,  # UNINITIALIZED
    3: Outcome.ABSENT,  # NOT_SUPPORTED
    4: Outcome.ABSENT,  # NO_PERMISSION
    6: Outcome.DEVICE_GONE,  # NOT_FOUND
    9: Outcome.UNAVAILABLE,  # DRIVER_NOT_LOADED
    10: Outcome.TIMEOUT,  # TIMEOUT
    12: Outcome.UNAVAILABLE,  # LIBRARY_NOT_FOUND
    13: Outcome.ABSENT,  # FUNCTION_NOT_FOUND (older driver than binding)
    15: Outcome.DEVICE_GONE,  # GPU_IS_LOST
    16: Outcome.DEVICE_GONE,  # RESET_REQUIRED
    18: Outcome.UNAVAILABLE,  # LIB_RM_VERSION_MISMATCH
    21: Outcome.ABSENT,  # NO_DATA
    28: Outcome.DEVICE_GONE,  # GPU_NOT_FOUND
}


def outcome(code: int) -> Outcome:
    return ERRORS.get(code, Outcome.FAILED)


# ------------------------------------------------------------------------------ pure conversion


@dataclass(frozen=True, slots=True)
class NvmlReading:
    """What NVML returned for one GPU, in NVML's own types and units (None: not available)."""

    uuid: object = None  # str (bytes in old bindings)
    serial: object = None
    bus_id: object = None  # nvmlPciInfo_t.busId, bytes
    name: object = None
    driver_version: object = None
    power_mw: object = None
    energy_mj: object = None
    util_gpu_pct: object = None
    temp_c: object = None
    sm_clock_mhz: object = None
    mem_used_bytes: object = None
    mem_total_bytes: object = None
    power_limit_mw: object = None
    clock_event_reasons: object = None


def _text(value: object, what: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError(f"nvml: {what} is not UTF-8: {value[:40]!r}") from None
    if not isinstance(value, str):
        raise ParseError(f"nvml: {what} is a {type(value).__name__}, expected a string")
    text = value.strip().rstrip("\x00")
    return text or None


def _uint(value: object, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParseError(f"nvml: {what} is a {type(value).__name__}, expected an integer")
    if value < 0:
        raise ParseError(f"nvml: {what} is negative ({value})")
    return value


def to_record(r: NvmlReading) -> GpuRecord:
    """Convert one GPU's NVML values to SI (pure); :class:`ParseError` for values of the wrong type."""
    power_mw = _uint(r.power_mw, "power usage (mW)")
    energy_mj = _uint(r.energy_mj, "total energy consumption (mJ)")
    util = _uint(r.util_gpu_pct, "GPU utilization (%)")
    temp = _uint(r.temp_c, "temperature (C)")
    clock = _uint(r.sm_clock_mhz, "SM clock (MHz)")
    limit_mw = _uint(r.power_limit_mw, "enforced power limit (mW)")
    reasons = _uint(r.clock_event_reasons, "clock event reasons")
    return GpuRecord(
        uuid=_text(r.uuid, "UUID"),
        serial=_text(r.serial, "serial"),
        bus_id=_text(r.bus_id, "PCI bus id"),
        name=_text(r.name, "name"),
        driver_version=_text(r.driver_version, "driver version"),
        power_w=None if power_mw is None else mw_to_w(power_mw),
        energy_j=None if energy_mj is None else mj_to_j(energy_mj),
        util_ratio=None if util is None else pct_to_ratio(util),
        temp_c=None if temp is None else c_to_c(temp),
        clock_hz=None if clock is None else mhz_to_hz(clock),
        mem_used_bytes=_uint(r.mem_used_bytes, "memory used (bytes)"),
        mem_total_bytes=_uint(r.mem_total_bytes, "memory total (bytes)"),
        power_limit_w=None if limit_mw is None else mw_to_w(limit_mw),
        throttled=None if reasons is None else int(is_throttled(reasons)),
    )


# ------------------------------------------------------------------------------ I/O


class _Nvml:
    """The loaded binding; every call's NVML error is turned into an outcome."""

    def __init__(self, module: ModuleType) -> None:
        self.module = module
        error = getattr(module, "NVMLError", None)
        if not (isinstance(error, type) and issubclass(error, BaseException)):
            raise CollectorUnavailable(f"{module.__name__}: not a pynvml module (no NVMLError)")
        self.error: type[BaseException] = error

    def code_of(self, e: BaseException) -> int:
        value = getattr(e, "value", None)
        return value if isinstance(value, int) else -1

    def call(self, fn: str, *args: object) -> object:
        """Call ``fn``; NVML errors other than ABSENT become collector errors or DeviceGone."""
        func: Callable[..., object] | None = getattr(self.module, fn, None)
        if func is None:
            raise CollectorUnavailable(f"{self.module.__name__}: no {fn}() (binding too old?)")
        try:
            return func(*args)
        except self.error as e:
            raise self._typed(fn, e) from None

    def optional(self, fn: str, *args: object) -> object:
        """Call ``fn``; None when NVML says the value is not available (ABSENT outcome)."""
        func: Callable[..., object] | None = getattr(self.module, fn, None)
        if func is None:
            return None
        try:
            return func(*args)
        except self.error as e:
            if outcome(self.code_of(e)) is Outcome.ABSENT:
                return None
            raise self._typed(fn, e) from None

    def _typed(self, fn: str, e: BaseException) -> CollectorError:
        code = self.code_of(e)
        kind = outcome(code)
        return outcome_error(kind, f"NVML {fn}: {e} (code {code}; {kind.value})")


class NvmlCollector:
    """Reads every GPU NVML enumerates; one ``accel`` sample per GPU and poll."""

    def __init__(self, name: str, config: Config) -> None:
        self.name = name
        self.config = config
        self._nvml: _Nvml | None = None
        self._initialised = False
        self._calls = WorkerCalls()

    # -- the agent's side

    async def inventory(self) -> list[DeviceInfo]:
        records = await self._in_thread()
        infos = [device_info(r, self.name) for _, r in records]
        return [i for i in infos if i is not None]

    async def collect(self) -> list[Sample]:
        samples: list[Sample] = []
        for ts_ns, record in await self._in_thread():
            sample = to_sample(record, ts_ns, f"nvml GPU {record.device_id}")
            if sample is not None:
                samples.append(sample)
        return samples

    async def aclose(self) -> None:
        self._calls.when_idle(self._shutdown)  # a blocked call still holds the library

    # -- the worker thread

    async def _in_thread(self) -> list[tuple[int, GpuRecord]]:
        return await self._calls.run(
            self._poll,
            self.config.timeout_s,
            blocked=f"{self.name}: the previous NVML call is still blocked",
            late=f"{self.name}: NVML did not answer within {self.config.timeout_s:g} s",
        )

    def _load(self) -> _Nvml:
        if self._nvml is None:
            try:
                module = importlib.import_module(MODULE)
            except ImportError as e:
                raise CollectorUnavailable(
                    f"{MODULE}: cannot import ({e}); install nvidia-ml-py "
                    "(pip install 'kwatt[nvidia]')"
                ) from None
            self._nvml = _Nvml(module)
        return self._nvml

    def _shutdown(self) -> None:
        if self._initialised and self._nvml is not None:
            self._initialised = False
            try:
                self._nvml.call("nvmlShutdown")
            except (CollectorError, DeviceGone) as e:
                log.debug("%s: nvmlShutdown: %s", self.name, e)

    def _poll(self) -> list[tuple[int, GpuRecord]]:
        nvml = self._load()
        if not self._initialised:
            try:
                nvml.call("nvmlInit")
            except DeviceGone as e:
                raise CollectorError(str(e)) from None
            self._initialised = True
        try:
            return self._read_all(nvml)
        except DeviceGone as e:  # the GPU list itself changed under us
            self._shutdown()
            raise CollectorError(str(e)) from None
        except Reinit:
            self._initialised = False
            raise

    def _read_all(self, nvml: _Nvml) -> list[tuple[int, GpuRecord]]:
        driver = nvml.optional("nvmlSystemGetDriverVersion")
        count = _uint(nvml.call("nvmlDeviceGetCount"), "device count") or 0
        out: list[tuple[int, GpuRecord]] = []
        lost = False
        for index in range(count):
            try:
                handle = nvml.call("nvmlDeviceGetHandleByIndex", index)
                ts_ns = time.time_ns()
                reading = self._read_device(nvml, handle, driver)
            except DeviceGone as e:
                log.warning("%s: GPU %d: %s", self.name, index, e)
                lost = True
                continue
            out.append((ts_ns, to_record(reading)))
        if lost:  # re-enumerate at the next poll
            self._shutdown()
            if not out:
                raise CollectorError(f"{self.name}: all {count} GPUs were lost during the poll")
        return out

    def _read_device(self, nvml: _Nvml, handle: object, driver: object) -> NvmlReading:
        pci = nvml.optional("nvmlDeviceGetPciInfo", handle)
        util = nvml.optional("nvmlDeviceGetUtilizationRates", handle)
        memory = nvml.optional("nvmlDeviceGetMemoryInfo", handle)
        reasons_fn = (
            "nvmlDeviceGetCurrentClocksEventReasons"
            if hasattr(nvml.module, "nvmlDeviceGetCurrentClocksEventReasons")
            else "nvmlDeviceGetCurrentClocksThrottleReasons"
        )
        return NvmlReading(
            uuid=nvml.call("nvmlDeviceGetUUID", handle),
            serial=nvml.optional("nvmlDeviceGetSerial", handle),
            bus_id=None if pci is None else getattr(pci, "busId", None),
            name=nvml.optional("nvmlDeviceGetName", handle),
            driver_version=driver,
            power_mw=nvml.optional("nvmlDeviceGetPowerUsage", handle),
            energy_mj=nvml.optional("nvmlDeviceGetTotalEnergyConsumption", handle),
            util_gpu_pct=None if util is None else getattr(util, "gpu", None),
            temp_c=nvml.optional("nvmlDeviceGetTemperature", handle, NVML_TEMPERATURE_GPU),
            sm_clock_mhz=nvml.optional("nvmlDeviceGetClockInfo", handle, NVML_CLOCK_SM),
            mem_used_bytes=None if memory is None else getattr(memory, "used", None),
            mem_total_bytes=None if memory is None else getattr(memory, "total", None),
            power_limit_mw=nvml.optional("nvmlDeviceGetEnforcedPowerLimit", handle),
            clock_event_reasons=nvml.optional(reasons_fn, handle),
        )


def load_emulated_library(root: Path) -> bool:
    """Load an emulated node's ``libnvidia-ml.so.1`` (``ROOT/.kwatt-emulator/nvml/``) into this
    process, so pynvml's ``dlopen("libnvidia-ml.so.1")`` finds it as an agent started with
    ``LD_LIBRARY_PATH`` there would; its state file is named by ``KWATT_NVML_STATE``. False when
    the node has no such library (no NVIDIA GPU, or no compiler where it runs)."""
    lib_dir = root / ".kwatt-emulator" / "nvml"
    lib = lib_dir / "libnvidia-ml.so.1"
    if not lib.is_file():
        return False
    os.environ["KWATT_NVML_STATE"] = str(lib_dir / "state")
    try:
        ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
    except OSError:
        return False
    return True


def _detect(surface: Surface) -> Entries:
    """Doctor: an entry when pynvml is installed on this host, or when an emulated node has its
    ``libnvidia-ml.so.1`` (loaded into this process here)."""
    host = surface.real and importlib.util.find_spec(MODULE) is not None
    if host or (surface.emulated and load_emulated_library(surface.root)):
        return [{"type": "nvml", "name": "nvml"}]
    return []


#: This module's collector, as the registry (:mod:`kwatt.collectors`) finds it.
PLUGIN = CollectorPlugin(
    kind="nvml",
    config=Config,
    factory=NvmlCollector,
    detect=_detect,
    demo=True,
    permission_fix=(
        "add the agent user to the group owning /dev/nvidia* (usually 'video'), or run it "
        "where the NVIDIA driver's device nodes are readable"
    ),
)
