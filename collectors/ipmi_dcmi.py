"""Whole-system power from the BMC over IPMI DCMI: ``ipmitool`` and FreeIPMI ``ipmi-dcmi`` dialects.

Formats (docs/device-interfaces.md §5.3, quoted verbatim from the ceems collector)::

    ipmitool dcmi power reading                      ipmi-dcmi --get-system-power-statistics
        Instantaneous power reading:      50 Watts    Current Power                        : 164 Watts
        Minimum during sampling period:    6 Watts    Minimum Power over sampling duration : 48 watts
        Maximum during sampling period:  304 Watts    Maximum Power over sampling duration : 361 watts
        Average power reading over sample period: …   Average Power over sampling duration : 157 watts
        IPMI timestamp:           Thu Feb 15 08:36:01 2024   Time Stamp : 12/29/2023 - 08:58:00
        Sampling period:          00000001 Seconds.   Statistics reporting time period     : 1473439000 milliseconds
        Power reading state is:   activated           Power Measurement                    : Active

(``Watts``/``watts`` capitalisation mixed; state ``activated``/``Active`` or ``deactivated``/``Not
Available``.) Some BMCs print ``IPMI timestamp`` and ``Sampling period`` on one line (iLO 4 2.82, AMI:
tests/fixtures/real/ipmi-dcmi); both fields are still read. One ``host`` sample per poll,
``source=dcmi``, no zone, ``power_w`` = the instantaneous (current) reading. The reading is
**absent** (never 0) when the state is deactivated / not available, and, with ``zero_is_missing``
(default), when it is 0 W: §5.3 notes BMCs that answer 0 W when DCMI is advertised but not
populated, and a running host never draws 0 W. A poll with no reading gives no sample.

``deactivated_is_valid`` (off by default): OpenBMC answers every reading with the state
``deactivated``, a 1970 timestamp and a 0 s period while the watts are valid (openbmc/
openbmc-test-automation ``lib/ipmi_utils.py`` and ``ipmi/test_ipmi_sensor.robot`` show such output
and check it against the Redfish reading within a tolerance). On such BMCs set it to report those
readings; elsewhere a deactivated state means the BMC has no reading and nothing is reported. Output without the state line (a truncated answer) or without the power line, or with a
value outside DCMI's u16 watts, is a :class:`ParseError` naming the tool and the line expected; a
hung tool is killed after ``timeout_s`` (:class:`CollectorTimeout`).

Cost per poll: one process spawn (the emulated executables are Python processes; the real C
``ipmitool`` starts faster, and the BMC round trip adds to it), against a few file reads for RAPL
(see BENCHMARKS.md (Cost per collector poll); ``bench/bench_host_power.py`` compares the host-power paths). Poll DCMI every few
seconds rather than every second (§5.3: readings are ≈ 1 s granular anyway).
"""

from __future__ import annotations

import functools
import itertools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from kwatt.collectors.base import ParseError, run_tool
from kwatt.collectors.plugin import CollectorPlugin, Entries, Surface
from kwatt.wire.model import DeviceInfo, Sample

__all__ = [
    "PLUGIN",
    "Config",
    "DcmiReading",
    "IpmiDcmiCollector",
    "argv_for",
    "parse",
    "parse_freeipmi",
    "parse_ipmitool",
]

Dialect = Literal["ipmitool", "freeipmi"]
_U16_MAX = 0xFFFF


@dataclass(frozen=True)
class Config:
    """Options of an ``ipmi_dcmi`` collector entry."""

    #: Which tool's output to expect.
    dialect: Dialect = "ipmitool"
    #: The executable (a path, or a name looked up in PATH); default ``ipmitool`` / ``ipmi-dcmi``.
    tool: str | None = None
    #: Extra arguments before the command (e.g. ``-I open``); never put a password here.
    args: tuple[str, ...] = ()
    #: Kill the tool after this long, seconds.
    timeout_s: float = 5.0
    #: Treat a 0 W reading as "no reading" (§5.3: unpopulated DCMI answers 0 W).
    zero_is_missing: bool = True
    #: Report readings whose state is ``deactivated`` / ``Not Available``: for BMCs that flag valid
    #: readings that way (OpenBMC, see the module docstring). Off by default.
    deactivated_is_valid: bool = False

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s: must be > 0, got {self.timeout_s}")


def argv_for(config: Config) -> list[str]:
    """The command line the collector runs."""
    if config.dialect == "ipmitool":
        return [config.tool or "ipmitool", *config.args, "dcmi", "power", "reading"]
    return [config.tool or "ipmi-dcmi", *config.args, "--get-system-power-statistics"]


# ------------------------------------------------------------------------------------ pure parsing


@dataclass(frozen=True, slots=True)
class DcmiReading:
    """One DCMI Get Power Reading answer, in W and s; ``active`` is the reading state bit."""

    current_w: int
    minimum_w: int | None
    maximum_w: int | None
    average_w: int | None
    period_s: float | None
    active: bool


_TOOLS = {
    "ipmitool": "ipmitool dcmi power reading",
    "freeipmi": "ipmi-dcmi --get-system-power-statistics",
}
_WATTS = re.compile(r"^([0-9]{1,6}) [Ww]atts$")
_IPMITOOL_KEYS = {
    "Instantaneous power reading": "current",
    "Minimum during sampling period": "minimum",
    "Maximum during sampling period": "maximum",
    "Average power reading over sample period": "average",
    "IPMI timestamp": "timestamp",
    "Sampling period": "period",
    "Power reading state is": "state",
}
_FREEIPMI_KEYS = {
    "Current Power": "current",
    "Minimum Power over sampling duration": "minimum",
    "Maximum Power over sampling duration": "maximum",
    "Average Power over sampling duration": "average",
    "Time Stamp": "timestamp",
    "Statistics reporting time period": "period",
    "Power Measurement": "state",
}
_IPMITOOL_PERIOD = re.compile(r"^([0-9]{1,10}) Seconds\.?$")
_FREEIPMI_PERIOD = re.compile(r"^([0-9]{1,10}) milliseconds$")
_IPMITOOL_STATES = {"activated": True, "deactivated": False}
_FREEIPMI_STATES = {"Active": True, "Not Available": False}


def _split_fields(line: str, keys: dict[str, str]) -> list[str]:
    """One printed line → its ``key: value`` fields.

    ipmitool on some BMCs prints the timestamp without its line end, so ``Sampling period`` follows
    it on the same line (iLO 4 firmware 2.82, AMI on an ASUS ESC8000A-E12:
    tests/fixtures/real/ipmi-dcmi): a known key after two or more blanks starts a new field.
    """
    pattern = _field_starts(tuple(keys))
    starts = [m.start(1) for m in pattern.finditer(line)]
    if not starts:
        return [line]
    bounds = [0, *starts, len(line)]
    return [line[a:b] for a, b in itertools.pairwise(bounds)]


@functools.cache
def _field_starts(keys: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(k) for k in sorted(keys, key=len, reverse=True))
    return re.compile(rf"\S\s{{2,}}((?:{alternatives})\s*:)")


def _lines(text: str, keys: dict[str, str], tool: str) -> dict[str, str]:
    """``key: value`` lines → {our name: value}; unknown keys are ignored (newer tool versions)."""
    out: dict[str, str] = {}
    for raw in (field for line in text.splitlines() for field in _split_fields(line, keys)):
        line = raw.strip()
        if not line:
            continue
        key, sep, value = line.partition(":")
        if not sep:
            continue  # not a field (a banner or a warning of another tool version)
        name = keys.get(key.strip())
        if name is not None:
            out[name] = value.strip()
    return out


def _watts(values: dict[str, str], name: str, key: str, tool: str) -> int | None:
    text = values.get(name)
    if text is None:
        return None
    m = _WATTS.match(text)
    if m is None or int(m.group(1)) > _U16_MAX:
        raise ParseError(f"{tool}: {key}: expected '<0-65535> Watts', got {text[:80]!r}")
    return int(m.group(1))


def _reading(
    values: dict[str, str],
    keys: dict[str, str],
    tool: str,
    period: tuple[re.Pattern[str], float],
    states: dict[str, bool],
) -> DcmiReading:
    key_of = {v: k for k, v in keys.items()}
    for required in ("current", "state"):
        if required not in values:
            raise ParseError(
                f"{tool}: no {key_of[required]!r} line (expected the full power reading; "
                "truncated output?)"
            )
    state_text = values["state"]
    if state_text not in states:
        raise ParseError(
            f"{tool}: {key_of['state']}: expected one of {sorted(states)}, got {state_text[:80]!r}"
        )
    current = _watts(values, "current", key_of["current"], tool)
    assert current is not None
    period_s: float | None = None
    if "period" in values:
        m = period[0].match(values["period"])
        if m is None:
            raise ParseError(
                f"{tool}: {key_of['period']}: expected a period, got {values['period'][:80]!r}"
            )
        period_s = int(m.group(1)) * period[1]
    return DcmiReading(
        current_w=current,
        minimum_w=_watts(values, "minimum", key_of["minimum"], tool),
        maximum_w=_watts(values, "maximum", key_of["maximum"], tool),
        average_w=_watts(values, "average", key_of["average"], tool),
        period_s=period_s,
        active=states[state_text],
    )


def parse_ipmitool(text: str) -> DcmiReading:
    """``ipmitool dcmi power reading`` output (§5.3)."""
    tool = _TOOLS["ipmitool"]
    values = _lines(text, _IPMITOOL_KEYS, tool)
    return _reading(values, _IPMITOOL_KEYS, tool, (_IPMITOOL_PERIOD, 1.0), _IPMITOOL_STATES)


def parse_freeipmi(text: str) -> DcmiReading:
    """FreeIPMI ``ipmi-dcmi --get-system-power-statistics`` output (§5.3)."""
    tool = _TOOLS["freeipmi"]
    values = _lines(text, _FREEIPMI_KEYS, tool)
    return _reading(values, _FREEIPMI_KEYS, tool, (_FREEIPMI_PERIOD, 1e-3), _FREEIPMI_STATES)


_PARSERS: dict[str, Callable[[str], DcmiReading]] = {
    "ipmitool": parse_ipmitool,
    "freeipmi": parse_freeipmi,
}


def parse(
    raw: bytes,
    dialect: Dialect,
    ts_ns: int,
    *,
    zero_is_missing: bool = True,
    deactivated_is_valid: bool = False,
) -> list[Sample]:
    """Raw tool output → zero or one ``host`` sample (``source=dcmi``)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ParseError(f"{_TOOLS[dialect]}: output is not UTF-8 text ({e.reason})") from None
    reading = _PARSERS[dialect](text)
    if not (reading.active or deactivated_is_valid):
        return []
    if zero_is_missing and reading.current_w == 0:
        return []
    return [Sample.host(ts_ns, source="dcmi", power_w=float(reading.current_w))]


# ------------------------------------------------------------------------------------ I/O


class IpmiDcmiCollector:
    """Runs the DCMI tool once per poll; one ``host`` sample when the BMC has a reading."""

    def __init__(self, name: str, config: Config) -> None:
        self.name = name
        self.config = config
        self.argv = argv_for(config)

    async def inventory(self) -> list[DeviceInfo]:
        return []

    async def aclose(self) -> None:
        return None

    async def collect(self) -> list[Sample]:
        raw = await run_tool(self.argv, self.config.timeout_s, env={"LC_ALL": "C"})
        return parse(
            raw,
            self.config.dialect,
            time.time_ns(),
            zero_is_missing=self.config.zero_is_missing,
            deactivated_is_valid=self.config.deactivated_is_valid,
        )


def _detect(surface: Surface) -> Entries:
    """Doctor: an entry for ipmitool, else for FreeIPMI's ipmi-dcmi, when the node has one."""
    if tool := surface.tool("ipmitool"):
        return [{"type": "ipmi_dcmi", "name": "ipmi", "tool": tool}]
    if tool := surface.tool("ipmi-dcmi"):
        return [{"type": "ipmi_dcmi", "name": "ipmi", "dialect": "freeipmi", "tool": tool}]
    return []


#: This module's collector, as the registry (:mod:`kwatt.collectors`) finds it.
PLUGIN = CollectorPlugin(
    kind="ipmi_dcmi",
    config=Config,
    factory=IpmiDcmiCollector,
    detect=_detect,
    permission_fix=(
        'let the agent open /dev/ipmi0: udev KERNEL=="ipmi*", GROUP="kwatt", MODE="0660" '
        "(and load ipmi_devintf)"
    ),
)
