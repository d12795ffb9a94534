"""Vendor units → SI, once, in named functions (DESIGN §3).

Sources of the vendor units: docs/device-interfaces.md §8 (cross-vendor table): NVML reports mW and
mJ, hwmon µW / µJ / m°C (Linux Documentation/hwmon/sysfs-interface.rst), powercap ``energy_uj`` µJ,
furiosa-smi prints ``"38.40 W"``, ``"41.33°C"``, ``"2000 MHz"``, nvidia-smi prints MiB and ``[N/A]``.
Every function here has a unit test (tests/wire/test_units.py).
"""

from __future__ import annotations

import math
import re

__all__ = [
    "NOT_AVAILABLE",
    "QuantityError",
    "c_to_c",
    "kib_to_bytes",
    "kwh_to_j",
    "mhz_to_hz",
    "mib_to_bytes",
    "millic_to_c",
    "mj_to_j",
    "ms_to_s",
    "mw_to_w",
    "ns_to_s",
    "parse_percent",
    "parse_quantity",
    "parse_rbln_memory",
    "pct_to_ratio",
    "uj_to_j",
    "us_to_s",
    "uw_to_w",
]


class QuantityError(ValueError):
    """A vendor value that could not be read as a number in the expected unit."""


def mw_to_w(mw: float) -> float:
    """Milliwatts (NVML ``nvmlDeviceGetPowerUsage``, RNGD ``power_limit_mw``) to watts."""
    return mw / 1e3


def uw_to_w(uw: float) -> float:
    """Microwatts (hwmon ``power*_input`` / ``power*_average``) to watts."""
    return uw / 1e6


def mj_to_j(mj: float) -> float:
    """Millijoules (NVML ``nvmlDeviceGetTotalEnergyConsumption``, DCGM) to joules."""
    return mj / 1e3


def uj_to_j(uj: float) -> float:
    """Microjoules (powercap ``energy_uj``, hwmon ``energy*_input``) to joules."""
    return uj / 1e6


def kwh_to_j(kwh: float) -> float:
    """Kilowatt-hours (Redfish ``EnvironmentMetrics.EnergykWh.Reading``) to joules."""
    return kwh * 3.6e6


def mhz_to_hz(mhz: float) -> float:
    """Megahertz (NVML clocks, furiosa ``ne_clk_freq_info``) to hertz."""
    return mhz * 1e6


def millic_to_c(millic: float) -> float:
    """Milli-degrees Celsius (hwmon ``temp*_input``) to degrees Celsius."""
    return millic / 1e3


def c_to_c(c: float) -> float:
    """Degrees Celsius, already SI-compatible; named so every temperature path has a conversion."""
    return float(c)


def pct_to_ratio(pct: float) -> float:
    """Percent (0-100) to a ratio (0-1)."""
    return pct / 100.0


def mib_to_bytes(mib: float) -> int:
    """Mebibytes (nvidia-smi ``memory.used``) to bytes."""
    return round(mib * 1024 * 1024)


def kib_to_bytes(kib: float) -> int:
    """Kibibytes to bytes."""
    return round(kib * 1024)


def ns_to_s(ns: float) -> float:
    """Nanoseconds to seconds."""
    return ns / 1e9


def us_to_s(us: float) -> float:
    """Microseconds (Triton ``*_duration_us``) to seconds."""
    return us / 1e6


def ms_to_s(ms: float) -> float:
    """Milliseconds to seconds."""
    return ms / 1e3


#: Strings vendor tools print for "no value"; parse_quantity returns None for them (absent, not 0).
NOT_AVAILABLE = frozenset(
    {
        "",
        "-",
        "n/a",
        "[n/a]",
        "na",
        "[not supported]",
        "not supported",
        "unknown",
        "[unknown error]",
    }
)

# unit text → (SI unit, factor to SI)
_UNITS: dict[str, tuple[str, float]] = {
    "w": ("W", 1.0),
    "mw": ("W", 1e-3),
    "uw": ("W", 1e-6),
    "µw": ("W", 1e-6),
    "kw": ("W", 1e3),
    "j": ("J", 1.0),
    "mj": ("J", 1e-3),
    "uj": ("J", 1e-6),
    "µj": ("J", 1e-6),
    "kj": ("J", 1e3),
    "°c": ("degC", 1.0),
    "c": ("degC", 1.0),
    "degc": ("degC", 1.0),
    "hz": ("Hz", 1.0),
    "khz": ("Hz", 1e3),
    "mhz": ("Hz", 1e6),
    "ghz": ("Hz", 1e9),
    "%": ("1", 1e-2),
    "b": ("B", 1.0),
    "kib": ("B", 1024.0),
    "mib": ("B", 1024.0**2),
    "gib": ("B", 1024.0**3),
    "tib": ("B", 1024.0**4),
    "kb": ("B", 1e3),
    "mb": ("B", 1e6),
    "gb": ("B", 1e9),
    "s": ("s", 1.0),
    "ms": ("s", 1e-3),
    "us": ("s", 1e-6),
    "µs": ("s", 1e-6),
    "ns": ("s", 1e-9),
}

_QUANTITY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([^\d\s].*?)?\s*$")


def parse_quantity(text: str, expect: str) -> float | None:
    """Parse a vendor quantity such as ``"38.40 W"``, ``"41.33°C"``, ``"2000 MHz"`` or ``"80 %"``.

    ``expect`` is the SI unit wanted (``"W"``, ``"J"``, ``"degC"``, ``"Hz"``, ``"1"``, ``"B"``, ``"s"``);
    the value is returned scaled to it. A bare number is taken to be in ``expect`` already. Vendor
    "no value" spellings (``N/A``, ``[N/A]``, ``[Not Supported]``, ``-``) give ``None``. Anything else
    raises :class:`QuantityError` naming the text and the expected unit.
    """
    if text.strip().lower() in NOT_AVAILABLE:
        return None
    m = _QUANTITY.match(text)
    if m is None:
        raise QuantityError(f"{text!r} is not a number with a unit (expected {expect})")
    value = float(m.group(1))
    if not math.isfinite(value):
        raise QuantityError(f"{text!r} is not finite")
    unit = m.group(2)
    if unit is None:
        return value
    si = _UNITS.get(unit.strip().lower())
    if si is None or si[0] != expect:
        raise QuantityError(f"{text!r}: unit {unit!r} is not a unit of {expect}")
    return value * si[1]


_PERCENT = re.compile(r"^\s*(\d+\.?\d*|\.\d+)\s*%?\s*$")


def parse_percent(text: str) -> float | None:
    """A percentage as a tool prints it, bare (rbln-smi ``Util`` ``"98.7"``) or with ``%``, to 0-1.

    docs/device-interfaces.md §2.1: the text table's ``Util`` column is a bare number in percent;
    the JSON ``util`` string's format is UNCONFIRMED (all-smi accepts ``"85%"`` and bare numbers).
    "No value" spellings (``N/A``, ``-``) give ``None``; anything else (negative, other units) raises
    :class:`QuantityError`.
    """
    if text.strip().lower() in NOT_AVAILABLE:
        return None
    m = _PERCENT.match(text)
    if m is None:
        raise QuantityError(f"{text!r} is not a percentage")
    value = float(m.group(1))
    if not math.isfinite(value):
        raise QuantityError(f"{text!r} is not finite")
    return pct_to_ratio(value)


# binary multiples: rbln-smi prints "2.4GB / 15.7GiB" for one quantity (§2.1), so "GB" is taken as GiB
_RBLN_SIZE = re.compile(r"^\s*(\d+\.?\d*|\.\d+)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_RBLN_FACTORS = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_rbln_memory(text: str) -> int | None:
    """A Rebellions memory value to bytes: a decimal byte count or a size such as ``"15.7GiB"``.

    docs/device-interfaces.md §2.1: ``rbln-smi -j`` gives ``memory.used/total`` as "bytes encoded
    as decimal strings" (rblnlib-go); the text table prints ``"2.4GB / 15.7GiB"`` and ``"0.0B"``.
    CONFLICT noted there: all-smi reads ``"1024MB"`` as MiB. ASSUMED here: every unit is binary (``GB``
    = GiB), since the tool labels the used and total halves of one column ``GB`` and ``GiB``. A bare
    number must be a whole byte count. ``N/A``/``-`` give ``None``.
    """
    if text.strip().lower() in NOT_AVAILABLE:
        return None
    m = _RBLN_SIZE.match(text)
    if m is None:
        raise QuantityError(f"{text!r} is not a byte count or a size such as '15.7GiB'")
    number, unit = m.group(1), m.group(2)
    if unit is None:
        if not number.isdigit():
            raise QuantityError(f"{text!r}: a bare memory value must be a whole number of bytes")
        return int(number)
    value = float(number) * _RBLN_FACTORS[unit[0].lower()]
    if not math.isfinite(value):
        raise QuantityError(f"{text!r} is not finite")
    return round(value)
