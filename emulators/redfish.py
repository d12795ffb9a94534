"""An emulated BMC Redfish service on 127.0.0.1: chassis ``Power``, ``EnvironmentMetrics`` and
``PowerSubsystem``.

Resources (docs/device-interfaces.md §5.4), rendered from the latest :class:`Snapshot`:

* ``/redfish/v1`` (service root, no authentication, as the Redfish spec requires) and
  ``/redfish/v1/Chassis`` (collection), ``/redfish/v1/Chassis/{id}``;
* ``/redfish/v1/Chassis/{id}/Power``: ``#Power.v1_7_1.Power`` with ``PowerControl[0]``
  (``PowerConsumedWatts``, ``PowerCapacityWatts``, ``PowerMetrics`` {``IntervalInMin``,
  ``MinConsumedWatts``, ``MaxConsumedWatts``, ``AverageConsumedWatts``}), whole watts as BMCs
  report them (the HPE sample of §5.4);
* ``/redfish/v1/Chassis/{id}/EnvironmentMetrics``: ``#EnvironmentMetrics.v1_3_0.EnvironmentMetrics``
  with ``PowerWatts`` {``DataSourceUri``, ``Reading``} and ``EnergykWh`` {``DataSourceUri``,
  ``Reading``} (``environment_metrics=False`` makes it a 404, as on a BMC with only the legacy
  resource; ``energy=False`` drops ``EnergykWh``).

* ``/redfish/v1/Chassis/{id}/PowerSubsystem`` (``#PowerSubsystem.v1_1_0.PowerSubsystem``, layout of
  DMTF's public-rackmount1 mockup: ``CapacityWatts``, ``PowerSupplies`` link), its
  ``PowerSupplies`` collection of :data:`SUPPLIES` supplies (``#PowerSupply.v1_5_0.PowerSupply``
  with a ``Metrics`` link) and each supply's ``Metrics`` (``#PowerSupplyMetrics.v1_0_1.
  PowerSupplyMetrics``: ``InputPowerWatts`` and, unless ``energy=False``, ``EnergykWh``); the
  supplies share the chassis input equally (assumed), so their sum is the chassis reading;
  ``power_subsystem=False`` makes them 404 (a BMC with the legacy resource only).

The chassis links ``PowerSubsystem``, ``EnvironmentMetrics`` and ``Power`` (marked
``Power@Redfish.Deprecated`` as in DMTF's mockup). A node without host state shows ``"Reading":
null`` / ``"PowerConsumedWatts": null``. With
``credentials`` every resource but the service root needs HTTP Basic auth (401 with
``WWW-Authenticate`` otherwise); with ``tls`` (a PEM certificate and key) it is served over HTTPS.
Faults are ``Snapshot.faults_for("redfish")``: ``hang_s`` delays the answer, ``garbage`` sends random
bytes as the body, ``truncate`` half the body, a non-zero ``exit_code`` answers 503.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import random
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from kwatt.emulators.bmc import PowerStats
from kwatt.emulators.state import Snapshot

__all__ = [
    "SUPPLIES",
    "RedfishServer",
    "TlsFiles",
    "render_environment_metrics",
    "render_power",
    "render_power_subsystem",
    "render_power_supplies",
    "render_power_supply",
    "render_power_supply_metrics",
]

TOOL = "redfish"
#: Rated capacity the Power resource reports, W (assumption: a 2-PSU 3 kW server).
POWER_CAPACITY_W = 3000
#: The power supplies of the PowerSubsystem (assumption: two, sharing the load equally).
SUPPLIES = ("Bay1", "Bay2")


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A PEM certificate (chain) and its private key."""

    cert_file: str
    key_file: str


def _chassis_uri(chassis: str) -> str:
    return f"/redfish/v1/Chassis/{chassis}"


def render_power(
    chassis: str, power_w: float | None, stats: PowerStats | None
) -> dict[str, object]:
    """The legacy ``Power`` resource (§5.4)."""
    base = _chassis_uri(chassis)
    watts = None if power_w is None else round(power_w)
    metrics: dict[str, object] = {"IntervalInMin": None}
    if power_w is not None:
        s = stats or PowerStats.instant(power_w)
        metrics = {
            "IntervalInMin": max(1, round(s.period_s / 60)),
            "MinConsumedWatts": round(s.minimum_w),
            "MaxConsumedWatts": round(s.maximum_w),
            "AverageConsumedWatts": round(s.average_w),
        }
    return {
        "@odata.context": "/redfish/v1/$metadata#Power.Power",
        "@odata.id": f"{base}/Power",
        "@odata.type": "#Power.v1_7_1.Power",
        "Id": "Power",
        "Name": "Power",
        "PowerControl": [
            {
                "@odata.id": f"{base}/Power#/PowerControl/0",
                "MemberId": "0",
                "Name": "System Power Control",
                "PowerConsumedWatts": watts,
                "PowerCapacityWatts": POWER_CAPACITY_W,
                "PowerMetrics": metrics,
                "Status": {"State": "Enabled", "Health": "OK"},
            }
        ],
    }


def render_environment_metrics(
    chassis: str, power_w: float | None, energy_j: float | None, *, energy: bool = True
) -> dict[str, object]:
    """The ``EnvironmentMetrics`` resource (§5.4, v1_3_0): ``PowerWatts`` and ``EnergykWh``."""
    base = _chassis_uri(chassis)
    doc: dict[str, object] = {
        "@odata.id": f"{base}/EnvironmentMetrics",
        "@odata.type": "#EnvironmentMetrics.v1_3_0.EnvironmentMetrics",
        "Id": "EnvironmentMetrics",
        "Name": "Chassis Environment Metrics",
        "PowerWatts": {"DataSourceUri": f"{base}/Sensors/TotalPower", "Reading": power_w},
    }
    if energy:
        kwh = None if energy_j is None else energy_j / 3.6e6
        doc["EnergykWh"] = {"DataSourceUri": f"{base}/Sensors/TotalEnergy", "Reading": kwh}
    return doc


def render_power_subsystem(chassis: str) -> dict[str, object]:
    """The ``PowerSubsystem`` resource (no reading of its own; DMTF public-rackmount1 layout)."""
    base = _chassis_uri(chassis)
    return {
        "@odata.id": f"{base}/PowerSubsystem",
        "@odata.type": "#PowerSubsystem.v1_1_0.PowerSubsystem",
        "Id": "PowerSubsystem",
        "Name": "Power Subsystem for Chassis",
        "CapacityWatts": POWER_CAPACITY_W,
        "PowerSupplies": {"@odata.id": f"{base}/PowerSubsystem/PowerSupplies"},
        "Status": {"State": "Enabled", "Health": "OK"},
    }


def render_power_supplies(chassis: str) -> dict[str, object]:
    base = f"{_chassis_uri(chassis)}/PowerSubsystem/PowerSupplies"
    return {
        "@odata.id": base,
        "@odata.type": "#PowerSupplyCollection.PowerSupplyCollection",
        "Name": "Power Supply Collection",
        "Members": [{"@odata.id": f"{base}/{bay}"} for bay in SUPPLIES],
        "Members@odata.count": len(SUPPLIES),
    }


def render_power_supply(chassis: str, bay: str) -> dict[str, object]:
    uri = f"{_chassis_uri(chassis)}/PowerSubsystem/PowerSupplies/{bay}"
    return {
        "@odata.id": uri,
        "@odata.type": "#PowerSupply.v1_5_0.PowerSupply",
        "Id": bay,
        "Name": f"Power Supply {bay}",
        "PowerCapacityWatts": POWER_CAPACITY_W / len(SUPPLIES),
        "Metrics": {"@odata.id": f"{uri}/Metrics"},
        "Status": {"State": "Enabled", "Health": "OK"},
    }


def render_power_supply_metrics(
    chassis: str, bay: str, power_w: float | None, energy_j: float | None, *, energy: bool = True
) -> dict[str, object]:
    """One supply's ``PowerSupplyMetrics``: its share of the chassis input power and energy."""
    uri = f"{_chassis_uri(chassis)}/PowerSubsystem/PowerSupplies/{bay}/Metrics"
    share = 1.0 / len(SUPPLIES)
    doc: dict[str, object] = {
        "@odata.id": uri,
        "@odata.type": "#PowerSupplyMetrics.v1_0_1.PowerSupplyMetrics",
        "Id": "Metrics",
        "Name": f"Metrics for Power Supply {bay}",
        "InputPowerWatts": {
            "DataSourceUri": f"{_chassis_uri(chassis)}/Sensors/{bay}InputPower",
            "Reading": None if power_w is None else power_w * share,
        },
    }
    if energy:
        doc["EnergykWh"] = {
            "DataSourceUri": f"{_chassis_uri(chassis)}/Sensors/{bay}Energy",
            "Reading": None if energy_j is None else energy_j * share / 3.6e6,
        }
    return doc


class RedfishServer:
    """The Redfish service of one emulated BMC; feed it with :meth:`render` at every step."""

    HOST = "127.0.0.1"
    READ_TIMEOUT_S = 5.0
    CLOSE_TIMEOUT_S = 1.0

    def __init__(
        self,
        *,
        chassis: str = "1",
        port: int = 0,
        tls: TlsFiles | None = None,
        credentials: tuple[str, str] | None = None,
        environment_metrics: bool = True,
        energy: bool = True,
        power_subsystem: bool = True,
        seed: int = 0,
    ) -> None:
        self.chassis = chassis
        self._port = port
        self._tls = tls
        self._credentials = credentials
        self._environment_metrics = environment_metrics
        self._energy = energy
        self._power_subsystem = power_subsystem
        self._rng = random.Random(f"kwatt-redfish:{seed}")
        self._snap: Snapshot | None = None
        self._stats: PowerStats | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: Requests served so far, by path (what a test can check a client's traffic with).
        self.requests: dict[str, int] = {}

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("RedfishServer is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://{self.HOST}:{self.port}"

    @property
    def endpoints(self) -> Mapping[str, str]:
        return {} if self._server is None else {"redfish": self.url}

    def render(self, snap: Snapshot, stats: PowerStats | None = None) -> None:
        """Serve ``snap`` (and the BMC statistics) from now on. Safe from a worker thread."""
        self._snap, self._stats = snap, stats

    async def start(self) -> None:
        context: ssl.SSLContext | None = None
        if self._tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self._tls.cert_file, self._tls.key_file)
        self._server = await asyncio.start_server(self._handle, self.HOST, self._port, ssl=context)

    async def aclose(self) -> None:
        """Stop listening, let the connections being answered finish (a hung one is cancelled)."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=self.CLOSE_TIMEOUT_S + 1.0)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        try:
            async with asyncio.timeout(self.READ_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
            snap = self._snap
            faults = snap.faults_for(TOOL) if snap is not None else None
            if faults is not None and faults.hang_s > 0:
                await asyncio.sleep(faults.hang_s)
            status, headers, body = self._respond(head)
            if faults is not None and status.startswith("200"):
                if faults.exit_code != 0:
                    status, body = "503 Service Unavailable", b'{"error":"service unavailable"}'
                elif faults.garbage:
                    body = bytes(self._rng.randrange(256) for _ in range(max(16, len(body))))
                elif faults.truncate:
                    body = body[: len(body) // 2]
                headers["Content-Length"] = str(len(body))
            lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers.items())]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass  # a client that went away or never finished its request
        finally:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(self.CLOSE_TIMEOUT_S):  # a TLS peer may not answer
                    await writer.wait_closed()

    def _authorized(self, head: bytes) -> bool:
        if self._credentials is None:
            return True
        for line in head.split(b"\r\n")[1:]:
            key, _, value = line.decode("latin-1").partition(":")
            if key.strip().lower() != "authorization":
                continue
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() != "basic":
                return False
            try:
                decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return False
            user, _, password = decoded.partition(":")
            want_user, want_password = self._credentials
            same_user = hmac.compare_digest(user.encode(), want_user.encode())
            return same_user & hmac.compare_digest(password.encode(), want_password.encode())
        return False

    def _respond(self, head: bytes) -> tuple[str, dict[str, str], bytes]:
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return "400 Bad Request", self._headers(0), b""
        method, path = parts[0], urlsplit(parts[1]).path.rstrip("/")
        self.requests[path] = self.requests.get(path, 0) + 1
        if method != "GET":
            headers = self._headers(0)
            headers["Allow"] = "GET"
            return "405 Method Not Allowed", headers, b""
        base = _chassis_uri(self.chassis)
        doc: dict[str, object] | None = None
        if path == "/redfish/v1":
            doc = {
                "@odata.id": "/redfish/v1",
                "@odata.type": "#ServiceRoot.v1_15_0.ServiceRoot",
                "Id": "RootService",
                "Name": "Root Service",
                "RedfishVersion": "1.17.0",
                "Chassis": {"@odata.id": "/redfish/v1/Chassis"},
            }
            return self._json(doc)
        if not self._authorized(head):
            body = b'{"error":{"code":"Base.1.8.GeneralError","message":"Unauthorized"}}'
            headers = self._headers(len(body))
            headers["WWW-Authenticate"] = 'Basic realm="Redfish"'
            return "401 Unauthorized", headers, body
        snap, stats = self._snap, self._stats
        host = None if snap is None else snap.host
        power_w = None if host is None else host.system_power_w
        if path == "/redfish/v1/Chassis":
            doc = {
                "@odata.id": "/redfish/v1/Chassis",
                "@odata.type": "#ChassisCollection.ChassisCollection",
                "Name": "Chassis Collection",
                "Members": [{"@odata.id": base}],
                "Members@odata.count": 1,
            }
        elif path == base:
            doc = {
                "@odata.id": base,
                "@odata.type": "#Chassis.v1_21_0.Chassis",
                "Id": self.chassis,
                "Name": "Computer System Chassis",
                "ChassisType": "RackMount",
            }
            if self._power_subsystem:
                doc["PowerSubsystem"] = {"@odata.id": f"{base}/PowerSubsystem"}
            if self._environment_metrics:
                doc["EnvironmentMetrics"] = {"@odata.id": f"{base}/EnvironmentMetrics"}
            doc["Power@Redfish.Deprecated"] = f"Please migrate to use {base}/PowerSubsystem"
            doc["Power"] = {"@odata.id": f"{base}/Power"}
        elif path == f"{base}/Power":
            doc = render_power(self.chassis, power_w, stats)
        elif path == f"{base}/EnvironmentMetrics" and self._environment_metrics:
            energy_j = None if host is None else host.system_energy_j
            doc = render_environment_metrics(self.chassis, power_w, energy_j, energy=self._energy)
        elif path.startswith(f"{base}/PowerSubsystem") and self._power_subsystem:
            supplies = f"{base}/PowerSubsystem/PowerSupplies"
            bay = path[len(supplies) + 1 :].removesuffix("/Metrics")
            if path == f"{base}/PowerSubsystem":
                doc = render_power_subsystem(self.chassis)
            elif path == supplies:
                doc = render_power_supplies(self.chassis)
            elif bay in SUPPLIES and path == f"{supplies}/{bay}":
                doc = render_power_supply(self.chassis, bay)
            elif bay in SUPPLIES and path == f"{supplies}/{bay}/Metrics":
                energy_j = None if host is None else host.system_energy_j
                doc = render_power_supply_metrics(
                    self.chassis, bay, power_w, energy_j, energy=self._energy
                )
        if doc is None:
            body = b'{"error":{"code":"Base.1.8.ResourceMissingAtURI","message":"Not found"}}'
            return "404 Not Found", self._headers(len(body)), body
        return self._json(doc)

    def _json(self, doc: dict[str, object]) -> tuple[str, dict[str, str], bytes]:
        body = json.dumps(doc, indent=2).encode("utf-8")
        return "200 OK", self._headers(len(body)), body

    @staticmethod
    def _headers(length: int) -> dict[str, str]:
        return {
            "Content-Type": "application/json; charset=utf-8",
            "Content-Length": str(length),
            "OData-Version": "4.0",
            "Connection": "close",
            "Server": "kwatt-emulator",
        }
