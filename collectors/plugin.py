"""The typed plugin contract: what a collector module exports, and how the agent, doctor and the
demo use it.

A collector module exports one :class:`CollectorPlugin` named ``PLUGIN``: its kind string (the
``type:`` of an agent-config entry), its frozen ``Config`` dataclass, the factory that builds the
collector from a name and a ``Config`` (the collector class itself), and what doctor needs to find
it on a node (:attr:`CollectorPlugin.detect`, the vendor tools, the hwmon chips it already reports,
the permission fix). The registry (:mod:`kwatt.collectors`) maps kind strings to these objects.

The poll timeout: every ``Config`` has a ``timeout_s: float`` option (checked when the plugin is
built); :meth:`CollectorPlugin.options` sets it to the agent entry's ``timeout_s`` (the bound on one
poll), so a collector bounds its own I/O (a spawned tool, a blocked sysfs read, an HTTP request) by
the poll's budget.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from kwatt.collectors.base import Collector
from kwatt.collectors.hwmon_files import DeviceMatch
from kwatt.wire.settings import from_mapping

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = ["CollectorPlugin", "Entries", "Options", "Plugin", "Surface", "find_tool"]


class Options(Protocol):
    """A collector's options, whatever its kind: an instance of its plugin's ``Config``, a frozen
    dataclass whose ``timeout_s`` is the poll timeout."""

    @property
    def timeout_s(self) -> float: ...


if TYPE_CHECKING:

    class _PluginConfig(DataclassInstance, Options, Protocol):
        """A frozen dataclass with ``timeout_s``."""


C = TypeVar("C", bound="_PluginConfig")

#: What :attr:`CollectorPlugin.detect` returns: agent-config entries (YAML mappings), in order.
Entries = list[dict[str, object]]


def find_tool(root: Path | str, tool: str, *, search_path: bool = True) -> str | None:
    """Where the vendor tool ``tool`` of the node whose filesystem is under ``root`` is.

    ``tool`` itself when it names a path; else ``ROOT/bin/tool`` when that file exists (executable
    or not: running it reports why); else the executable ``tool`` on ``PATH`` when ``search_path``;
    else None. The node's own ``bin`` comes first: under an emulated node's root the tools belong to
    that node, not to the host running the collector, and on a real host (``root`` ``/``) ``/bin``
    is on ``PATH`` anyway.
    """
    if os.sep in tool:
        return tool
    local = Path(root) / "bin" / tool
    if local.is_file():
        return str(local)
    return shutil.which(tool) if search_path else None


@dataclass(frozen=True)
class Surface:
    """What doctor knows of a node it looks at: its root, and the endpoints it was given (a
    serving runtime's ``/metrics`` and a BMC cannot be discovered safely)."""

    root: Path
    #: ``URL[=SERVICE[:RUNTIME]]`` items (``kwatt doctor --serving``).
    serving: tuple[str, ...] = ()
    #: BMC base URLs (``kwatt doctor --redfish``).
    redfish: tuple[str, ...] = ()

    @property
    def real(self) -> bool:
        """Whether the root is this host's ``/``."""
        return self.root.resolve() == Path("/")

    @property
    def emulated(self) -> bool:
        """Whether the root is an emulated node's directory."""
        return (self.root / ".kwatt-emulator" / "state.json").is_file() and not self.real

    def tool(self, name: str) -> str | None:
        """The vendor tool ``name`` of this node: ``ROOT/bin/name``, else on ``PATH`` only when the
        root is ``/`` (another root's tools belong to that root)."""
        return find_tool(self.root, name, search_path=self.real)

    def has_class(self, cls: str) -> bool:
        """Whether ``ROOT/sys/class/<cls>`` has entries (a refused listing counts as present: the
        probe reports why)."""
        d = self.root / "sys" / "class" / cls
        try:
            return d.is_dir() and any(d.iterdir())
        except OSError:
            return d.is_dir()


class Plugin(Protocol):
    """A registered collector, whatever its ``Config``: what the registry's :func:`load` returns."""

    @property
    def kind(self) -> str: ...
    @property
    def config(self) -> type[object]: ...
    @property
    def detect(self) -> Callable[[Surface], Entries] | None: ...
    @property
    def hwmon_chips(self) -> tuple[str, ...]: ...
    @property
    def hwmon_devices(self) -> tuple[DeviceMatch, ...]: ...
    @property
    def fallback_of(self) -> str | None: ...
    @property
    def permission_fix(self) -> str | None: ...
    @property
    def demo(self) -> bool: ...

    def options(self, raw: Mapping[str, object], *, timeout_s: float, where: str) -> Options:
        """The validated ``Config`` of an entry's options (``raw``) under poll timeout ``timeout_s``."""
        ...

    def with_timeout(self, options: Options, timeout_s: float) -> Options:
        """``options`` with another I/O timeout."""
        ...

    def create(self, name: str, options: Options) -> Collector:
        """The collector ``name`` for ``options`` (an instance of :attr:`config`)."""
        ...


@dataclass(frozen=True)
class CollectorPlugin(Generic[C]):
    """One collector kind: its ``Config``, its factory and how doctor finds it (module docstring)."""

    #: The ``type:`` of an agent-config entry.
    kind: str
    #: The frozen dataclass of the entry's options (validated from YAML by its type hints).
    config: type[C]
    #: Builds the collector from its name and options (the collector class).
    factory: Callable[[str, C], Collector]
    #: Doctor's detection: the entries worth probing on a node (none when its surface is absent).
    detect: Callable[[Surface], Entries] | None = None
    #: hwmon chip names (fnmatch) of the cards this collector reports: excluded from ``hwmon``
    #: when this collector works, or they would be counted twice.
    hwmon_chips: tuple[str, ...] = ()
    #: How the ``hwmon`` collector's ``auto_accel`` names these cards' chips when it reads them
    #: (vendor, model, the labels of board power and temperature).
    hwmon_devices: tuple[DeviceMatch, ...] = ()
    #: The kind this one only backs up (it reads the same devices): left out when that one works.
    fallback_of: str | None = None
    #: How to grant the agent access when a read was refused.
    permission_fix: str | None = None
    #: Whether the demo runs it (the cheap collectors: no process spawned per poll, or the only
    #: surface of its device).
    demo: bool = False

    def __post_init__(self) -> None:
        fields = {f.name for f in dataclasses.fields(self.config)}
        if "timeout_s" not in fields:
            raise TypeError(f"{self.kind}: {self.config.__qualname__} has no timeout_s option")

    def options(self, raw: Mapping[str, object], *, timeout_s: float, where: str) -> C:
        """Validate ``raw`` into a ``Config`` whose ``timeout_s`` is the poll timeout."""
        return from_mapping(self.config, {**raw, "timeout_s": timeout_s}, where=where)

    def with_timeout(self, options: Options, timeout_s: float) -> C:
        """``options`` with I/O timeout ``timeout_s`` (doctor's probe budget)."""
        return dataclasses.replace(self._check(options), timeout_s=timeout_s)

    def create(self, name: str, options: Options) -> Collector:
        """The collector ``name``; ``TypeError`` when ``options`` is not this plugin's ``Config``."""
        return self.factory(name, self._check(options))

    def _check(self, options: Options) -> C:
        if not isinstance(options, self.config):
            raise TypeError(
                f"{self.kind}: options must be a {self.config.__qualname__}, "
                f"got {type(options).__name__}"
            )
        return options
