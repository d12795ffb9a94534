"""kwatt: energy telemetry for AI accelerators (DESIGN.md). Import submodules explicitly."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__: str = version("kwatt")
except PackageNotFoundError:
    __version__ = "0+unknown"

__all__ = ["__version__"]
