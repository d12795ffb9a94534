"""Host power end to end: emulated surfaces (emulators/host.py, tools, redfish) → collectors → truth.

Each test writes :class:`Snapshot`s with a :class:`HostState` into a temporary ROOT, renders the host
surface (RAPL tree, hwmon chips, BMC statistics; ``ROOT/bin`` DCMI executables; a Redfish server on a
free loopback port) and compares what the collectors report, in SI units, with the true state.
"""

from __future__ import annotations

import asyncio
import calendar
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from kwatt.collectors import hwmon, ipmi_dcmi, rapl, redfish
from kwatt.collectors.base import CollectorError, CollectorTimeout, CollectorUnavailable, ParseError
from kwatt.emulators import surfaces
from kwatt.emulators.bmc import PowerStats, read_stats
from kwatt.emulators.host import HostSurface, RedfishOptions, rapl_counter_uj
from kwatt.emulators.redfish import TlsFiles
from kwatt.emulators.state import HostState, Snapshot, ToolFaults, write_snapshot
from kwatt.emulators.tools import ipmi_dcmi_freeipmi, ipmitool

FIXTURES = Path(__file__).parents[1] / "fixtures" / "host"
WALL0_NS = 1_760_000_000_000_000_000


class HostNode:
    """A host with two packages whose power the test chooses, integrated exactly."""

    def __init__(self, root: Path, surface: HostSurface) -> None:
        self.root = root
        self.surface = surface
        self.t_s = 0.0
        self.cpu_j = [0.0, 0.0]
        self.dram_j = [0.0, 0.0]
        self.system_j = 0.0
        self.host: HostState | None = None
        self.faults: tuple[tuple[str, ToolFaults], ...] = ()
        self.url = ""
        surface.setup(root, ())

    def step(
        self,
        dt_s: float,
        cpu_w: tuple[float, float] = (120.0, 95.0),
        dram_w: tuple[float, float] = (12.0, 11.0),
        system_w: float = 480.0,
        *,
        host: bool = True,
    ) -> Snapshot:
        self.t_s += dt_s
        for i in range(2):
            self.cpu_j[i] += cpu_w[i] * dt_s
            self.dram_j[i] += dram_w[i] * dt_s
        self.system_j += system_w * dt_s
        self.host = HostState(
            t_s=self.t_s,
            cpu_power_w=cpu_w,
            cpu_energy_j=tuple(self.cpu_j),
            dram_power_w=dram_w,
            dram_energy_j=tuple(self.dram_j),
            system_power_w=system_w,
            system_energy_j=self.system_j,
        )
        snap = Snapshot(
            t_s=self.t_s,
            wall_ns=WALL0_NS + round(self.t_s * 1e9),
            devices=(),
            host=self.host if host else None,
            tool_faults=self.faults,
        )
        write_snapshot(self.root, snap)
        self.surface.render(snap)
        return snap


def make_node(tmp_path: Path, **kwargs: object) -> HostNode:
    root = tmp_path / "root"
    root.mkdir(parents=True, exist_ok=True)
    surface = HostSurface(surfaces.SurfaceContext(root=root, seed=7), **kwargs)  # type: ignore[arg-type]
    return HostNode(root, surface)


def by_zone(samples: list[object]) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for s in samples:
        assert hasattr(s, "tag") and hasattr(s, "fields")
        out[s.tag("zone") or ""] = dict(s.fields)
    return out


# ------------------------------------------------------------------------------------ registry


def test_host_surface_is_registered(tmp_path: Path) -> None:
    registry = surfaces.load_builtin()
    assert registry[surfaces.HOST] is HostSurface

    async def main() -> dict[str, str]:
        s = registry[surfaces.HOST](surfaces.SurfaceContext(root=tmp_path, seed=0))
        assert isinstance(s, surfaces.Surface)
        s.setup(tmp_path, ())
        await s.start()
        try:
            return dict(s.endpoints)
        finally:
            await s.aclose()

    endpoints = asyncio.run(main())
    assert endpoints["redfish"].startswith("http://127.0.0.1:")
    assert os.access(tmp_path / "bin" / "ipmitool", os.X_OK)
    assert os.access(tmp_path / "bin" / "ipmi-dcmi", os.X_OK)


# ------------------------------------------------------------------------------------ RAPL


@pytest.mark.parametrize("symlinks", [True, False])
def test_rapl_tree_matches_truth_across_wraps(tmp_path: Path, symlinks: bool) -> None:
    range_uj = 50_000_000  # 50 J: a package at 120 W wraps every ~0.4 s of emulated time
    node = make_node(tmp_path, max_energy_range_uj=range_uj, symlinks=symlinks)
    c = rapl.RaplCollector("rapl", rapl.Config(root=str(node.root)))
    last: dict[str, float] = {}
    for i in range(60):
        node.step(0.25, cpu_w=(120.0 + i, 95.0), dram_w=(12.0, 11.0 + i / 10))
        got = by_zone(c.collect_sync())
        assert set(got) == {"package-0", "package-0/dram", "package-1", "package-1/dram"}
        truth = {
            "package-0": node.cpu_j[0],
            "package-1": node.cpu_j[1],
            "package-0/dram": node.dram_j[0],
            "package-1/dram": node.dram_j[1],
        }
        for zone, true_j in truth.items():
            energy = got[zone]["energy_j"]
            assert isinstance(energy, float)
            assert abs(energy - true_j) <= 2e-6, (zone, energy, true_j)
            assert energy >= last.get(zone, 0.0)
            assert "power_w" not in got[zone]  # RAPL has no power_uw
            last[zone] = energy
    assert node.cpu_j[0] > 10 * range_uj / 1e6  # the counter really wrapped, many times
    state = c.counter_state("package-0")
    assert state is not None and state.wraps >= 10
    pkg0 = node.surface.rapl.zone_dir(0)
    assert (pkg0 / "energy_uj").read_text() == f"{rapl_counter_uj(node.cpu_j[0], range_uj)}\n"
    assert (pkg0 / "max_energy_range_uj").read_text() == f"{range_uj}\n"
    assert (pkg0 / "name").read_text() == "package-0\n"
    assert not (pkg0 / "power_uw").exists()
    if symlinks:
        link = node.root / "sys" / "class" / "powercap" / "intel-rapl:0:0"
        assert link.is_symlink() and (link / "name").read_text() == "dram\n"


def test_rapl_root_only_energy_uj(tmp_path: Path) -> None:
    node = make_node(tmp_path, root_only=True)
    node.step(1.0)
    pkg0 = node.surface.rapl.zone_dir(0)
    assert stat.S_IMODE((pkg0 / "energy_uj").stat().st_mode) == 0o400
    assert stat.S_IMODE((pkg0 / "name").stat().st_mode) == 0o444
    assert stat.S_IMODE((pkg0 / "max_energy_range_uj").stat().st_mode) == 0o444
    node.step(1.0)  # rewritten atomically, mode kept
    assert stat.S_IMODE((pkg0 / "energy_uj").stat().st_mode) == 0o400
    # The agent is not the file's owner on a real host. Root reads anything unless it drops its
    # capabilities: give the counters to another user and read them without DAC capabilities.
    counters = sorted(node.root.glob("sys/devices/virtual/powercap/intel-rapl/**/energy_uj"))
    assert len(counters) == 4
    code = (
        "import sys\n"
        "from collectors import rapl\n"
        "from kwatt.collectors.base import CollectorUnavailable\n"
        "try:\n"
        f"    rapl.RaplCollector('rapl', rapl.Config(root={str(node.root)!r})).collect_sync()\n"
        "except CollectorUnavailable as e:\n"
        "    print(e)\n"
        "    sys.exit(3)\n"
    )
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: cannot drop the DAC capabilities")
        for f in counters:
            os.chown(f, 65534, 65534)
        argv = ["setpriv", "--inh-caps=-all", "--bounding-set=-all", sys.executable, "-c", code]
    else:
        for f in counters:
            f.chmod(0)  # owned by us: take our own read permission away instead
        argv = [sys.executable, "-c", code]
    out = subprocess.run(
        argv, capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2]
    )
    assert out.returncode == 3, out.stderr
    assert "intel-rapl:0/energy_uj: permission denied" in out.stdout
    assert "udev rule" in out.stdout and "run the agent as root" in out.stdout


# ------------------------------------------------------------------------------------ hwmon


def test_host_hwmon_matches_truth(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    c = hwmon.HwmonCollector("hwmon", hwmon.Config(root=str(node.root)))
    for system_w in (412.3456789, 530.0, 388.25):
        node.step(0.5, system_w=system_w)
        samples = c.collect_sync()
        assert all(s.measurement.value == "host" for s in samples)
        got = by_zone(samples)
        assert set(got) == {"power_meter/power1", "amd_energy/Esocket0", "amd_energy/Esocket1"}
        assert got["power_meter/power1"]["power_w"] == pytest.approx(system_w, abs=1e-6)
        for k in range(2):
            assert got[f"amd_energy/Esocket{k}"]["energy_j"] == pytest.approx(
                node.cpu_j[k], abs=1e-6
            )
    assert asyncio.run(c.inventory()) == []


# ------------------------------------------------------------------------------------ DCMI

DIALECTS: list[tuple[ipmi_dcmi.Dialect, str]] = [
    ("ipmitool", "ipmitool"),
    ("freeipmi", "ipmi-dcmi"),
]


def test_emulated_dcmi_text_is_byte_for_byte_the_reference() -> None:
    wall = calendar.timegm((2024, 2, 15, 8, 36, 1)) * 1_000_000_000
    text = ipmitool.render(50.0, PowerStats(1.0, 6.0, 304.0, 49.0), wall)
    assert text == (FIXTURES / "ipmitool-dcmi-power-reading-reference.txt").read_text()
    wall = calendar.timegm((2023, 12, 29, 8, 58, 0)) * 1_000_000_000
    text = ipmi_dcmi_freeipmi.render(164.0, PowerStats(1_473_439.0, 48.0, 361.0, 157.0), wall)
    assert text == (FIXTURES / "freeipmi-system-power-statistics-reference.txt").read_text()
    off = ipmitool.render(None, None, wall)
    assert "       0 Watts" in off and off.endswith("state is:                   deactivated\n\n")
    assert ipmi_dcmi_freeipmi.render(None, None, wall).endswith(": Not Available\n")


def dcmi(
    node: HostNode, dialect: ipmi_dcmi.Dialect, tool: str, timeout_s: float = 30.0
) -> ipmi_dcmi.IpmiDcmiCollector:
    cfg = ipmi_dcmi.Config(dialect=dialect, tool=str(node.root / "bin" / tool), timeout_s=timeout_s)
    return ipmi_dcmi.IpmiDcmiCollector("dcmi", cfg)


@pytest.mark.parametrize(("dialect", "tool"), DIALECTS)
def test_dcmi_tools_match_truth(tmp_path: Path, dialect: ipmi_dcmi.Dialect, tool: str) -> None:
    node = make_node(tmp_path)
    c = dcmi(node, dialect, tool)
    for system_w in (400.4, 520.6, 450.0):
        node.step(2.0, system_w=system_w)
        (s,) = asyncio.run(c.collect())
        assert s.tag("source") == "dcmi" and s.tag("zone") is None
        assert s.field("power_w") == float(round(system_w))
    # min/max/average over the period since the start, as the BMC keeps them
    raw = subprocess.run(c.argv, capture_output=True, check=True, timeout=30).stdout.decode()
    reading = (
        ipmi_dcmi.parse_ipmitool(raw) if dialect == "ipmitool" else ipmi_dcmi.parse_freeipmi(raw)
    )
    stats = read_stats(node.root)
    assert stats is not None and stats.period_s == pytest.approx(4.0)
    assert (reading.minimum_w, reading.maximum_w) == (400, 521)
    assert reading.average_w == round((520.6 * 2 + 450.0 * 2) / 4)
    assert reading.period_s == pytest.approx(4.0)


@pytest.mark.parametrize(("dialect", "tool"), DIALECTS)
def test_dcmi_faults(tmp_path: Path, dialect: ipmi_dcmi.Dialect, tool: str) -> None:
    node = make_node(tmp_path)
    c = dcmi(node, dialect, tool, timeout_s=1.0)
    with pytest.raises(
        CollectorError, match=r"exit status 1: (Could not open device|ipmi-dcmi: could not find)"
    ):
        asyncio.run(c.collect())  # no snapshot yet: no BMC
    node.step(1.0)
    assert len(asyncio.run(c.collect())) == 1

    node.faults = ((tool, ToolFaults(hang_s=60.0)),)
    node.step(1.0)
    started = time.monotonic()
    with pytest.raises(CollectorTimeout, match="killed"):
        asyncio.run(c.collect())
    assert time.monotonic() - started < 10.0

    for fault, error in (
        (ToolFaults(garbage=True), ParseError),
        (ToolFaults(truncate=True), ParseError),
    ):
        node.faults = ((tool, fault),)
        node.step(1.0)
        with pytest.raises(error):
            asyncio.run(c.collect())
    node.faults = ((tool, ToolFaults(exit_code=4)),)
    node.step(1.0)
    with pytest.raises(CollectorError, match="exit status 4") as e:
        asyncio.run(c.collect())
    assert not isinstance(e.value, ParseError | CollectorTimeout)
    node.faults = (("some-other-tool", ToolFaults(garbage=True)),)
    node.step(1.0, host=False)  # a BMC without a reading: deactivated → absent, not 0
    assert asyncio.run(c.collect()) == []
    node.step(1.0, system_w=333.0)  # recovered
    (s,) = asyncio.run(c.collect())
    assert s.field("power_w") == 333.0


def test_dcmi_tool_missing(tmp_path: Path) -> None:
    cfg = ipmi_dcmi.Config(tool=str(tmp_path / "nope"))
    with pytest.raises(CollectorUnavailable, match="not found"):
        asyncio.run(ipmi_dcmi.IpmiDcmiCollector("d", cfg).collect())


# ------------------------------------------------------------------------------------ Redfish


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, TlsFiles]]:
    """Two self-signed certificates for 127.0.0.1 (each its own CA)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("certs")
    out: dict[str, TlsFiles] = {}
    for name in ("bmc", "other"):
        cert, key = d / f"{name}.pem", d / f"{name}.key"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", f"/CN=kwatt-test-{name}", "-addext", "subjectAltName=IP:127.0.0.1",
             "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        out[name] = TlsFiles(str(cert), str(key))
    yield out


def test_redfish_resources_look_like_the_reference(tmp_path: Path) -> None:
    async def main() -> tuple[dict[str, object], dict[str, object]]:
        node = make_node(tmp_path)
        await node.surface.start()
        try:
            node.step(60.0, system_w=612.5)
            c = redfish.RedfishCollector("r", redfish.Config(url=node.surface.redfish.url))
            env = await asyncio.to_thread(c.fetch, "EnvironmentMetrics")
            power = await asyncio.to_thread(c.fetch, "Power")
            return json.loads(env), json.loads(power)
        finally:
            await node.surface.aclose()

    env, power = asyncio.run(main())
    assert env["@odata.type"] == "#EnvironmentMetrics.v1_3_0.EnvironmentMetrics"
    assert env["PowerWatts"] == {
        "DataSourceUri": "/redfish/v1/Chassis/1/Sensors/TotalPower",
        "Reading": 612.5,
    }
    assert env["EnergykWh"] == {
        "DataSourceUri": "/redfish/v1/Chassis/1/Sensors/TotalEnergy",
        "Reading": 612.5 * 60 / 3.6e6,
    }
    assert power["@odata.type"] == "#Power.v1_7_1.Power"
    control = power["PowerControl"]
    assert isinstance(control, list)
    assert control[0]["PowerConsumedWatts"] == 612
    assert control[0]["PowerMetrics"] == {
        "IntervalInMin": 1, "MinConsumedWatts": 612, "MaxConsumedWatts": 612, "AverageConsumedWatts": 612,
    }  # fmt: skip


def run_redfish(
    tmp_path: Path,
    options: RedfishOptions,
    configs: list[dict[str, object]],
    *,
    steps: int = 3,
    faults: tuple[tuple[str, ToolFaults], ...] = (),
    host: bool = True,
) -> tuple[HostNode, list[list[object] | BaseException]]:
    """Start a BMC, step it, and poll it once with each collector config (url filled in)."""

    async def main() -> tuple[HostNode, list[list[object] | BaseException]]:
        node = make_node(tmp_path, redfish=options)
        await node.surface.start()
        node.url = node.surface.redfish.url
        results: list[list[object] | BaseException] = []
        try:
            for i in range(steps):
                node.faults = faults if i == steps - 1 else ()
                node.step(10.0, system_w=500.0 + 10 * i, host=host)
            for extra in configs:
                cfg = redfish.Config(url=node.surface.redfish.url, **extra)  # type: ignore[arg-type]
                c = redfish.PLUGIN.create("redfish", cfg)
                try:
                    results.append(list(await c.collect()))
                except CollectorError as e:
                    results.append(e)
        finally:
            await node.surface.aclose()
        return node, results

    return asyncio.run(main())


def test_redfish_environment_metrics_energy_matches_truth(tmp_path: Path) -> None:
    node, (auto, env, power) = run_redfish(
        tmp_path,
        RedfishOptions(chassis="System.Embedded.1"),
        [
            {"chassis": "System.Embedded.1"},
            {"chassis": "System.Embedded.1", "resource": "environment"},
            {"chassis": "System.Embedded.1", "resource": "power"},
        ],
    )
    assert node.host is not None
    for result in (auto, env):
        assert isinstance(result, list)
        (s,) = result
        assert s.tag("source") == "redfish" and s.tag("zone") == "System.Embedded.1"
        assert s.field("power_w") == node.host.system_power_w
        assert s.field("energy_j") == pytest.approx(node.host.system_energy_j, rel=1e-12)
    assert isinstance(power, list)
    (p,) = power
    assert (
        p.field("power_w") == float(round(node.host.system_power_w)) and p.field("energy_j") is None
    )


def test_redfish_falls_back_to_power(tmp_path: Path) -> None:
    """Only the deprecated Power resource: its whole watts, no energy."""
    legacy = RedfishOptions(environment_metrics=False, power_subsystem=False)
    node, (result,) = run_redfish(tmp_path / "legacy", legacy, [{}])
    assert isinstance(result, list) and node.host is not None
    (s,) = result
    assert s.field("power_w") == float(round(node.host.system_power_w))
    assert s.field("energy_j") is None


def test_redfish_reads_the_power_subsystem(tmp_path: Path) -> None:
    """No EnvironmentMetrics: the supplies' InputPowerWatts and EnergykWh, summed, give both."""
    node, (auto, only) = run_redfish(
        tmp_path,
        RedfishOptions(environment_metrics=False),
        [{}, {"resource": "subsystem"}],
    )
    assert node.host is not None
    for result in (auto, only):
        assert isinstance(result, list)
        (s,) = result
        assert s.field("power_w") == pytest.approx(node.host.system_power_w, rel=1e-12)
        assert s.field("energy_j") == pytest.approx(node.host.system_energy_j, rel=1e-12)


def test_redfish_environment_power_without_energy(tmp_path: Path) -> None:
    """EnvironmentMetrics without EnergykWh (and supplies without it): its watts, exact, no energy;
    the deprecated Power resource is not needed."""
    node, (result,) = run_redfish(tmp_path, RedfishOptions(energy=False), [{}])
    assert isinstance(result, list) and node.host is not None
    (s,) = result
    assert s.field("power_w") == node.host.system_power_w
    assert s.field("energy_j") is None
    _, (env_only,) = run_redfish(
        tmp_path / "env", RedfishOptions(environment_metrics=False), [{"resource": "environment"}]
    )
    assert isinstance(env_only, CollectorError) and "HTTP 404" in str(env_only)


def test_redfish_auto_remembers_the_resource(tmp_path: Path) -> None:
    async def main() -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
        counts = []
        for i, options in enumerate(
            (
                RedfishOptions(),
                RedfishOptions(environment_metrics=False, power_subsystem=False),
                RedfishOptions(environment_metrics=False),
            )
        ):
            node = make_node(tmp_path / str(i), redfish=options)
            await node.surface.start()
            try:
                c = redfish.PLUGIN.create("r", redfish.Config(url=node.surface.redfish.url))
                for _ in range(3):
                    node.step(1.0)
                    assert len(await c.collect()) == 1
                counts.append(dict(node.surface.redfish.requests))
            finally:
                await node.surface.aclose()
        return counts[0], counts[1], counts[2]

    env, legacy, subsystem = asyncio.run(main())
    assert env == {"/redfish/v1/Chassis/1/EnvironmentMetrics": 3}
    assert legacy == {
        "/redfish/v1/Chassis/1/EnvironmentMetrics": 1,  # 404 once, then Power only
        "/redfish/v1/Chassis/1/PowerSubsystem": 1,  # 404 once
        "/redfish/v1/Chassis/1/Power": 3,
    }
    supplies = "/redfish/v1/Chassis/1/PowerSubsystem/PowerSupplies"
    assert subsystem == {
        "/redfish/v1/Chassis/1/EnvironmentMetrics": 1,  # 404 once
        "/redfish/v1/Chassis/1/PowerSubsystem": 1,  # the supplies are listed once
        supplies: 1,
        f"{supplies}/Bay1": 1,
        f"{supplies}/Bay2": 1,
        f"{supplies}/Bay1/Metrics": 3,  # then only their metrics, every poll
        f"{supplies}/Bay2/Metrics": 3,
    }


def test_redfish_without_host_reading_is_absent(tmp_path: Path) -> None:
    _, (auto, power) = run_redfish(
        tmp_path, RedfishOptions(), [{}, {"resource": "power"}], host=False
    )
    assert auto == [] and power == []


def test_redfish_credentials(tmp_path: Path) -> None:
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.write_text("s3cret-pw\n")
    bad.write_text("wrong-pw-123\n")
    good.chmod(0o600)
    _, (ok, wrong, none) = run_redfish(
        tmp_path / "n",
        RedfishOptions(credentials=("admin", "s3cret-pw")),
        [
            {"username": "admin", "password_file": str(good)},
            {"username": "admin", "password_file": str(bad)},
            {},
        ],
    )
    assert isinstance(ok, list) and len(ok) == 1
    assert isinstance(wrong, CollectorError)
    assert "HTTP 401" in str(wrong) and "refused the credentials of user 'admin'" in str(wrong)
    assert "wrong-pw-123" not in str(wrong) and "s3cret" not in str(wrong)
    assert isinstance(none, CollectorError) and "wants credentials" in str(none)


def test_redfish_tls(tmp_path: Path, certs: dict[str, TlsFiles]) -> None:
    node, (verified, wrong_ca, unverified, system_store) = run_redfish(
        tmp_path,
        RedfishOptions(tls=certs["bmc"]),
        [
            {"ca_file": certs["bmc"].cert_file},
            {"ca_file": certs["other"].cert_file},
            {"verify": False},
            {},
        ],
    )
    assert node.url.startswith("https://127.0.0.1:")
    assert isinstance(verified, list) and len(verified) == 1
    for refused in (wrong_ca, system_store):
        assert isinstance(refused, CollectorError) and "TLS certificate refused" in str(refused)
        assert "ca_file" in str(refused)
    assert isinstance(unverified, list) and len(unverified) == 1


@pytest.mark.parametrize(
    ("fault", "error", "message"),
    [
        (ToolFaults(hang_s=2.0), CollectorTimeout, "no answer within 0.3 s"),
        (ToolFaults(garbage=True), ParseError, "expected a JSON"),
        (ToolFaults(truncate=True), ParseError, "expected a JSON"),
        (ToolFaults(exit_code=1), CollectorError, "HTTP 503"),
    ],
)
def test_redfish_faults(
    tmp_path: Path, fault: ToolFaults, error: type[CollectorError], message: str
) -> None:
    _, (result, after) = run_redfish(
        tmp_path,
        RedfishOptions(),
        [{"timeout_s": 0.3, "resource": "environment"}, {"resource": "environment"}],
        faults=(("redfish", fault),),
    )
    assert isinstance(result, error) and message in str(result), result
    if fault.hang_s == 0:
        assert isinstance(after, error)  # the fault holds until the node clears it


def test_redfish_unreachable() -> None:
    cfg = redfish.Config(url="http://127.0.0.1:9", timeout_s=1.0)
    with pytest.raises(CollectorUnavailable, match="reachable"):
        asyncio.run(redfish.PLUGIN.create("r", cfg).collect())


def test_snapshot_replace_keeps_faults_typed() -> None:
    snap = Snapshot(t_s=0.0, wall_ns=1, devices=(), host=None)
    assert (
        replace(snap, tool_faults=(("redfish", ToolFaults(garbage=True)),))
        .faults_for("redfish")
        .garbage
    )


def test_dcmi_real_bmc_layouts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The emulated ipmitool in the layouts of real BMCs (tests/fixtures/real/ipmi-dcmi): iLO 4's
    timestamp and period on one line, OpenBMC's valid readings flagged ``deactivated``."""
    node = make_node(tmp_path)
    node.step(2.0, system_w=412.4)
    tool = str(node.root / "bin" / "ipmitool")
    plain = ipmi_dcmi.IpmiDcmiCollector("dcmi", ipmi_dcmi.Config(tool=tool))
    trusting = ipmi_dcmi.IpmiDcmiCollector(
        "dcmi", ipmi_dcmi.Config(tool=tool, deactivated_is_valid=True)
    )
    monkeypatch.setenv(ipmitool.LAYOUT_ENV, "one-line")
    raw = subprocess.run(plain.argv, capture_output=True, check=True, timeout=30).stdout.decode()
    assert "UTC    Sampling period:" in raw
    stats = read_stats(node.root)
    assert stats is not None
    assert ipmi_dcmi.parse_ipmitool(raw).period_s == pytest.approx(int(stats.period_s))
    (s,) = asyncio.run(plain.collect())
    assert s.field("power_w") == 412.0
    monkeypatch.setenv(ipmitool.LAYOUT_ENV, "openbmc")
    assert asyncio.run(plain.collect()) == []  # deactivated: no reading by default
    (s,) = asyncio.run(trusting.collect())
    assert s.field("power_w") == 412.0
