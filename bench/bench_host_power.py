"""Cost per poll of the host-power collectors against an emulated host (prints figures, asserts nothing).

    .venv/bin/python bench/bench_host_power.py [--polls N]

Builds a temporary ROOT with the host surface of emulators/host.py (2 packages + 2 DRAM RAPL zones,
the ACPI power meter and amd_energy hwmon chips, ROOT/bin/ipmitool and ipmi-dcmi, a Redfish server
over HTTP and over HTTPS with a throw-away self-signed certificate) and times each collector's poll.
For scale it also times spawning ``/bin/true`` through the same ``run_tool`` (the floor of any tool
spawn: the real ``ipmitool`` is a C binary, the emulated one a Python process).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from kwatt.collectors import hwmon, ipmi_dcmi, rapl, redfish
from kwatt.collectors.base import run_tool
from kwatt.emulators.host import HostSurface, RedfishOptions
from kwatt.emulators.redfish import TlsFiles
from kwatt.emulators.state import HostState, Snapshot, write_snapshot
from kwatt.emulators.surfaces import SurfaceContext


def snapshot(t_s: float) -> Snapshot:
    host = HostState(
        t_s=t_s,
        cpu_power_w=(150.0, 140.0),
        cpu_energy_j=(150.0 * t_s, 140.0 * t_s),
        dram_power_w=(15.0, 14.0),
        dram_energy_j=(15.0 * t_s, 14.0 * t_s),
        system_power_w=620.0,
        system_energy_j=620.0 * t_s,
    )
    return Snapshot(t_s=t_s, wall_ns=time.time_ns(), devices=(), host=host)


async def timed(poll: Callable[[], Awaitable[object]], n: int) -> tuple[float, float]:
    await poll()  # warm up (first TLS handshake, file cache)
    times = []
    for _ in range(n):
        start = time.perf_counter()
        await poll()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3, statistics.mean(times) * 1e3


async def main(polls: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        subprocess.run(  # noqa: ASYNC221 - once, before anything is timed
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-subj", "/CN=bench", "-addext", "subjectAltName=IP:127.0.0.1",
             "-keyout", f"{tmp}/k.pem", "-out", f"{tmp}/c.pem"],
            check=True, capture_output=True,
        )  # fmt: skip
        plain = HostSurface(SurfaceContext(root=root, seed=0))
        tls = HostSurface(
            SurfaceContext(root=Path(tmp) / "root2", seed=0),
            redfish=RedfishOptions(tls=TlsFiles(f"{tmp}/c.pem", f"{tmp}/k.pem")),
        )
        plain.setup(root, ())
        tls.setup(Path(tmp) / "root2", ())
        await plain.start()
        await tls.start()
        snap = snapshot(100.0)
        write_snapshot(root, snap)
        plain.render(snap)
        tls.render(snap)
        r = rapl.PLUGIN.create("rapl", rapl.Config(root=str(root)))
        h = hwmon.PLUGIN.create("hwmon", hwmon.Config(root=str(root)))
        tool = ipmi_dcmi.PLUGIN.create(
            "dcmi", ipmi_dcmi.Config(tool=str(root / "bin" / "ipmitool"))
        )
        free = ipmi_dcmi.PLUGIN.create(
            "dcmi", ipmi_dcmi.Config(dialect="freeipmi", tool=str(root / "bin" / "ipmi-dcmi"))
        )
        rf = redfish.PLUGIN.create("redfish", redfish.Config(url=plain.redfish.url))
        rfs = redfish.PLUGIN.create(
            "redfish", redfish.Config(url=tls.redfish.url, ca_file=f"{tmp}/c.pem")
        )

        async def true() -> bytes:
            return await run_tool(["/bin/true"], 5.0)

        rows: list[tuple[str, Callable[[], Awaitable[object]], int]] = [
            ("rapl (4 zones, sysfs)", r.collect, polls),
            ("hwmon (2 host chips, sysfs)", h.collect, polls),
            ("ipmi_dcmi ipmitool (emulated, spawn)", tool.collect, max(5, polls // 50)),
            ("ipmi_dcmi freeipmi (emulated, spawn)", free.collect, max(5, polls // 50)),
            ("spawn floor: /bin/true via run_tool", true, max(5, polls // 10)),
            ("redfish HTTP loopback", rf.collect, max(5, polls // 5)),
            ("redfish HTTPS loopback (new TLS conn)", rfs.collect, max(5, polls // 5)),
        ]
        print(f"{'collector':42s} {'median ms':>10s} {'mean ms':>10s} {'polls':>6s}")
        for name, poll, n in rows:
            median, mean = await timed(poll, n)
            print(f"{name:42s} {median:10.3f} {mean:10.3f} {n:6d}")
        await plain.aclose()
        await tls.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--polls", type=int, default=500)
    asyncio.run(main(parser.parse_args().polls))
