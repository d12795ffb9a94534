"""The options of a ``furiosa`` collector entry (the sources are described in the package docstring)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["BINDING_MODULES", "Config", "Source"]

Source = Literal["auto", "sysfs", "smi", "bindings"]
#: The binding modules tried, in order, when ``bindings_module`` is not set: the 2026.4 name first.
BINDING_MODULES = ("furiosa_smi", "furiosa_smi_py")


@dataclass(frozen=True)
class Config:
    """Options of a ``furiosa`` collector entry."""

    #: Prefix of ``/sys``: ``/`` on a real host, an emulated node's root directory otherwise.
    root: str = "/"
    #: Re-list cards and hwmon sensors at least this often (also at once when a card's identity
    #: file changes or a read fails). Listing costs about as much as reading the values.
    rediscover_s: float = 30.0
    #: ``sysfs`` only, ``bindings`` (the ``furiosa_smi`` Python module) only, ``smi`` (the tool)
    #: only, or ``auto``: sysfs, then the bindings when importable, then the tool.
    source: Source = "auto"
    #: The binding module to import: ``furiosa_smi`` or ``furiosa_smi_py``. Unset: ``furiosa_smi``,
    #: then ``furiosa_smi_py``. The libraries read the host's ``/sys`` and ``/dev``, never ``root``:
    #: the bindings are used only with ``root: /``.
    bindings_module: str | None = None
    #: The ``furiosa-smi`` executable: a path, or a name looked up in ``ROOT/bin`` (when ``root``
    #: is not ``/``) and then on ``PATH``.
    tool: str = "furiosa-smi"
    #: Seconds one tool run (each poll runs it twice), or one poll's binding calls, may take.
    timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if self.bindings_module is not None and self.bindings_module not in BINDING_MODULES:
            raise ValueError(
                f"bindings_module: expected one of {', '.join(BINDING_MODULES)}, "
                f"got {self.bindings_module!r}"
            )
        if self.source == "bindings" and Path(self.root) != Path("/"):
            raise ValueError(
                f"source: bindings reads the host's /sys, so root must be '/', got {self.root!r} "
                "(run the agent in a mount namespace with the tree over /sys instead)"
            )
