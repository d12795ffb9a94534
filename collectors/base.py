"""The collector contract: read a raw driver surface, parse it into SI :class:`Sample` objects.

A collector module holds a frozen ``Config`` dataclass (its options, validated from YAML by the agent's
config loader by introspection), a class implementing :class:`Collector`, and the
:class:`~kwatt.collectors.plugin.CollectorPlugin` that names both (``PLUGIN``). Its parsing is a pure
function of the raw bytes/text, separate from the I/O that fetched them (as node_exporter's and
Telegraf's parsers are tested on fixture files: prometheus/node_exporter, influxdata/telegraf).
Collectors import only the wire contract (``kwatt.wire``) from kwatt outside ``kwatt.collectors``
(DESIGN §2). This module holds the protocol, the error classes and the I/O helpers every collector
uses (small reads, spawned tools, blocking reads under a timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar, runtime_checkable

from kwatt.wire.model import DeviceInfo, Sample

__all__ = [
    "Collector",
    "CollectorError",
    "CollectorTimeout",
    "CollectorUnavailable",
    "ParseError",
    "not_a_number",
    "read_small",
    "read_text",
    "run_tool",
    "sysfs_read",
]


T = TypeVar("T")


class CollectorError(Exception):
    """Root of the errors a collector raises; the agent logs, counts and retries them."""


class CollectorUnavailable(CollectorError):
    """The surface is not there (no device, no tool, no permission). The message says how to fix it."""


class CollectorTimeout(CollectorError):
    """A read did not finish in time; a spawned tool was killed."""


class ParseError(CollectorError):
    """The raw output did not have the expected format. The message names the source and the key."""


@runtime_checkable
class Collector(Protocol):
    """One telemetry source on this node."""

    name: str

    async def inventory(self) -> list[DeviceInfo]:
        """The devices this collector reports on (for the retained ``inventory`` topic)."""
        ...

    async def collect(self) -> list[Sample]:
        """Read the surface once and return its samples, stamped with the wall time of the read."""
        ...

    async def aclose(self) -> None:
        """Release whatever the collector holds (HTTP sessions, library handles)."""
        ...


_CHUNK = 65536


def read_small(path: Path | str) -> bytes:
    """The bytes of a small file (a sysfs attribute is at most a page) with plain ``os`` calls: half
    the cost of ``Path.read_text``, which matters at 200 reads per poll. A read shorter than the
    buffer is the end of a regular or sysfs file; a longer file is read to its end."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, _CHUNK)
        if len(data) < _CHUNK:
            return data
        chunks = [data]
        while chunk := os.read(fd, _CHUNK):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def not_a_number(text: str) -> bool:
    """NaN or ±inf in a sensor file (a driver's placeholder for a failed reading): that field is
    absent, never 0, and the device's other fields still count (DESIGN §3)."""
    return text.strip().lower().lstrip("+-") in ("nan", "inf", "infinity")


def read_text(path: Path | str) -> str:
    """Read a small sysfs-style text file, stripped; errors become :class:`CollectorError`s."""
    try:
        return read_small(path).decode("utf-8").strip()
    except FileNotFoundError as e:
        raise CollectorUnavailable(f"{path}: no such file") from e
    except PermissionError as e:
        raise CollectorUnavailable(
            f"{path}: permission denied (run the agent in a group that may read it)"
        ) from e
    except (OSError, UnicodeDecodeError) as e:
        raise CollectorError(f"{path}: {e}") from e


async def run_tool(argv: list[str], timeout_s: float, env: dict[str, str] | None = None) -> bytes:
    """Run a vendor tool and return its stdout; kill it (and its group) when ``timeout_s`` passes.

    A non-zero exit raises :class:`CollectorError` with the tool's stderr (bounded). A missing
    executable raises :class:`CollectorUnavailable`.
    """
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=None if env is None else {**os.environ, **env},
            start_new_session=True,
        )
    except FileNotFoundError as e:
        raise CollectorUnavailable(f"{argv[0]}: executable not found") from e
    except PermissionError as e:
        raise CollectorUnavailable(f"{argv[0]}: not executable") from e
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await proc.communicate()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        await proc.wait()
        raise CollectorTimeout(f"{argv[0]}: no answer within {timeout_s:g} s, killed") from None
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        await proc.wait()
        raise
    if proc.returncode != 0:
        msg = err.decode("utf-8", "replace").strip()[:500]
        raise CollectorError(f"{argv[0]}: exit status {proc.returncode}: {msg}")
    return out


async def sysfs_read(fn: Callable[[], T], timeout_s: float, where: str) -> T:
    """Run the blocking reads ``fn`` in a worker thread, failing with :class:`CollectorTimeout`
    after ``timeout_s`` (a blocked driver); the abandoned thread finishes on its own."""
    try:
        async with asyncio.timeout(timeout_s):
            return await asyncio.to_thread(fn)
    except TimeoutError:
        raise CollectorTimeout(
            f"{where}: sysfs reads did not finish within {timeout_s:g} s "
            "(a driver blocked; the read is abandoned)"
        ) from None
