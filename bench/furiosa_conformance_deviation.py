"""Largest deviation of FuriosaAI's own libraries from the emulator's truth (docs/emulators.md).

Runs the real ``furiosa_smi`` and ``furiosa_smi_py`` wheels in a private mount namespace (root and
``unshare`` needed; the helpers of tests/conformance/test_furiosa_conformance.py) over paused emulated nodes with
one card, three cards and two idle cards, three readings each, and prints the largest absolute
difference per value. Prints figures only; the tests hold the tolerances.

    .venv/bin/python bench/furiosa_conformance_deviation.py
"""

from __future__ import annotations

import importlib
import sys
import tempfile
import time
from pathlib import Path

# the conformance test's helpers, and the tests' conftest they import
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "conformance"))

from kwatt.emulators.faults import pause, resume
from kwatt.emulators.state import read_snapshot

conformance = importlib.import_module("test_furiosa_conformance")
probe, rngds = conformance.probe, conformance.rngds
start_node, stop = conformance.start_node, conformance.stop

MODULES = ("furiosa_smi", "furiosa_smi_py")
NODES = (("rngd", "chatbot"), ("rngd:3", "chatbot"), ("rngd:2", "idle"))


def main() -> None:
    worst: dict[str, float] = {}

    def note(key: str, value: float) -> None:
        worst[key] = max(worst.get(key, 0.0), abs(value))

    for devices, service in NODES:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "root"
            proc = start_node(root, devices, service, seed=7)
            try:
                while not (root / ".kwatt-emulator").exists() or read_snapshot(root).t_s < 2.0:
                    time.sleep(0.1)
                for _ in range(3):
                    time.sleep(0.5)
                    pause(root)
                    try:
                        snap = read_snapshot(root)
                        docs = {m: probe(root, m) for m in MODULES}
                    finally:
                        resume(root)
                    for m, doc in docs.items():
                        cards = doc["cards"]
                        assert isinstance(cards, list)
                        for c, d in zip(cards, rngds(snap), strict=True):
                            note(f"{m} power_w", c["power_w"] - d.power_w)
                            note(f"{m} soc_peak_c", c["soc_peak_c"] - d.temp_c)
                            note(f"{m} ambient_c", c["ambient_c"] - d.ambient_c)
                            note(f"{m} clock_hz", c["freq_mhz"]["0"] * 1e6 - d.clock_hz)
                            counters = list(c["counters"].values())
                            if d.mem_used_bytes > 0:
                                note(f"{m} cycles", counters[0][0] - d.cycles)
                                mean_task = sum(v[1] for v in counters) / len(counters)
                                note(f"{m} mean task cycles", mean_task - d.busy_cycles)
                            memory = list(c["memory"].values())
                            note(f"{m} mem used B", sum(v[0] for v in memory) - d.mem_used_bytes)
                            note(f"{m} mem total B", sum(v[1] for v in memory) - d.mem_total_bytes)
                            if "power_limit_mw" in c:
                                note(
                                    f"{m} power limit W",
                                    c["power_limit_mw"] / 1000 - d.power_limit_w,
                                )
            finally:
                stop(proc)
    for key, value in sorted(worst.items()):
        print(f"{key}: {value:.3g}")


if __name__ == "__main__":
    main()
