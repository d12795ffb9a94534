"""Chassis power and energy from a BMC's Redfish service: ``EnvironmentMetrics`` and
``PowerSubsystem`` (the current schemas), ``Power`` (deprecated) as the fallback.

Resources (docs/device-interfaces.md §5.4; DMTF's public-rackmount1 mockup,
tests/fixtures/real/redfish, shows the layout):

* ``GET /redfish/v1/Chassis/{id}/EnvironmentMetrics`` (``#EnvironmentMetrics.v1_x_y.
  EnvironmentMetrics``): ``PowerWatts.Reading`` (W), ``EnergykWh.Reading`` (kWh) or
  ``EnergyJoules.Reading`` (J).
* ``GET /redfish/v1/Chassis/{id}/PowerSubsystem`` (``#PowerSubsystem.v1_x_y.PowerSubsystem``): no
  reading of its own; its ``PowerSupplies`` collection lists the supplies, each
  (``#PowerSupply.v1_x_y.PowerSupply``) links its ``Metrics`` (``#PowerSupplyMetrics.v1_x_y.
  PowerSupplyMetrics``): ``InputPowerWatts.Reading`` (W) and ``EnergykWh.Reading`` (kWh). The chassis
  input is the sum over the supplies; a sum is only reported when every supply publishes metrics
  with that value (a missing one would make it too low: DMTF's mockup has a supply without
  metrics, so it gives no sum).
* ``GET /redfish/v1/Chassis/{id}/Power`` (``#Power.v1_x_y.Power``, deprecated in favour of the two
  above): ``PowerControl[].PowerConsumedWatts`` (W; the first entry with a reading is the chassis
  total).

Every document's ``@odata.type`` is checked exactly (``#<Type>.v<major>_<minor>_<errata>.<Type>``):
a ``PowerSupply`` or ``PowerSubsystem`` document is not a ``Power`` resource.

``resource: auto`` (default) reads ``EnvironmentMetrics`` first; when it lacks power or energy, the
``PowerSubsystem`` supplies fill in what they have; when power is still missing, ``Power`` gives it.
A 404 skips a resource. The resources that gave the reading are remembered (from then on a poll reads
only those; a 404 later probes again). ``resource: environment``, ``subsystem`` or ``power`` reads
that one only. One ``host`` sample per poll, ``source=redfish``, ``zone`` = the chassis id, with
``power_w`` and/or ``energy_j``; a ``null`` or missing ``Reading`` is absent, never 0.

Security: HTTPS is verified against ``ca_file`` (or the system store); ``verify: false`` is an
explicit opt-out. The password is read from ``password_file`` (first line) at start and never logged
or put into an error message; a 401/403 raises :class:`CollectorError` naming the user and file.
Every request has ``timeout_s`` (connect and each read); a BMC that does not answer in time raises
:class:`CollectorTimeout`.

Cost per poll: one GET per resource over a new connection (HTTPS costs a TLS handshake per poll);
the ``PowerSubsystem`` path costs one GET per supply (see BENCHMARKS.md (Cost per collector poll); ``bench/bench_host_power.py``). A real
BMC's own answer time adds to that.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import re
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import quote, urlsplit

from kwatt.collectors.base import CollectorError, CollectorTimeout, CollectorUnavailable, ParseError
from kwatt.collectors.plugin import CollectorPlugin, Entries, Surface
from kwatt.wire.model import DeviceInfo, Sample, validate_tag_value
from kwatt.wire.units import kwh_to_j

__all__ = [
    "PLUGIN",
    "Config",
    "RedfishCollector",
    "RedfishReading",
    "parse_environment_metrics",
    "parse_member_links",
    "parse_power",
    "parse_power_subsystem",
    "parse_power_supply",
    "parse_power_supply_metrics",
]

Resource = Literal["environment", "subsystem", "power"]

log = logging.getLogger(__name__)

#: Largest body read from a Redfish resource.
MAX_BODY_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Config:
    """Options of a ``redfish`` collector entry."""

    #: The BMC's base URL, ``https://bmc.example:443`` (a path, if any, is ignored).
    url: str
    #: The chassis whose power is read (``/redfish/v1/Chassis/{chassis}``); also the ``zone`` tag.
    chassis: str = "1"
    #: Which resource to read (``auto``: see the module docstring).
    resource: Literal["auto", "environment", "subsystem", "power"] = "auto"
    #: CA bundle (PEM) that signed the BMC's certificate; None = the system store.
    ca_file: str | None = None
    #: Verify the BMC's certificate and host name. Turning this off is insecure.
    verify: bool = True
    #: Basic-auth user; with ``password_file`` (first line of the file is the password).
    username: str | None = None
    password_file: str | None = None
    #: Timeout of the connection and of each read, seconds.
    timeout_s: float = 5.0

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"url: expected https://host[:port], got {self.url!r}")
        validate_tag_value("zone", self.chassis)
        if (self.username is None) != (self.password_file is None):
            raise ValueError("username and password_file: give both or neither")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s: must be > 0, got {self.timeout_s}")


# ------------------------------------------------------------------------------------ pure parsing


@dataclass(frozen=True, slots=True)
class RedfishReading:
    """What one resource said, in SI units; None = not reported."""

    power_w: float | None
    energy_j: float | None


def _document(body: bytes, source: str, odata_type: str) -> dict[str, object]:
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ParseError(f"{source}: expected a JSON {odata_type} resource ({e})") from None
    if not isinstance(doc, dict):
        raise ParseError(f"{source}: expected a JSON object, got {type(doc).__name__}")
    kind = doc.get("@odata.type")
    if kind is not None and (not isinstance(kind, str) or not _type_matches(kind, odata_type)):
        raise ParseError(
            f"{source}: expected @odata.type #{odata_type}.v<major>_<minor>_<errata>.{odata_type}, "
            f"got {kind!r:.80}"
        )
    return doc


def _type_matches(kind: str, odata_type: str) -> bool:
    """``#Power.v1_7_1.Power`` is a Power resource; ``#PowerSupply.v1_5_0.PowerSupply`` is not.
    A collection's type has no version (``#PowerSupplyCollection.PowerSupplyCollection``)."""
    name = re.escape(odata_type)
    if odata_type.endswith("Collection"):
        return re.fullmatch(rf"#{name}\.{name}", kind) is not None
    return re.fullmatch(rf"#{name}\.v\d+_\d+_\d+\.{name}", kind) is not None


def _number(value: object, source: str, key: str) -> float | None:
    """A JSON number (or null = absent); anything else is a ParseError."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ParseError(f"{source}: {key}: expected a number or null, got {value!r:.80}")
    try:
        f = float(value)
    except OverflowError:  # a JSON integer beyond any float
        f = math.inf
    if not math.isfinite(f) or f < 0:
        raise ParseError(f"{source}: {key}: expected a finite non-negative number, got {value!r}")
    return f


def _reading(doc: dict[str, object], member: str, source: str) -> float | None:
    excerpt = doc.get(member)
    if excerpt is None:
        return None
    if not isinstance(excerpt, dict):
        raise ParseError(
            f"{source}: {member}: expected an object with 'Reading', got {excerpt!r:.80}"
        )
    return _number(excerpt.get("Reading"), source, f"{member}.Reading")


def parse_environment_metrics(body: bytes, source: str = "EnvironmentMetrics") -> RedfishReading:
    """``PowerWatts.Reading`` (W) and ``EnergyJoules.Reading`` (J) or ``EnergykWh.Reading`` (kWh)."""
    doc = _document(body, source, "EnvironmentMetrics")
    power = _reading(doc, "PowerWatts", source)
    energy = _reading(doc, "EnergyJoules", source)
    if energy is None:
        kwh = _reading(doc, "EnergykWh", source)
        energy = None if kwh is None else kwh_to_j(kwh)
    return RedfishReading(power, energy)


def _link(doc: dict[str, object], member: str, source: str) -> str | None:
    """``{"Member": {"@odata.id": "/redfish/v1/..."}}`` → the URI (None when absent)."""
    ref = doc.get(member)
    if ref is None:
        return None
    uri = ref.get("@odata.id") if isinstance(ref, dict) else None
    if not isinstance(uri, str) or not uri.startswith("/redfish/v1/"):
        raise ParseError(f"{source}: {member}: expected a link {{'@odata.id': '/redfish/v1/...'}}")
    return uri


def parse_power_subsystem(body: bytes, source: str = "PowerSubsystem") -> str | None:
    """The ``PowerSupplies`` collection's URI of a ``PowerSubsystem`` (None: no supplies listed)."""
    return _link(_document(body, source, "PowerSubsystem"), "PowerSupplies", source)


def parse_member_links(
    body: bytes, source: str = "PowerSupplies", odata_type: str = "PowerSupplyCollection"
) -> tuple[str, ...]:
    """A collection's ``Members[]`` URIs."""
    doc = _document(body, source, odata_type)
    members = doc.get("Members")
    if not isinstance(members, list):
        raise ParseError(f"{source}: Members: expected an array, got {members!r:.80}")
    out: list[str] = []
    for i, member in enumerate(members):
        uri = _link({"m": member}, "m", f"{source}: Members[{i}]")
        if uri is not None:
            out.append(uri)
    return tuple(out)


def parse_power_supply(body: bytes, source: str = "PowerSupply") -> str | None:
    """A ``PowerSupply``'s ``Metrics`` URI (None: this supply publishes no metrics)."""
    return _link(_document(body, source, "PowerSupply"), "Metrics", source)


def parse_power_supply_metrics(body: bytes, source: str = "PowerSupplyMetrics") -> RedfishReading:
    """``InputPowerWatts.Reading`` (W) and ``EnergykWh.Reading`` (kWh → J) of one supply."""
    doc = _document(body, source, "PowerSupplyMetrics")
    kwh = _reading(doc, "EnergykWh", source)
    return RedfishReading(
        _reading(doc, "InputPowerWatts", source), None if kwh is None else kwh_to_j(kwh)
    )


def parse_power(body: bytes, source: str = "Power") -> RedfishReading:
    """The first ``PowerControl[].PowerConsumedWatts`` that has a value (legacy ``Power``)."""
    doc = _document(body, source, "Power")
    controls = doc.get("PowerControl")
    if controls is None:
        return RedfishReading(None, None)
    if not isinstance(controls, list):
        raise ParseError(f"{source}: PowerControl: expected an array, got {controls!r:.80}")
    for i, control in enumerate(controls):
        if not isinstance(control, dict):
            raise ParseError(f"{source}: PowerControl[{i}]: expected an object")
        watts = _number(
            control.get("PowerConsumedWatts"), source, f"PowerControl[{i}].PowerConsumedWatts"
        )
        if watts is not None:
            return RedfishReading(watts, None)
    return RedfishReading(None, None)


# ------------------------------------------------------------------------------------ I/O


class _NotFound(CollectorError):
    pass


def _read_password(path: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise CollectorUnavailable(f"password_file {path}: {e.strerror or e}") from None
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise CollectorUnavailable(f"password_file {path}: empty")
    return lines[0].strip()


class RedfishCollector:
    """Polls one chassis of one BMC."""

    def __init__(self, name: str, config: Config) -> None:
        self.name = name
        self.config = config
        parts = urlsplit(config.url)
        self._base = f"{parts.scheme}://{parts.netloc}/redfish/v1/Chassis/{quote(config.chassis)}"
        self._auth: str | None = None
        self._context: ssl.SSLContext | None = None
        if parts.scheme == "https":
            ctx = ssl.create_default_context(cafile=config.ca_file)
            if not config.verify:
                log.warning("%s: TLS verification is off for %s (verify: false)", name, config.url)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            self._context = ctx
        self._working: tuple[Resource, ...] | None = None
        #: The supplies' Metrics URIs, listed once (the PowerSubsystem path); None = not listed.
        self._supply_metrics: tuple[str, ...] | None = None

    async def inventory(self) -> list[DeviceInfo]:
        return []

    async def aclose(self) -> None:
        return None

    def _authorization(self) -> str | None:
        if self.config.username is None or self.config.password_file is None:
            return None
        if self._auth is None:
            secret = _read_password(self.config.password_file)
            token = base64.b64encode(f"{self.config.username}:{secret}".encode()).decode("ascii")
            self._auth = f"Basic {token}"
        return self._auth

    def fetch(self, resource: str) -> bytes:
        """GET ``{chassis}/{resource}`` (or an absolute ``/redfish/v1/...`` path); errors become
        collector errors (no secret in them)."""
        if resource.startswith("/redfish/v1/"):
            parts = urlsplit(self.config.url)
            url = f"{parts.scheme}://{parts.netloc}{quote(resource)}"
        else:
            url = f"{self._base}/{resource}"
        headers = {"Accept": "application/json", "User-Agent": "kwatt", "OData-Version": "4.0"}
        auth = self._authorization()
        if auth is not None:
            headers["Authorization"] = auth
        request = urllib.request.Request(url, headers=headers)  # noqa: S310 - http(s) only
        timeout = self.config.timeout_s
        try:
            with urllib.request.urlopen(  # noqa: S310
                request, timeout=timeout, context=self._context
            ) as response:
                body: bytes = response.read(MAX_BODY_BYTES + 1)
        except urllib.error.HTTPError as e:
            e.close()
            if e.code in (401, 403):
                raise CollectorError(
                    f"{url}: HTTP {e.code}: the BMC refused the credentials of user "
                    f"{self.config.username!r} (password from {self.config.password_file}); "
                    "check both"
                    if self.config.username
                    else f"{url}: HTTP {e.code}: the BMC wants credentials (set username and "
                    "password_file)"
                ) from None
            if e.code == 404:
                raise _NotFound(f"{url}: HTTP 404 (no such resource on this BMC)") from None
            raise CollectorError(f"{url}: HTTP {e.code} {e.reason}") from None
        except urllib.error.URLError as e:
            reason = e.reason
            if isinstance(reason, TimeoutError):
                raise CollectorTimeout(f"{url}: no answer within {timeout:g} s") from None
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise CollectorError(
                    f"{url}: TLS certificate refused ({reason.verify_message}); set ca_file to the "
                    "CA that signed the BMC's certificate"
                ) from None
            if isinstance(reason, ssl.SSLError):
                raise CollectorError(f"{url}: TLS error ({reason.reason})") from None
            raise CollectorUnavailable(f"{url}: {reason} (is the BMC reachable?)") from None
        except TimeoutError:
            raise CollectorTimeout(f"{url}: no answer within {timeout:g} s") from None
        except (OSError, ValueError) as e:  # http.client errors, a broken connection
            raise CollectorError(f"{url}: {e}") from None
        if len(body) > MAX_BODY_BYTES:
            raise ParseError(f"{url}: body larger than {MAX_BODY_BYTES} bytes")
        return body

    def _read(self, resource: Resource) -> RedfishReading:
        if resource == "environment":
            url = f"{self._base}/EnvironmentMetrics"
            return parse_environment_metrics(self.fetch("EnvironmentMetrics"), url)
        if resource == "subsystem":
            return self._read_supplies()
        return parse_power(self.fetch("Power"), f"{self._base}/Power")

    def _read_supplies(self) -> RedfishReading:
        """The sum over the PowerSubsystem's supplies (listed once, then only their Metrics)."""
        if self._supply_metrics is None:
            collection = parse_power_subsystem(
                self.fetch("PowerSubsystem"), f"{self._base}/PowerSubsystem"
            )
            metrics: list[str] = []
            complete = collection is not None
            if collection is not None:
                for supply in parse_member_links(self.fetch(collection), collection):
                    uri = parse_power_supply(self.fetch(supply), supply)
                    if uri is None:
                        complete = False  # a supply without metrics: any sum would be too low
                    else:
                        metrics.append(uri)
            self._supply_metrics = tuple(metrics) if complete else ()
        try:
            readings = [
                parse_power_supply_metrics(self.fetch(uri), uri) for uri in self._supply_metrics
            ]
        except _NotFound:
            self._supply_metrics = None  # a supply was replaced: list them again
            raise
        powers = [r.power_w for r in readings]
        energies = [r.energy_j for r in readings]
        return RedfishReading(
            math.fsum(p for p in powers if p is not None)
            if readings and None not in powers
            else None,
            math.fsum(e for e in energies if e is not None)
            if readings and None not in energies
            else None,
        )

    def read_sync(self) -> RedfishReading:
        """One poll's reading, following ``resource`` (see the module docstring)."""
        mode = self.config.resource
        if mode != "auto":
            return self._read(mode)
        if self._working is not None:
            try:
                return self._combine(self._working, remember=False)
            except _NotFound:
                self._working = None  # the BMC changed (firmware update): probe again
                self._supply_metrics = None
        return self._combine(("environment", "subsystem", "power"), remember=True)

    def _combine(self, resources: tuple[Resource, ...], *, remember: bool) -> RedfishReading:
        """Read ``resources`` in order until power and energy are known (``Power`` has no energy,
        so it is read only while power is missing); with ``remember``, a 404 skips a resource and
        the ones that gave a value become the poll's set."""
        power: float | None = None
        energy: float | None = None
        used: list[Resource] = []
        for resource in resources:
            if power is not None and (energy is not None or resource == "power"):
                break
            try:
                reading = self._read(resource)
            except _NotFound:
                if not remember:
                    raise
                continue
            if (power is None and reading.power_w is not None) or (
                energy is None and reading.energy_j is not None
            ):
                used.append(resource)
            power = reading.power_w if power is None else power
            energy = reading.energy_j if energy is None else energy
        if remember and used:
            self._working = tuple(used)
        return RedfishReading(power, energy)

    async def collect(self) -> list[Sample]:
        reading = await asyncio.to_thread(self.read_sync)
        ts_ns = time.time_ns()
        if reading.power_w is None and reading.energy_j is None:
            return []
        return [
            Sample.host(
                ts_ns,
                source="redfish",
                zone=self.config.chassis,
                power_w=reading.power_w,
                energy_j=reading.energy_j,
            )
        ]


def _detect(surface: Surface) -> Entries:
    """Doctor: one entry per BMC it was given (a BMC cannot be discovered safely)."""
    return [
        {"type": "redfish", "name": "redfish" if i == 0 else f"redfish{i}", "url": url}
        for i, url in enumerate(surface.redfish)
    ]


#: This module's collector, as the registry (:mod:`kwatt.collectors`) finds it.
PLUGIN = CollectorPlugin(
    kind="redfish",
    config=Config,
    factory=RedfishCollector,
    detect=_detect,
    demo=True,
    permission_fix="give the agent a BMC account (username + password_file readable by the agent)",
)
