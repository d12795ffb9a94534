# ruff: noqa: N801, N802, N815, N816 - the names are the binding's (pynvml)
"""A ``pynvml``-compatible module over an emulated node (reference/device-interfaces.md §4.1).

Import it where nvidia-ml-py's ``pynvml`` would be imported (the ``nvml`` collector's ``module``
option). It reads the node's snapshot from the root directory named by the environment variable
``KWATT_EMULATOR_ROOT`` (:func:`emulators.nvidia.load_view`), re-reading it when the file changes.

What it reproduces of the real binding (nvidia-ml-py 13.615.71, ``pynvml.py``):

- units: power and power limits in **mW** (``c_uint``), total energy in **mJ since driver load**
  (``c_uint64``, here since the node started), temperature °C, clocks MHz, memory bytes, utilization %;
- ``nvmlDeviceGetTotalEnergyConsumption`` raises ``NVMLError_NotSupported`` before Volta (§4.1: the
  catalogue's ``p100``; T4 is Turing and has the counter);
- ``NVMLError(code)`` builds the code's subclass (``NVMLError_NotSupported``...), ``.value`` is the code,
  ``str()`` the library's text; calls before ``nvmlInit`` raise ``NVMLError_Uninitialized``;
- strings (name, UUID, serial, driver version) are ``str``; ``nvmlDeviceGetPciInfo(h).busId`` is
  ``bytes`` (a ``c_char`` array in the real structure), ``"00000000:1B:00.0"``;
- a handle keeps pointing at its GPU by UUID: once the GPU is gone (``present=False``), every call
  on it raises ``NVMLError_GpuIsLost``; ``nvmlDeviceGetCount`` counts the GPUs present now.

Device faults: a field in ``DeviceState.na_fields`` raises ``NVMLError_NotSupported`` from its call
(nvidia-smi shows ``[N/A]``), one in ``nan_fields`` ``NVMLError_NoData`` (NVML returns integers: a
NaN cannot be represented); the energy counter restarts at each counter reset (``energy_at_reset_j``),
as it does when the driver reloads.

Tool faults: ``Snapshot.tool_faults`` entry ``"nvml"``: ``hang_s`` delays every device call (a stuck
driver); ``exit_code`` N makes every device call raise ``NVMLError(N)`` (inject any NVML return code,
e.g. 15 = GPU_IS_LOST, 999 = UNKNOWN). ``garbage``/``truncate`` have no NVML meaning and are ignored.
Without ``KWATT_EMULATOR_ROOT`` ``nvmlInit`` raises ``NVMLError_LibraryNotFound`` (as the real binding
does without ``libnvidia-ml.so.1``); with a root that holds no node, ``NVMLError_DriverNotLoaded``.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from emulators.nvidia import (
    GpuView,
    energy_counter_j,
    fault_of,
    gpu_util_pct,
    gpu_uuid,
    load_view,
    mem_util_pct,
    model_of,
    nvml_bus_id,
    pstate,
    reasons_mask,
    surface_config_path,
)
from emulators.state import DeviceState, snapshot_path

#: Environment variable naming the emulated node's root directory.
ROOT_ENV = "KWATT_EMULATOR_ROOT"
#: Name of this module's entry in ``Snapshot.tool_faults``.
FAULTS_TOOL = "nvml"

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_ALREADY_INITIALIZED = 5
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_INSUFFICIENT_SIZE = 7
NVML_ERROR_INSUFFICIENT_POWER = 8
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_IRQ_ISSUE = 11
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_CORRUPTED_INFOROM = 14
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_RESET_REQUIRED = 16
NVML_ERROR_OPERATING_SYSTEM = 17
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
NVML_ERROR_IN_USE = 19
NVML_ERROR_MEMORY = 20
NVML_ERROR_NO_DATA = 21
NVML_ERROR_UNKNOWN = 999

NVML_TEMPERATURE_GPU = 0
NVML_CLOCK_GRAPHICS = 0
NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2
NVML_CLOCK_VIDEO = 3

NVML_DEVICE_ARCH_PASCAL = 4
NVML_DEVICE_ARCH_VOLTA = 5
NVML_DEVICE_ARCH_TURING = 6
NVML_DEVICE_ARCH_AMPERE = 7
NVML_DEVICE_ARCH_ADA = 8
NVML_DEVICE_ARCH_HOPPER = 9

nvmlClocksEventReasonGpuIdle = 0x1
nvmlClocksEventReasonApplicationsClocksSetting = 0x2
nvmlClocksEventReasonSwPowerCap = 0x4
nvmlClocksEventReasonHwSlowdown = 0x8
nvmlClocksEventReasonSyncBoost = 0x10
nvmlClocksEventReasonSwThermalSlowdown = 0x20
nvmlClocksEventReasonHwThermalSlowdown = 0x40
nvmlClocksEventReasonHwPowerBrakeSlowdown = 0x80
nvmlClocksEventReasonDisplayClockSetting = 0x100
nvmlClocksEventReasonNone = 0x0
nvmlClocksThrottleReasonGpuIdle = nvmlClocksEventReasonGpuIdle
nvmlClocksThrottleReasonApplicationsClocksSetting = nvmlClocksEventReasonApplicationsClocksSetting
nvmlClocksThrottleReasonSwPowerCap = nvmlClocksEventReasonSwPowerCap
nvmlClocksThrottleReasonHwSlowdown = nvmlClocksEventReasonHwSlowdown
nvmlClocksThrottleReasonSyncBoost = nvmlClocksEventReasonSyncBoost
nvmlClocksThrottleReasonSwThermalSlowdown = nvmlClocksEventReasonSwThermalSlowdown
nvmlClocksThrottleReasonHwThermalSlowdown = nvmlClocksEventReasonHwThermalSlowdown
nvmlClocksThrottleReasonHwPowerBrakeSlowdown = nvmlClocksEventReasonHwPowerBrakeSlowdown
nvmlClocksThrottleReasonBoardLimit = 0x200
nvmlClocksThrottleReasonReliability = 0x400
nvmlClocksThrottleReasonNone = 0x0

# the binding's texts for the codes (pynvml NVMLError._errcode_to_string)
_ERROR_TEXT: dict[int, str] = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NO_PERMISSION: "Insufficient Permissions",
    NVML_ERROR_ALREADY_INITIALIZED: "Already Initialized",
    NVML_ERROR_NOT_FOUND: "Not Found",
    NVML_ERROR_INSUFFICIENT_SIZE: "Insufficient Size",
    NVML_ERROR_INSUFFICIENT_POWER: "Insufficient External Power",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_TIMEOUT: "Timeout",
    NVML_ERROR_IRQ_ISSUE: "Interrupt Request Issue",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_FUNCTION_NOT_FOUND: "Function Not Found",
    NVML_ERROR_CORRUPTED_INFOROM: "Corrupted infoROM",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
    NVML_ERROR_RESET_REQUIRED: "GPU requires restart",
    NVML_ERROR_OPERATING_SYSTEM: "The operating system has blocked the request.",
    NVML_ERROR_LIB_RM_VERSION_MISMATCH: "RM has detected an NVML/RM version mismatch.",
    NVML_ERROR_MEMORY: "Insufficient Memory",
    NVML_ERROR_NO_DATA: "No data",
    NVML_ERROR_UNKNOWN: "Unknown Error",
}


class NVMLError(Exception):
    """An NVML return code other than success; ``NVMLError(code)`` builds the code's subclass."""

    _classes: ClassVar[dict[int, type[NVMLError]]] = {}
    code: ClassVar[int | None] = None
    value: int

    def __new__(cls, value: int | None = None) -> NVMLError:
        klass = cls
        if cls is NVMLError and value is not None:
            klass = NVMLError._classes.get(value, NVMLError)
        code = klass.code if klass.code is not None else value
        obj = Exception.__new__(klass)
        obj.value = NVML_ERROR_UNKNOWN if code is None else code
        return obj

    def __init__(self, value: int | None = None) -> None:
        super().__init__(self.value)

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__()
        if cls.code is not None:
            NVMLError._classes[cls.code] = cls

    def __str__(self) -> str:
        return _ERROR_TEXT.get(self.value, f"NVML Error with code {self.value}")


class NVMLError_Uninitialized(NVMLError):
    code = NVML_ERROR_UNINITIALIZED


class NVMLError_InvalidArgument(NVMLError):
    code = NVML_ERROR_INVALID_ARGUMENT


class NVMLError_NotSupported(NVMLError):
    code = NVML_ERROR_NOT_SUPPORTED


class NVMLError_NoPermission(NVMLError):
    code = NVML_ERROR_NO_PERMISSION


class NVMLError_NotFound(NVMLError):
    code = NVML_ERROR_NOT_FOUND


class NVMLError_DriverNotLoaded(NVMLError):
    code = NVML_ERROR_DRIVER_NOT_LOADED


class NVMLError_Timeout(NVMLError):
    code = NVML_ERROR_TIMEOUT


class NVMLError_LibraryNotFound(NVMLError):
    code = NVML_ERROR_LIBRARY_NOT_FOUND


class NVMLError_GpuIsLost(NVMLError):
    code = NVML_ERROR_GPU_IS_LOST


class NVMLError_NoData(NVMLError):
    code = NVML_ERROR_NO_DATA


class NVMLError_Unknown(NVMLError):
    code = NVML_ERROR_UNKNOWN


# ------------------------------------------------------------------------------ structures


@dataclass(frozen=True, slots=True)
class c_nvmlDevice_t:
    """A device handle; it names its GPU by UUID, so it survives re-enumeration."""

    uuid: str


@dataclass(frozen=True, slots=True)
class c_nvmlUtilization_t:
    gpu: int  # %
    memory: int  # %


@dataclass(frozen=True, slots=True)
class c_nvmlMemory_t:
    total: int  # bytes
    free: int
    used: int


@dataclass(frozen=True, slots=True)
class nvmlPciInfo_t:
    busIdLegacy: bytes
    domain: int
    bus: int
    device: int
    pciDeviceId: int
    pciSubSystemId: int
    busId: bytes


# ------------------------------------------------------------------------------ library state


class _Library:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.refcount = 0
        self.root: Path | None = None
        self._stamp: tuple[int, int] | None = None
        self._view: GpuView | None = None

    def view(self) -> GpuView:
        """The current snapshot (re-read when a file changed); DriverNotLoaded when it is gone."""
        with self.lock:
            if self.refcount == 0 or self.root is None:
                raise NVMLError(NVML_ERROR_UNINITIALIZED)
            root = self.root
            try:
                stamp = (
                    snapshot_path(root).stat().st_mtime_ns,
                    _mtime_or_zero(surface_config_path(root)),
                )
            except OSError:
                raise NVMLError(NVML_ERROR_DRIVER_NOT_LOADED) from None
            if self._view is None or stamp != self._stamp:
                try:
                    self._view = load_view(root)
                except (OSError, ValueError, TypeError, KeyError):
                    raise NVMLError(NVML_ERROR_UNKNOWN) from None
                self._stamp = stamp
            return self._view


def _mtime_or_zero(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return 0


_lib = _Library()


def _value(handle: c_nvmlDevice_t, field: str) -> DeviceState:
    """The device, after checking the N/A / NaN faults of ``field`` (a DeviceState field)."""
    dev = _device(handle)
    fault = fault_of(dev, field)
    if fault == "na":
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
    if fault == "nan":
        raise NVMLError(NVML_ERROR_NO_DATA)
    return dev


def _device(handle: c_nvmlDevice_t) -> DeviceState:
    view = _lib.view()
    faults = view.snapshot.faults_for(FAULTS_TOOL)
    if faults.hang_s > 0:
        time.sleep(faults.hang_s)
    if faults.exit_code != 0:
        raise NVMLError(faults.exit_code)
    if not isinstance(handle, c_nvmlDevice_t):
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    for dev in view.gpus:
        if gpu_uuid(dev) == handle.uuid:
            return dev
    raise NVMLError(NVML_ERROR_GPU_IS_LOST)


# ------------------------------------------------------------------------------ the API


def nvmlInit() -> None:
    root = os.environ.get(ROOT_ENV)
    if not root:
        raise NVMLError(NVML_ERROR_LIBRARY_NOT_FOUND)
    if not snapshot_path(Path(root)).exists():
        raise NVMLError(NVML_ERROR_DRIVER_NOT_LOADED)
    with _lib.lock:
        _lib.root = Path(root)
        _lib.refcount += 1


def nvmlInitWithFlags(flags: int) -> None:
    nvmlInit()


def nvmlShutdown() -> None:
    with _lib.lock:
        if _lib.refcount == 0:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)
        _lib.refcount -= 1


def nvmlErrorString(result: int) -> str:
    return _ERROR_TEXT.get(result, "Unknown Error")


def nvmlSystemGetDriverVersion() -> str:
    return _lib.view().driver_version


def nvmlSystemGetNVMLVersion() -> str:
    view = _lib.view()
    return f"{view.cuda_version.split('.')[0]}.{view.driver_version}"


def nvmlDeviceGetCount() -> int:
    return len(_lib.view().gpus)


def nvmlDeviceGetHandleByIndex(index: int) -> c_nvmlDevice_t:
    gpus = _lib.view().gpus
    if not 0 <= index < len(gpus):
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    return c_nvmlDevice_t(gpu_uuid(gpus[index]))


def nvmlDeviceGetHandleByUUID(uuid: str | bytes) -> c_nvmlDevice_t:
    text = uuid.decode() if isinstance(uuid, bytes) else uuid
    for dev in _lib.view().gpus:
        if gpu_uuid(dev) == text:
            return c_nvmlDevice_t(text)
    raise NVMLError(NVML_ERROR_NOT_FOUND)


def nvmlDeviceGetIndex(handle: c_nvmlDevice_t) -> int:
    dev = _device(handle)
    return [gpu_uuid(d) for d in _lib.view().gpus].index(gpu_uuid(dev))


def nvmlDeviceGetMinorNumber(handle: c_nvmlDevice_t) -> int:
    return _device(handle).index


def nvmlDeviceGetUUID(handle: c_nvmlDevice_t) -> str:
    return gpu_uuid(_device(handle))


def nvmlDeviceGetSerial(handle: c_nvmlDevice_t) -> str:
    return _device(handle).serial


def nvmlDeviceGetName(handle: c_nvmlDevice_t) -> str:
    return model_of(_device(handle)).product_name


def nvmlDeviceGetArchitecture(handle: c_nvmlDevice_t) -> int:
    return model_of(_device(handle)).nvml_arch


def nvmlDeviceGetPciInfo(handle: c_nvmlDevice_t) -> nvmlPciInfo_t:
    dev = _device(handle)
    bus_id = nvml_bus_id(dev.bus_id)
    parts = bus_id.split(":")
    domain, bus, device = 0, 0, 0
    if len(parts) == 3:
        domain, bus, device = int(parts[0], 16), int(parts[1], 16), int(parts[2].split(".")[0], 16)
    legacy = f"{domain:04X}:{bus:02X}:{device:02X}.0".encode()
    return nvmlPciInfo_t(
        legacy, domain, bus, device, model_of(dev).pci_device_id, 0, bus_id.encode()
    )


def nvmlDeviceGetPowerUsage(handle: c_nvmlDevice_t) -> int:
    """Board power in mW: averaged over 1 s on Ampere (except GA100) and newer (§4.1)."""
    dev = _value(handle, "power_w")
    return max(0, round(_lib.view().draw_power_w(dev) * 1000))


def nvmlDeviceGetTotalEnergyConsumption(handle: c_nvmlDevice_t) -> int:
    """Energy in mJ since the driver was loaded (Volta and later)."""
    if not model_of(_device(handle)).energy_counter:
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
    dev = _value(handle, "energy_j")
    return max(0, math.floor(energy_counter_j(dev) * 1000)) % (1 << 64)


def nvmlDeviceGetEnforcedPowerLimit(handle: c_nvmlDevice_t) -> int:
    return round(_value(handle, "power_limit_w").power_limit_w * 1000)


def nvmlDeviceGetPowerManagementLimit(handle: c_nvmlDevice_t) -> int:
    return round(_device(handle).power_limit_w * 1000)


def nvmlDeviceGetPowerManagementDefaultLimit(handle: c_nvmlDevice_t) -> int:
    return round(model_of(_device(handle)).default_power_limit_w * 1000)


def nvmlDeviceGetUtilizationRates(handle: c_nvmlDevice_t) -> c_nvmlUtilization_t:
    dev = _value(handle, "util_ratio")
    return c_nvmlUtilization_t(gpu_util_pct(dev), mem_util_pct(dev))


def nvmlDeviceGetTemperature(handle: c_nvmlDevice_t, sensor: int) -> int:
    dev = _value(handle, "temp_c")
    if sensor != NVML_TEMPERATURE_GPU:
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    return round(dev.temp_c)


def nvmlDeviceGetClockInfo(handle: c_nvmlDevice_t, type: int) -> int:
    dev = _device(handle) if type == NVML_CLOCK_MEM else _value(handle, "clock_hz")
    board = model_of(dev)
    mhz = round(dev.clock_hz / 1e6)
    if type in (NVML_CLOCK_GRAPHICS, NVML_CLOCK_SM):
        return mhz
    if type == NVML_CLOCK_MEM:
        return board.mem_clock_mhz
    if type == NVML_CLOCK_VIDEO:
        return round(mhz * board.video_clock_ratio)
    raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)


def nvmlDeviceGetMaxClockInfo(handle: c_nvmlDevice_t, type: int) -> int:
    board = model_of(_device(handle))
    if type in (NVML_CLOCK_GRAPHICS, NVML_CLOCK_SM):
        return board.max_graphics_mhz
    if type == NVML_CLOCK_MEM:
        return board.mem_clock_mhz
    if type == NVML_CLOCK_VIDEO:
        return round(board.max_graphics_mhz * board.video_clock_ratio)
    raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)


def nvmlDeviceGetMemoryInfo(handle: c_nvmlDevice_t, version: int | None = None) -> c_nvmlMemory_t:
    _value(handle, "mem_total_bytes")
    dev = _value(handle, "mem_used_bytes")
    used = min(dev.mem_used_bytes, dev.mem_total_bytes)
    return c_nvmlMemory_t(dev.mem_total_bytes, dev.mem_total_bytes - used, used)


def nvmlDeviceGetPerformanceState(handle: c_nvmlDevice_t) -> int:
    return pstate(_device(handle))


def nvmlDeviceGetCurrentClocksEventReasons(handle: c_nvmlDevice_t) -> int:
    return reasons_mask(_device(handle))


def nvmlDeviceGetCurrentClocksThrottleReasons(handle: c_nvmlDevice_t) -> int:
    return reasons_mask(_device(handle))
