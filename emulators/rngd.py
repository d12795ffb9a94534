"""An emulated FuriosaAI RNGD card: workload → utilization → clock, power, temperature, counters.

The model is deliberately simple (DESIGN §7 names the full one): a seeded workload gives a
utilization, power = idle + dynamic(util, clock), a first-order thermal lag turns power into
temperature, throttling lowers the clock at the power limit or the temperature limit, and the
per-PE cycle counters advance at the core clock. Time only moves when :meth:`RngdDevice.advance` is
called, so a device is deterministic for a given seed and sequence of step times.

:class:`RngdSysfs` writes the device as the kernel driver exposes it, exactly in the layout of
docs/device-interfaces.md §1.3 (RNGD) and §1.7 item 1, every file replaced atomically.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import shutil
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kwatt.emulators.state import DeviceState

__all__ = [
    "DRIVER_NAME",
    "PCI_DEVICE_ID",
    "PCI_VENDOR_ID",
    "PE_COUNT",
    "THROTTLE_APP_POWER_CAP",
    "THROTTLE_IDLE",
    "THROTTLE_THERMAL_SLOWDOWN",
    "WORKLOADS",
    "RngdDevice",
    "RngdIdentity",
    "RngdLayout",
    "RngdSysfs",
    "SysfsWriter",
    "Workload",
    "device_nodes",
    "numa_node",
    "occupied",
    "pci_links",
    "pe_temperatures",
    "rngd_dynamic_files",
    "rngd_layout",
    "rngd_static_files",
]

# --- published figures (docs/device-interfaces.md) -------------------------------------------

#: Processing elements (cores) per RNGD chip (§1.0).
PE_COUNT = 8
#: Board TDP, W (§1.7 item 6 and §7: "150 W (docs)"; a third-party 180 W is a noted conflict).
TDP_W = 150.0
#: Idle power range, W (§1.7 item 6: "RNGD idle ≈ 35–40 W (docs tables)"); each card draws its own.
IDLE_W_RANGE = (36.0, 40.0)
#: Default power limit, W (§1.3, §1.7 item 6 field notes: ``power_limit_mw`` 300000; 225000 capped).
DEFAULT_POWER_LIMIT_W = 300.0
#: Core clock under the Performance governor, MHz (§1.1: furiosa-smi shows ``2000 MHz``).
CLOCK_NOMINAL_MHZ = 2000.0
#: Lowest clock the power-cap loop goes to, MHz (assumption; §1.7 item 2 needs ≥ 450 MHz counters).
CLOCK_MIN_MHZ = 500.0
#: Clock under thermal slowdown, MHz (assumption; a power-capped card showed 1.7 GHz, §1.1 notes).
CLOCK_THERMAL_MHZ = 1500.0
#: Device DRAM, bytes (§1.1: ``status`` JSON ``total_size`` 51002736640 = 47.50 GiB).
DRAM_TOTAL_BYTES = 51_002_736_640
#: Part of each PE's DRAM share reported as ``shared_*`` in ``alloc_status`` (assumption; §1.3 only
#: says consumers sum dram + shared, so the emulator splits each PE's share into the two).
SHARED_PER_PE_BYTES = 1 << 30
#: Weights of the served model on each card, bytes (Llama 3.1 8B in BF16, ~16 GB; assumption).
WEIGHTS_BYTES = 16_060_522_496
#: KV-cache pool the runtime reserves when it loads the model, bytes (assumption; vLLM-style
#: engines reserve it up front, so device memory in use does not follow the load).
KV_CACHE_POOL_BYTES = 24 << 30
#: Generated tokens per second at full utilization (§7.1: Llama 3.1 8B, 1 card, 3,935.25 tok/s).
TOKENS_PER_S_FULL = 3935.25

# --- model constants (plausible, not published) ---------------------------------------------------

#: Exponent of utilization in the dynamic power term (§1.7 item 6 gives only idle and TDP).
POWER_UTIL_EXPONENT = 1.2
#: Standard deviation of the per-interval power fluctuation, W.
POWER_NOISE_W = 0.4
#: Junction-to-ambient thermal resistance, K/W: 150 W at 30 °C ambient settles near 72 °C.
THERMAL_RESISTANCE_K_PER_W = 0.28
#: Thermal time constant, s.
THERMAL_TAU_S = 20.0
#: Peak temperature at which the firmware slows the clock, °C.
THERMAL_SLOWDOWN_C = 95.0
#: Per-PE spread of utilization around the card's, ratio.
PE_UTIL_SPREAD = 0.02

# --- throttle_reason bitmask (§1.3, C header + Python names) --------------------------------------
THROTTLE_IDLE = 1 << 0
THROTTLE_THERMAL_SLOWDOWN = 1 << 1
THROTTLE_APP_POWER_CAP = 1 << 2

# --- versions as the 2026 stack prints them (§1.1: "X.Y.Z, hash") ---------------------------------
FIRMWARE_VERSION = "1.7.0, 4dfed1852e7b"
DRIVER_VERSION = "2026.3.1, 9c0e4f2"
#: Major device number of the rngd_mgmt char devices (§1.3 fixture: ``dev`` = ``235:0``).
DEV_MAJOR = 235
#: Major number of the ``/dev/rngd/npu*`` nodes (assumed; furiosa-smi only lists them).
DEV_NODE_MAJOR = 236
#: PCI IDs of an RNGD: vendor 0x1ed2 (FuriosaAI, pci.ids), device 0x0001, class 0x1200
#: (processing accelerator), from ``pci_type="1200 [1ed2:0001] [1ed2:0001] 01"`` in
#: furiosa-ai/furiosa-smi-go pkg/hwloc/testdata/rngd_8cards.xml (commit f8a66cc1).
PCI_VENDOR_ID = 0x1ED2
PCI_DEVICE_ID = 0x0001
PCI_CLASS = 0x120000
#: The kernel driver's name (``furiosa_rngd/bind``, ``furiosa_rngd/unbind`` in the strings of the
#: libfuriosa_smi bundled with furiosa-smi-py 2026.1.2).
DRIVER_NAME = "furiosa_rngd"
#: First PCI bus of the emulated cards: card N sits at 0000:{0x6d+N}:00.0 (§1.3 Warboy fixture BDF).
FIRST_PCI_BUS = 0x6D
#: Index of the first card's hwmon directory (hwmon0/1 are usually the host's own sensors).
FIRST_HWMON_INDEX = 2

WORKLOADS = ("idle", "steady", "bursty", "ramp")


class Workload:
    """Requested utilization of one card over time, from a seeded generator.

    ``idle``: 0. ``steady``: a per-card level in 0.6–0.8 with small fluctuations. ``bursty``: on/off
    periods of exponentially distributed length (mean 5 s at ~0.95, mean 8 s at ~0.05). ``ramp``: a
    sawtooth from 0 to 1 over 120 s. :meth:`util` must be called with non-decreasing times.
    """

    RAMP_PERIOD_S = 120.0
    BURST_ON_MEAN_S = 5.0
    BURST_OFF_MEAN_S = 8.0

    def __init__(self, kind: str, rng: random.Random) -> None:
        if kind not in WORKLOADS:
            raise ValueError(f"workload {kind!r}: expected one of {', '.join(WORKLOADS)}")
        self.kind = kind
        self._rng = rng
        self._level = rng.uniform(0.6, 0.8)
        self._on = False
        self._switch_at_s = rng.expovariate(1.0 / self.BURST_OFF_MEAN_S)

    def util(self, t_s: float) -> float:
        """Utilization requested at ``t_s`` seconds after the node's origin, in [0, 1]."""
        if self.kind == "idle":
            return 0.0
        if self.kind == "steady":
            return _clip(self._level + self._rng.gauss(0.0, 0.03))
        if self.kind == "ramp":
            return (t_s % self.RAMP_PERIOD_S) / self.RAMP_PERIOD_S
        while t_s >= self._switch_at_s:  # bursty
            self._on = not self._on
            mean_s = self.BURST_ON_MEAN_S if self._on else self.BURST_OFF_MEAN_S
            self._switch_at_s += self._rng.expovariate(1.0 / mean_s)
        base = 0.95 if self._on else 0.05
        return _clip(base + self._rng.gauss(0.0, 0.02))


@dataclass(frozen=True, slots=True)
class RngdIdentity:
    """What a card says about itself in its static sysfs files; stable for a seed and index."""

    index: int
    uuid: str
    sn: str
    bdf: str
    dev: str
    hwmon_index: int

    @classmethod
    def derive(cls, seed: int, index: int) -> RngdIdentity:
        digest = hashlib.sha256(f"kwatt-rngd:{seed}:{index}".encode()).digest()
        return cls(
            index=index,
            uuid=str(uuid.UUID(bytes=digest[:16], version=4)).upper(),
            sn=f"RNGD{int.from_bytes(digest[16:20], 'big') % 1_000_000:06d}",  # §1.1: RNGD000206
            bdf=f"0000:{FIRST_PCI_BUS + index:02x}:00.0",
            dev=f"{DEV_MAJOR}:{index}",
            hwmon_index=FIRST_HWMON_INDEX + index,
        )


class RngdDevice:
    """The physical state of one RNGD card, advanced interval by interval.

    Over one interval the utilization, clock and power are constant, so the energy integral is
    exact: ``energy_j += power_w * dt_s``. Counters are kept as floats and written floored, which
    keeps ``TaskCycleCount <= CycleCount`` and both monotonic until :meth:`reset`.
    """

    def __init__(
        self, index: int, *, seed: int = 0, workload: str = "steady", ambient_c: float | None = None
    ) -> None:
        self.identity = RngdIdentity.derive(seed, index)
        self._rng = random.Random(f"kwatt-rngd-physics:{seed}:{index}")
        self.workload = Workload(workload, random.Random(f"kwatt-rngd-workload:{seed}:{index}"))
        self.idle_w = self._rng.uniform(*IDLE_W_RANGE)
        self.ambient_c = self._rng.uniform(28.0, 32.0) if ambient_c is None else ambient_c
        self._pe_hotspot_k = [self._rng.uniform(0.0, 4.0) for _ in range(PE_COUNT)]
        #: Enforced power limit, W; settable (written to ``power_limit_mw`` on the next write).
        self.power_limit_w = DEFAULT_POWER_LIMIT_W
        self.governor = "performance"
        # state over the last interval
        self.util_ratio = 0.0
        self.pe_util = [0.0] * PE_COUNT
        self.clock_mhz = CLOCK_NOMINAL_MHZ
        self.power_w = self.idle_w
        self.throttle_reason = THROTTLE_IDLE
        self.energy_j = 0.0
        self._die_c = self.ambient_c + THERMAL_RESISTANCE_K_PER_W * self.idle_w
        self.pe_temp_c = [self._die_c] * PE_COUNT
        self.cycles = [0.0] * PE_COUNT
        self.busy_cycles = [0.0] * PE_COUNT
        self.uptime_s = 0.0

    @property
    def peak_temp_c(self) -> float:
        """The hottest sensor on the die (hwmon label ``PEAK``)."""
        return max(self.pe_temp_c)

    @property
    def clock_ratio(self) -> float:
        """Current clock as a share of the nominal one (throughput scales with it)."""
        return self.clock_mhz / CLOCK_NOMINAL_MHZ

    def mem_used_bytes_per_pe(self) -> int:
        """DRAM in use on each PE: the served model's weights and its reserved KV-cache pool."""
        return (WEIGHTS_BYTES + KV_CACHE_POOL_BYTES) // PE_COUNT

    def advance(self, t_mid_s: float, dt_s: float) -> float:
        """Run the ``dt_s`` seconds centred on ``t_mid_s``; return the tokens they produced."""
        if dt_s < 0:
            raise ValueError(f"dt_s must be >= 0, got {dt_s}")
        if dt_s == 0:
            return 0.0
        requested = self.workload.util(t_mid_s)
        self.pe_util = [
            _clip(requested + self._rng.gauss(0.0, PE_UTIL_SPREAD)) if requested > 0 else 0.0
            for _ in range(PE_COUNT)
        ]
        self.util_ratio = sum(self.pe_util) / PE_COUNT
        self._set_clock_and_power()
        self.energy_j += self.power_w * dt_s
        # first-order thermal lag, exact for constant power over the interval
        steady_c = self.ambient_c + THERMAL_RESISTANCE_K_PER_W * self.power_w
        self._die_c = steady_c + (self._die_c - steady_c) * math.exp(-dt_s / THERMAL_TAU_S)
        self.pe_temp_c = [
            self._die_c + hot * u for hot, u in zip(self._pe_hotspot_k, self.pe_util, strict=True)
        ]
        cycles = self.clock_mhz * 1e6 * dt_s
        for m in range(PE_COUNT):
            self.cycles[m] += cycles
            self.busy_cycles[m] += cycles * self.pe_util[m]
        self.uptime_s += dt_s
        return TOKENS_PER_S_FULL * self.util_ratio * self.clock_ratio * dt_s

    def _set_clock_and_power(self) -> None:
        """Clock and power for the current utilization, throttled at the temperature or power limit.

        Power = idle + (TDP − idle) × util^1.2 × clock/nominal: idle and TDP from
        docs/device-interfaces.md §1.7 item 6 (idle ≈ 35–40 W, TDP 150 W); the exponent and the
        linear clock term are modelling choices.
        """
        reason = 0
        clock = CLOCK_NOMINAL_MHZ
        if self.peak_temp_c >= THERMAL_SLOWDOWN_C:
            clock = CLOCK_THERMAL_MHZ
            reason |= THROTTLE_THERMAL_SLOWDOWN
        dynamic_w = (TDP_W - self.idle_w) * self.util_ratio**POWER_UTIL_EXPONENT
        power = self.idle_w + dynamic_w * clock / CLOCK_NOMINAL_MHZ
        if power > self.power_limit_w and dynamic_w > 0:
            capped = CLOCK_NOMINAL_MHZ * max(self.power_limit_w - self.idle_w, 0.0) / dynamic_w
            clock = max(CLOCK_MIN_MHZ, min(clock, capped))
            reason |= THROTTLE_APP_POWER_CAP
            power = self.idle_w + dynamic_w * clock / CLOCK_NOMINAL_MHZ
        if self.util_ratio < 0.01:
            reason |= THROTTLE_IDLE
        self.clock_mhz = clock
        self.throttle_reason = reason
        self.power_w = max(0.0, power + self._rng.gauss(0.0, POWER_NOISE_W))

    def state(self, t_s: float | None = None) -> DeviceState:
        """This card as a :class:`~kwatt.emulators.state.DeviceState` (what the surfaces render)."""
        ident = self.identity
        return DeviceState(
            index=ident.index,
            model="rngd",
            vendor="furiosa",
            serial=ident.sn,
            uuid=ident.uuid,
            bus_id=ident.bdf,
            t_s=self.uptime_s if t_s is None else t_s,
            util_ratio=self.util_ratio,
            power_w=self.power_w,
            energy_j=self.energy_j,
            temp_c=self.peak_temp_c,
            clock_hz=self.clock_mhz * 1e6,
            mem_used_bytes=self.mem_used_bytes_per_pe() * PE_COUNT,
            mem_total_bytes=DRAM_TOTAL_BYTES,
            power_limit_w=self.power_limit_w,
            throttle_thermal=bool(self.throttle_reason & THROTTLE_THERMAL_SLOWDOWN),
            throttle_power=bool(self.throttle_reason & THROTTLE_APP_POWER_CAP),
            governor=self.governor,
            ambient_c=self.ambient_c,
            core_util=tuple(self.pe_util),
            cycles=self.cycles[0],
            busy_cycles=sum(self.busy_cycles) / PE_COUNT,
        )

    def reset(self) -> None:
        """A device reset: the PE counters and the heartbeat start again from 0."""
        self.cycles = [0.0] * PE_COUNT
        self.busy_cycles = [0.0] * PE_COUNT
        self.uptime_s = 0.0


class SysfsWriter:
    """Writes small text files under a root, each one atomically (temp file + ``os.replace``).

    A file whose content has not changed since the last write is left alone. Not thread-safe: one
    writer at a time (the node awaits each batch before it computes the next).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._last: dict[Path, str] = {}
        self._dirs: set[Path] = set()

    def write(self, path: Path, text: str) -> None:
        if self._last.get(path) == text:
            return
        if path.parent not in self._dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._dirs.add(path.parent)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        self._last[path] = text

    def write_many(self, files: Iterable[tuple[Path, str]]) -> None:
        for path, text in files:
            self.write(path, text)

    def remove(self, path: Path) -> None:
        """Remove one file (a sensor that became unavailable); no error if it is not there."""
        path.unlink(missing_ok=True)
        self._last.pop(path, None)

    def remove_tree(self, path: Path) -> None:
        """Remove a directory tree or a symlink (a device that vanished), and forget its files."""
        if path.is_symlink():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)
        self._last = {p: t for p, t in self._last.items() if not p.is_relative_to(path)}
        self._dirs = {d for d in self._dirs if not d.is_relative_to(path)}

    def symlink(self, link: Path, target: Path) -> None:
        """Make ``link`` point at ``target`` with a relative path, as sysfs does."""
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            return
        link.symlink_to(os.path.relpath(target, link.parent), target_is_directory=True)


class RngdSysfs:
    """The files of one card under ``ROOT/sys`` (docs/device-interfaces.md §1.3, RNGD).

    With ``symlinks`` the real directories live under ``sys/devices/...`` and
    ``sys/class/rngd_mgmt``, ``sys/bus/pci/devices`` and ``sys/class/hwmon`` hold relative symlinks
    to them, as on a real host; without, the class and bus paths are plain directories.
    """

    def __init__(self, writer: SysfsWriter, device: RngdDevice, *, symlinks: bool = True) -> None:
        self._w = writer
        self.device = device
        ident = device.identity
        sysfs = writer.root / "sys"
        n = ident.index
        mgmt_name = f"rngd!npu{n}mgmt"
        pe_names = [f"rngd!npu{n}pe{m}" for m in range(PE_COUNT)]
        class_dir = sysfs / "class" / "rngd_mgmt"
        pci_link = sysfs / "bus" / "pci" / "devices" / ident.bdf
        hwmon_name = f"hwmon{ident.hwmon_index}"
        if symlinks:
            virtual = sysfs / "devices" / "virtual" / "rngd_mgmt"
            self.mgmt_dir = virtual / mgmt_name
            self.pe_dirs = [virtual / name for name in pe_names]
            pci_dir = sysfs / "devices" / "pci0000:00" / ident.bdf
            self.hwmon_dir = pci_dir / "hwmon" / hwmon_name
            self._links = [(class_dir / mgmt_name, self.mgmt_dir), (pci_link, pci_dir)]
            self._links += [
                (class_dir / name, d) for name, d in zip(pe_names, self.pe_dirs, strict=True)
            ]
            self._links += pci_links(sysfs, pci_dir, self.hwmon_dir)
            self._links.append((sysfs / "class" / "hwmon" / hwmon_name, self.hwmon_dir))
            self.pci_dir: Path | None = pci_dir
        else:
            self.mgmt_dir = class_dir / mgmt_name
            self.pe_dirs = [class_dir / name for name in pe_names]
            self.hwmon_dir = pci_link / "hwmon" / hwmon_name
            self._links = []
            self.pci_dir = None

    def write_static(self) -> None:
        """Identity and labels, and the symlinks: written once, at start."""
        self._w.write_many(self.static_files())
        for link, target in self._links:
            target.mkdir(parents=True, exist_ok=True)
            self._w.symlink(link, target)

    def write_dynamic(self) -> None:
        self._w.write_many(self.dynamic_files())

    def static_files(self) -> list[tuple[Path, str]]:
        return rngd_static_files(self._layout(), self.device.state(), FIRMWARE_VERSION)

    def dynamic_files(self) -> list[tuple[Path, str]]:
        """Everything that changes with time, in the units of the kernel ABI (µW, m°C, MHz)."""
        d = self.device
        files, _ = rngd_dynamic_files(
            self._layout(),
            d.state(),
            d.cycles[0],
            d.busy_cycles,
            pe_temps=d.pe_temp_c,
            heartbeat=int(d.uptime_s),
        )
        return files

    def _layout(self) -> RngdLayout:
        return RngdLayout(self.mgmt_dir, tuple(self.pe_dirs), self.hwmon_dir, (), (), self.pci_dir)


def _clip(x: float, lo: float = 0.0, hi: float = 1.0) -> float:
    return min(hi, max(lo, x))


# ------------------------------------------------------------------ rendering from a DeviceState
#
# The generalized node (kwatt.emulators.node.Node) computes the physics in kwatt.emulators.physics
# and hands each surface a DeviceState; the functions below render an RNGD from it, in exactly the
# layout and units of RngdSysfs above (docs/device-interfaces.md §1.3, §1.7 item 1). Per-PE
# quantities the state does not carry are derived: PE temperatures sit below PEAK by a fixed per-PE
# offset (the hottest PE = PEAK), and the per-PE busy cycles are integrated by the caller from
# ``core_util`` (see kwatt.emulators.furiosa_surface).


@dataclass(frozen=True, slots=True)
class RngdLayout:
    """Where one RNGD's files live for enumeration index ``index``."""

    mgmt_dir: Path
    pe_dirs: tuple[Path, ...]
    hwmon_dir: Path
    links: tuple[tuple[Path, Path], ...]  # (symlink, real directory)
    owned: tuple[Path, ...]  # real directories removed when the device vanishes
    #: the PCI function's directory (``vendor``, ``device``, ``numa_node``, ``driver``); None in
    #: the legacy flat layout without symlinks
    pci_dir: Path | None = None


def rngd_layout(root: Path, index: int, bdf: str) -> RngdLayout:
    sysfs = root / "sys"
    virtual = sysfs / "devices" / "virtual" / "rngd_mgmt"
    class_dir = sysfs / "class" / "rngd_mgmt"
    mgmt_name = f"rngd!npu{index}mgmt"
    pe_names = [f"rngd!npu{index}pe{m}" for m in range(PE_COUNT)]
    pci_dir = sysfs / "devices" / "pci0000:00" / bdf
    hwmon_name = f"hwmon{FIRST_HWMON_INDEX + index}"
    mgmt = virtual / mgmt_name
    pes = tuple(virtual / n for n in pe_names)
    hwmon = pci_dir / "hwmon" / hwmon_name
    links = [(class_dir / mgmt_name, mgmt), (sysfs / "bus" / "pci" / "devices" / bdf, pci_dir)]
    links += [(class_dir / n, d) for n, d in zip(pe_names, pes, strict=True)]
    links += pci_links(sysfs, pci_dir, hwmon)
    links.append((sysfs / "class" / "hwmon" / hwmon_name, hwmon))
    return RngdLayout(mgmt, pes, hwmon, tuple(links), (mgmt, *pes, pci_dir), pci_dir)


def pci_links(sysfs: Path, pci_dir: Path, hwmon: Path) -> list[tuple[Path, Path]]:
    """The links a bound RNGD's PCI function has: ``driver`` (furiosa-smi lists a card without it
    only as disabled) and the hwmon directory's ``device`` link back to the PCI function (every
    real hwmon directory has it: Linux Documentation/ABI/testing/sysfs-class-hwmon)."""
    return [
        (pci_dir / "driver", sysfs / "bus" / "pci" / "drivers" / DRIVER_NAME),
        (hwmon / "device", pci_dir),
    ]


def numa_node(index: int) -> int:
    """NUMA node of card ``index`` (assumed: four cards per socket, as the two-socket 8-card host
    of furiosa-ai/furiosa-smi-go pkg/hwloc/testdata/rngd_8cards.xml)."""
    return index // 4 % 2


def rngd_static_files(lay: RngdLayout, state: DeviceState, firmware: str) -> list[tuple[Path, str]]:
    mgmt, hwmon = lay.mgmt_dir, lay.hwmon_dir
    files = [
        (mgmt / "platform_type", "FuriosaAI\n"),
        (mgmt / "device_type", "RNGD\n"),
        (mgmt / "busname", f"{state.bus_id}\n"),
        (mgmt / "dev", f"{DEV_MAJOR}:{state.index}\n"),
        (mgmt / "device_uuid", f"{state.uuid.upper()}\n"),
        (mgmt / "device_sn", f"{state.serial}\n"),
        (mgmt / "soc_id", f"00000000-{state.uuid[:8].upper()}\n"),
        (mgmt / "board_revision", "BD_REV_INIT\n"),
        (mgmt / "fw_version", f"{firmware}\n"),
        (mgmt / "version", f"{DRIVER_VERSION}\n"),
        (mgmt / "cur_pe_ids", "0,1,2,3,4,5,6,7,0-1,2-3,4-5,6-7,0-3,4-7\n"),
        (hwmon / "name", f"rngd{state.index}\n"),
        (hwmon / "power1_label", "RMS_TOTAL\n"),
        (hwmon / "temp1_label", "PEAK\n"),
    ]
    files += [(hwmon / f"temp{m + 2}_label", f"NPU_PE{m}\n") for m in range(PE_COUNT)]
    files.append((hwmon / f"temp{PE_COUNT + 2}_label", "AMBIENT\n"))
    if lay.pci_dir is not None:
        pci = lay.pci_dir
        files += [
            (pci / "vendor", f"0x{PCI_VENDOR_ID:04x}\n"),
            (pci / "device", f"0x{PCI_DEVICE_ID:04x}\n"),
            (pci / "subsystem_vendor", f"0x{PCI_VENDOR_ID:04x}\n"),
            (pci / "subsystem_device", f"0x{PCI_DEVICE_ID:04x}\n"),
            (pci / "class", f"0x{PCI_CLASS:06x}\n"),
            (pci / "revision", "0x01\n"),
            (pci / "numa_node", f"{numa_node(state.index)}\n"),
        ]
    return files


def device_nodes(index: int) -> list[tuple[str, int, int]]:
    """The character devices the rngd driver creates for card ``index`` under ``/dev/rngd/``:
    ``(name, major, minor)`` for ``npuN``, ``npuNmgmt`` and one ``npuNpe…`` per PE and fused PE
    range of ``cur_pe_ids`` (the names furiosa-smi 2026.4 matches with
    ``^npu(\\d+)((?:pe)(\\d+)(-(\\d+))?)?$``; it lists them and never opens them). Minor numbers
    are assumed."""
    ranges = [str(m) for m in range(PE_COUNT)] + ["0-1", "2-3", "4-5", "6-7", "0-3", "4-7"]
    base = index * (len(ranges) + 1)
    nodes = [(f"npu{index}", DEV_NODE_MAJOR, base), (f"npu{index}mgmt", DEV_MAJOR, index)]
    nodes += [(f"npu{index}pe{r}", DEV_NODE_MAJOR, base + 1 + i) for i, r in enumerate(ranges)]
    return nodes


def occupied(state: DeviceState) -> bool:
    """Whether the card's PEs are held by a runtime (``pe_occupancy`` 1): the emulated runtimes
    open a whole card, and a card holds device memory only while a runtime has it open."""
    return state.mem_used_bytes > 0


def pe_temperatures(state: DeviceState, count: int) -> list[float]:
    """Per-PE temperatures: PEAK (``temp_c``) minus a per-device, per-PE offset of 0–4 K."""
    digest = hashlib.sha256(f"kwatt-pe-temps:{state.uuid}".encode()).digest()
    offsets = [digest[m] / 255 * 4.0 for m in range(count)]
    low = min(offsets)
    return [state.temp_c - (o - low) for o in offsets]


def _milli(value: float) -> str:
    """An integer sysfs value; NaN (a fault) is written as the kernel never would: ``nan``."""
    return "nan" if math.isnan(value) else str(round(value))


def rngd_dynamic_files(
    lay: RngdLayout,
    state: DeviceState,
    cycles: float,
    busy: Sequence[float],
    *,
    pe_temps: Sequence[float] | None = None,
    heartbeat: int | None = None,
) -> tuple[list[tuple[Path, str]], list[Path]]:
    """Files to write, and files to remove (a sensor the fault made not available).

    Formats are what FuriosaAI's own library (furiosa-smi 2026.4.0 / furiosa-smi-py 2026.1.2) reads
    (docs/emulators.md, "FuriosaAI: what the vendor's libraries read"): ``device_state`` 0 = alive;
    ``npu_clocks`` one integer per PE, in Hz; ``pe_occupancy`` one 0/1 per PE; per PE ``metrics``
    as ``Key: 0x<hex>`` (the library parses the values as hexadecimal); hwmon ``power1_max`` µW
    (the power limit the library reports). ``pe_temps`` (default: derived by
    :func:`pe_temperatures`) and ``heartbeat`` (default: whole seconds of ``t_s``) let a caller that
    models them itself pass its own.
    """
    mgmt, hwmon = lay.mgmt_dir, lay.hwmon_dir
    clock_text = _milli(state.clock_hz)
    reason = THROTTLE_IDLE if state.util_ratio < 0.01 else 0
    reason |= THROTTLE_THERMAL_SLOWDOWN if state.throttle_thermal else 0
    reason |= THROTTLE_APP_POWER_CAP if state.throttle_power else 0
    busy_pes = occupied(state)
    files = [
        (mgmt / "device_state", "0\n"),
        (mgmt / "heartbeat", f"{(int(state.t_s) if heartbeat is None else heartbeat) % 2**32}\n"),
        (mgmt / "npu_governor", f"{state.governor}\n"),
        (mgmt / "power_limit_mw", f"{_milli(state.power_limit_w * 1000)}\n"),
        (mgmt / "throttle_reason", f"0x{reason:x}\n"),
        (mgmt / "npu_clocks", f"{clock_text}\n" * PE_COUNT),
        (mgmt / "pe_occupancy", f"{int(busy_pes)}\n" * PE_COUNT),
    ]
    per_pe = state.mem_used_bytes // PE_COUNT
    shared_used = min(per_pe, SHARED_PER_PE_BYTES) // 2
    dram_capacity = state.mem_total_bytes // PE_COUNT - SHARED_PER_PE_BYTES
    alloc = (
        f"dram_capacity: 0x{dram_capacity:x}\n"
        f"dram_usage: 0x{per_pe - shared_used:x}\n"
        f"shared_capacity: 0x{SHARED_PER_PE_BYTES:x}\n"
        f"shared_usage: 0x{shared_used:x}\n"
    )
    for m, pe_dir in enumerate(lay.pe_dirs):
        task = min(math.floor(busy[m]), math.floor(cycles))
        files.append(
            (
                pe_dir / "metrics",
                f"CycleCount: 0x{math.floor(cycles):x}\nTaskCycleCount: 0x{task:x}\n",
            )
        )
        files.append((pe_dir / "alloc_status", alloc))
    removed: list[Path] = []
    sensors = [(hwmon / "power1_average", state.power_w * 1e6, "power_w")]
    sensors.append((hwmon / "power1_max", state.power_limit_w * 1e6, "power_limit_w"))
    temps = list(pe_temperatures(state, PE_COUNT) if pe_temps is None else pe_temps)
    sensors.append((hwmon / "temp1_input", state.temp_c * 1000, "temp_c"))
    sensors += [(hwmon / f"temp{m + 2}_input", t * 1000, "temp_c") for m, t in enumerate(temps)]
    sensors.append((hwmon / f"temp{PE_COUNT + 2}_input", state.ambient_c * 1000, "ambient_c"))
    for path, value, name in sensors:
        if name in state.na_fields:
            removed.append(path)
        else:
            files.append((path, f"{_milli(value)}\n"))
    return files, removed
