"""The ``smi`` source of the ``furiosa`` collector: the ``furiosa-smi`` tool, ``info`` + ``status``
as JSON while the tool prints JSON, else their text tables (parsed in
:mod:`kwatt.collectors.furiosa.smi_parse`). Two process spawns per poll; a hung tool is killed
after ``timeout_s``."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from kwatt.collectors.base import (
    CollectorError,
    CollectorTimeout,
    CollectorUnavailable,
    ParseError,
    run_tool,
)
from kwatt.collectors.furiosa.config import Config
from kwatt.collectors.furiosa.parse import VENDOR
from kwatt.collectors.furiosa.smi_parse import (
    SmiDevice,
    merge_smi,
    parse_smi_info_json,
    parse_smi_info_table,
    parse_smi_status_json,
    parse_smi_status_table,
)
from kwatt.collectors.plugin import find_tool
from kwatt.wire.model import DeviceInfo, Sample

log = logging.getLogger(__name__)


class SmiSource:
    """The tool, and whether it prints JSON (learnt from its first answer)."""

    def __init__(self, name: str, config: Config) -> None:
        self.name = name
        self.config = config
        #: None until the tool answered once; False: it has no JSON output (the tables are read).
        self.json_ok: bool | None = None

    def tool_argv(self) -> list[str]:
        """The tool's command: ``ROOT/bin/<tool>`` of an emulated node's root, else the tool as
        configured (a path, or a name the spawn looks up on ``PATH``)."""
        tool = self.config.tool
        if Path(self.config.root) != Path("/"):
            return [find_tool(self.config.root, tool, search_path=False) or tool]
        return [tool]

    async def _run(self, *args: str) -> str:
        out = await run_tool([*self.tool_argv(), *args], self.config.timeout_s)
        return out.decode("utf-8", "replace")

    async def devices(self) -> list[SmiDevice]:
        """``info`` + ``status``: JSON while the tool prints JSON, the text tables otherwise."""
        tool = self.config.tool
        if self.json_ok is not False:
            try:
                info = await self._run("info", "--format", "json")
            except (CollectorUnavailable, CollectorTimeout):
                raise  # no tool, or a hung one: no reason to think it lacks JSON
            except CollectorError as e:  # a non-zero exit: an old tool rejecting --format json
                if self.json_ok:
                    raise
                log.info("%s: %s has no JSON output (%s), reading its tables", self.name, tool, e)
                self.json_ok = False
            else:
                if info.lstrip().startswith("[") or self.json_ok:
                    devices = parse_smi_info_json(info, f"{tool} info --format json")
                    status_text = await self._run("status", "--format", "json")
                    status = parse_smi_status_json(status_text, f"{tool} status --format json")
                    self.json_ok = True
                    return merge_smi(devices, status)
                # no JSON array: a tool that ignores the option (or garbage); try the tables
        devices = parse_smi_info_table(
            await self._run("info", "--format", "full"), f"{tool} info --format full"
        )
        status = parse_smi_status_table(await self._run("status"), f"{tool} status")
        return merge_smi(devices, status)

    async def collect(self) -> list[Sample]:
        devices = await self.devices()
        ts_ns = time.time_ns()
        samples: list[Sample] = []
        for d in devices:
            tag = d.tag
            if tag is None:
                raise ParseError(f"{self.config.tool}: {d.name} has no UUID, S/N or PCI-BDF")
            try:
                samples.append(
                    Sample.accel(
                        ts_ns,
                        vendor=VENDOR,
                        model=d.arch,
                        device=tag,
                        power_w=d.power_w,
                        temp_c=d.temp_c,
                        util_ratio=d.util_ratio,
                        clock_hz=d.clock_hz,
                        mem_used_bytes=d.mem_used_bytes,
                        mem_total_bytes=d.mem_total_bytes,
                    )
                )
            except ValueError as e:
                raise ParseError(f"{self.config.tool}: {d.name}: {e}") from None
        return samples

    async def inventory(self) -> list[DeviceInfo]:
        devices = await self.devices()
        return [
            DeviceInfo(
                vendor=VENDOR,
                model=d.arch,
                id=d.tag or d.name,
                collector=self.name,
                firmware_version=d.firmware,
                bus_id=d.bdf,
            )
            for d in devices
        ]
