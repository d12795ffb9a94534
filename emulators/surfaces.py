"""The registry of vendor driver surfaces an emulated node renders its device states through.

The physics of :mod:`kwatt.emulators.node` produces one :class:`~kwatt.emulators.state.DeviceState` per device and
one :class:`~kwatt.emulators.state.HostState` per node at every step. A *surface* turns those states into what
a real host shows: a sysfs tree, an HTTP endpoint, the snapshot an emulated executable reads. Each vendor
module registers one factory here; the node creates one surface per vendor present on the node (and the
host surface, ``"host"``, on every node) and calls it at every step.

Contract (stable; other modules implement it):

- ``setup(root, devices)`` once, before the first step, with the *initial* states of this vendor's
  devices (the host surface gets every device): write static files (identity, labels) and anything an
  executable needs to exist (``ROOT/bin/<tool>`` scripts).
- ``render(snap)`` at every step with the node's whole :class:`~kwatt.emulators.state.Snapshot`; a surface
  picks its own devices by ``DeviceState.vendor`` (and reads ``snap.host`` for host power). The node
  has already written ``ROOT/.kwatt-emulator/state.json`` (:func:`~kwatt.emulators.state.write_snapshot`)
  before it calls ``render``, so executables see the same step. Files must be replaced atomically
  (:func:`~kwatt.emulators.state.write_atomic`). ``render`` runs in a worker thread: no asyncio calls there.
  A device with ``present=False`` must vanish from the surface (files removed or the tool omits it);
  ``stuck=True`` means the surface repeats the values it showed when the device got stuck; devices can
  re-enumerate (``index`` changes, ``serial``/``uuid``/``bus_id`` stay).
- ``start()`` / ``aclose()`` on the event loop: open and close listening sockets (HTTP surfaces). A
  surface with an endpoint reports it in :attr:`Surface.endpoints` (name → URL) after ``start()`` so the
  node can print it and write it into the agent config.

Vendors: ``"furiosa"``, ``"rebellions"``, ``"sapeon"``, ``"nvidia"`` (``DeviceState.vendor``) and
``"host"`` (RAPL, hwmon, IPMI, Redfish, rendered from ``Snapshot.host``).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from kwatt import emulators
from kwatt.emulators.state import DeviceState, Snapshot

__all__ = [
    "HOST",
    "SURFACES",
    "Surface",
    "SurfaceContext",
    "SurfaceFactory",
    "load_builtin",
    "register",
]

#: Key of the host-power surface (rendered on every node from ``Snapshot.host``).
HOST = "host"


@dataclass(frozen=True, slots=True)
class SurfaceContext:
    """What a surface factory is told about the node it belongs to."""

    root: Path  # the node's root directory (ROOT/sys, ROOT/bin, ROOT/.kwatt-emulator)
    seed: int  # the node's seed, for any surface-local randomness (garbage bytes, jitter)
    node_name: str = "node0"  # hostname-like label of the node (fleet: node000, node001, …)
    #: Tool versions the surface should imitate, e.g. {"furiosa-smi": "2026.3.0", "rbln-smi": "2.0"};
    #: a surface uses its own default for a tool that is not named.
    tool_versions: Mapping[str, str] | None = None
    #: Loopback port for a surface's HTTP endpoint (0 = any free port).
    port: int = 0


@runtime_checkable
class Surface(Protocol):
    """One vendor's driver surface on one emulated node (see the module docstring for the contract)."""

    @property
    def endpoints(self) -> Mapping[str, str]:
        """Name → URL of the HTTP endpoints this surface serves (empty if none); valid after start()."""
        ...

    def setup(self, root: Path, devices: Sequence[DeviceState]) -> None: ...

    async def start(self) -> None: ...

    def render(self, snap: Snapshot) -> None: ...

    async def aclose(self) -> None: ...


#: Builds a vendor's surface for one node.
SurfaceFactory = Callable[[SurfaceContext], Surface]

#: vendor → factory. A surface module registers itself at import time with :func:`register`;
#: :func:`load_builtin` imports every module of the ``emulators`` package so the registry is full
#: before a node is built (a module with no surface registers nothing).
SURFACES: dict[str, SurfaceFactory] = {}

#: Modules of the package that are not surfaces (skipped by :func:`load_builtin`).
_NOT_SURFACES = frozenset(
    {"surfaces", "state", "node", "fleet", "physics", "workloads", "catalogue"}
)


def register(vendor: str, factory: SurfaceFactory) -> None:
    """Register (or replace) the surface factory of ``vendor`` (e.g. at the end of its module)."""
    SURFACES[vendor] = factory


def load_builtin() -> dict[str, SurfaceFactory]:
    """Import every module of the ``emulators`` package (surfaces register themselves); the registry."""

    for info in pkgutil.iter_modules(emulators.__path__):
        if info.name.startswith("_") or info.name in _NOT_SURFACES:
            continue
        importlib.import_module(f"{emulators.__name__}.{info.name}")
    return SURFACES
