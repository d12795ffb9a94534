"""The collector plugin contract: the registry, the typed plugins, the poll timeout, tool lookup."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from kwatt import collectors
from kwatt.agent.config import agent_config_from
from kwatt.collectors import hwmon, rapl
from kwatt.collectors.plugin import CollectorPlugin, Surface, find_tool


def test_every_registered_kind_has_its_plugin() -> None:
    for kind in collectors.REGISTRY:
        plugin = collectors.load(kind)
        assert isinstance(plugin, CollectorPlugin)
        assert plugin.kind == kind
        assert "timeout_s" in {f.name for f in dataclasses.fields(plugin.config)}
    assert [p.kind for p in collectors.plugins()] == list(collectors.REGISTRY)
    with pytest.raises(KeyError):
        collectors.load("no-such-collector")


def test_the_entry_timeout_is_the_collectors_own() -> None:
    doc = {
        "site": "s",
        "node": "n",
        "collectors": [{"type": "rapl", "root": "/x", "interval_s": "2s", "timeout_s": "750ms"}],
    }
    (entry,) = agent_config_from(doc, where="t").collectors
    assert entry.options == rapl.Config(root="/x", timeout_s=0.75)
    assert collectors.load("rapl").with_timeout(entry.options, 3.0) == rapl.Config(
        root="/x", timeout_s=3.0
    )


def test_create_checks_the_options_type() -> None:
    collector = collectors.load("hwmon").create("h", hwmon.Config())
    assert isinstance(collector, hwmon.HwmonCollector) and collector.name == "h"
    with pytest.raises(TypeError, match="hwmon: options must be a Config, got Config"):
        collectors.load("hwmon").create("h", rapl.Config())


def test_a_config_without_timeout_is_refused() -> None:
    @dataclasses.dataclass(frozen=True)
    class NoTimeout:
        root: str = "/"

    with pytest.raises(TypeError, match="no timeout_s option"):
        CollectorPlugin(kind="x", config=NoTimeout, factory=lambda name, c: None)  # type: ignore[arg-type, type-var]


def test_the_demo_and_doctor_metadata() -> None:
    demo = {p.kind for p in collectors.plugins() if p.demo}
    assert demo == {
        "furiosa",
        "rebellions",
        "sapeon",
        "command",
        "nvml",
        "hwmon",
        "rapl",
        "redfish",
        "serving",
    }
    assert collectors.load("nvidia_smi").fallback_of == "nvml"
    chips = {p.kind: p.hwmon_chips for p in collectors.plugins() if p.hwmon_chips}
    assert chips == {"furiosa": ("rngd*", "furiosa_warboy"), "sapeon": ("sapeon_*",)}
    assert all(p.permission_fix for p in collectors.plugins() if p.kind != "command")
    assert [(d.name, d.vendor, d.model) for d in hwmon.known_devices()] == [
        ("rngd*", "furiosa", "rngd")
    ]


def test_tools_are_looked_up_in_root_bin_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_path = tmp_path / "path"
    on_path.mkdir()
    for d in (tmp_path / "bin", on_path):
        d.mkdir(exist_ok=True)
        (d / "vendor-smi").write_text("#!/bin/sh\n")
        (d / "vendor-smi").chmod(0o755)
    (on_path / "other-smi").write_text("#!/bin/sh\n")
    (on_path / "other-smi").chmod(0o755)
    monkeypatch.setenv("PATH", str(on_path) + os.pathsep + os.environ["PATH"])
    assert find_tool(tmp_path, "vendor-smi") == str(tmp_path / "bin" / "vendor-smi")
    assert find_tool(tmp_path, "other-smi") == str(on_path / "other-smi")
    assert find_tool(tmp_path, "other-smi", search_path=False) is None
    assert find_tool(tmp_path, "/opt/x/vendor-smi") == "/opt/x/vendor-smi"
    # doctor: another root's tools are that root's only
    assert Surface(tmp_path).tool("other-smi") is None
    assert Surface(tmp_path).tool("vendor-smi") == str(tmp_path / "bin" / "vendor-smi")


def test_detection_through_the_registry(tmp_path: Path) -> None:
    (tmp_path / "sys" / "class" / "powercap" / "intel-rapl:0").mkdir(parents=True)
    (tmp_path / "sys" / "class" / "hwmon" / "hwmon0").mkdir(parents=True)
    surface = Surface(tmp_path, redfish=("https://bmc",), serving=("http://h:1/metrics=chat:vllm",))
    found = [e for p in collectors.plugins() if p.detect for e in p.detect(surface)]
    root = str(tmp_path.resolve())
    assert found == [
        {"type": "rapl", "name": "rapl", "root": root},
        {"type": "hwmon", "name": "hwmon", "root": root},
        {"type": "redfish", "name": "redfish", "url": "https://bmc"},
        {
            "type": "serving",
            "url": "http://h:1/metrics",
            "service": "chat",
            "runtime": "vllm",
            "name": "chat-vllm",
        },
    ]
