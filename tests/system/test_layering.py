"""The house rules of the kwatt namespace (README "Where things live", docs/DESIGN.md §2).

* Every module of every room is checked (an ``ast`` walk of every import, function-local and
  ``TYPE_CHECKING`` ones included): a room imports only the rooms below it.
* The checker itself is shown failing on planted violations (a collector importing the agent,
  analytics importing the agent, an emulator importing a collector), so this test can fail.
* The daemon (``kwatt agent``) never imports the emulators, the demo, the live view or analytics.
* A wheel built from the tree has ``kwatt`` as its only top-level name, ships the emulators and the
  demo, and, installed into a clean virtualenv, runs ``kwatt demo``.
* ``make lint`` (ruff + mypy through the ``kwatt/<room>`` links) fails on an error planted in any
  room: the link tree hides nothing from the static tools.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import in_ci

REPO = Path(__file__).resolve().parents[2]

#: room -> the rooms it may import (itself included). ``kwatt`` (the package's own modules: the
#: CLI's lazy dispatch) and ``demo`` may import everything.
ROOMS = ("wire", "collectors", "agent", "ingest", "analytics", "live", "emulators", "demo")
ALLOWED: dict[str, frozenset[str]] = {
    "wire": frozenset({"wire"}),
    "collectors": frozenset({"wire", "collectors"}),
    "agent": frozenset({"wire", "collectors", "agent"}),
    "ingest": frozenset({"wire", "ingest"}),
    "analytics": frozenset({"wire", "analytics"}),
    "live": frozenset({"wire", "analytics", "live"}),
    "emulators": frozenset({"emulators"}),
    "demo": frozenset(ROOMS),
}


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    imported: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: imports {self.imported}"


def _imports(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "kwatt":
                for a in node.names:
                    yield node.lineno, f"kwatt.{a.name}"
            else:
                yield node.lineno, node.module
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            yield node.lineno, "." * node.level + (node.module or "")


def violations(root: Path) -> list[Violation]:
    """Every import of a room that its layer does not allow, and every import by an old name."""
    out: list[Violation] = []
    for room in ROOMS:
        for path in sorted((root / room).rglob("*.py")):
            rel = str(path.relative_to(root))
            for line, name in _imports(ast.parse(path.read_text(encoding="utf-8"), rel)):
                parts = name.split(".")
                if name.startswith("."):
                    out.append(Violation(rel, line, f"{name} (relative: use kwatt.<room>...)"))
                elif parts[0] in ROOMS:
                    out.append(Violation(rel, line, f"{name} (old name: use kwatt.{name})"))
                elif parts[0] == "kwatt" and len(parts) > 1:
                    target = parts[1]
                    if target in ROOMS and target not in ALLOWED[room]:
                        out.append(Violation(rel, line, name))
                    elif target == "cli" and room != "demo":
                        out.append(Violation(rel, line, f"{name} (the CLI: only demo may)"))
    return out


def test_every_module_of_every_room_keeps_to_its_layer() -> None:
    found = sorted(str(p.relative_to(REPO)) for r in ROOMS for p in (REPO / r).rglob("*.py"))
    assert len(found) > 75  # every room is walked, subpackages included
    assert any(f.startswith("emulators/tools/") for f in found)
    assert [str(v) for v in violations(REPO)] == []


@pytest.mark.parametrize(
    ("room", "module", "line", "why"),
    [
        ("collectors", "hwmon.py", "from kwatt.agent.runtime import Agent", "kwatt.agent.runtime"),
        ("analytics", "load.py", "import kwatt.agent.config", "kwatt.agent.config"),
        ("emulators", "node.py", "from kwatt.collectors import hwmon", "kwatt.collectors"),
        ("emulators", "tools/__init__.py", "from kwatt.wire import model", "kwatt.wire"),
        ("wire", "model.py", "from kwatt import collectors", "kwatt.collectors"),
        ("live", "__init__.py", "from kwatt.ingest import worker", "kwatt.ingest"),
        ("agent", "runtime.py", "from collectors import base", "old name"),
    ],
)
def test_the_checker_fails_on_a_planted_violation(
    tmp_path: Path, room: str, module: str, line: str, why: str
) -> None:
    for r in ROOMS:
        shutil.copytree(REPO / r, tmp_path / r, ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / room / module
    target.write_text(
        target.read_text(encoding="utf-8") + f"\n\ndef _planted() -> None:\n    {line}\n"
    )
    (v,) = violations(tmp_path)
    assert v.path == f"{room}/{module}" and why in v.imported, v


def test_the_daemon_never_imports_emulators_demo_live_or_analytics(tmp_path: Path) -> None:
    conf = tmp_path / "agent.yaml"
    conf.write_text(
        "site: s\nnode: n\ncollectors:\n"
        f"  - {{type: rapl, name: rapl, root: {tmp_path}}}\n"
        f"  - {{type: hwmon, name: hwmon, root: {tmp_path}}}\n"
    )
    probe = (
        "import sys\n"
        "from kwatt.cli import main\n"
        f"rc = main(['agent', '--config', {str(conf)!r}, '--once'])\n"
        "print(sorted(m for m in sys.modules if m.startswith('kwatt.')))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    loaded = ast.literal_eval(r.stdout.strip().splitlines()[-1])
    assert "kwatt.agent.runtime" in loaded and "kwatt.collectors.hwmon" in loaded, loaded
    bad = [m for m in loaded if m.split(".")[1] in ("emulators", "demo", "live", "analytics")]
    assert bad == [], bad
    assert "numpy" not in r.stdout


def _need(what: str, ok: bool) -> None:
    if not ok:
        if in_ci():
            pytest.fail(f"{what} [CI is set]", pytrace=False)
        pytest.skip(what)


def tracked_copy(dst: Path) -> Path:
    """The repository's tracked files (links kept as links) copied to ``dst``: what a clean clone
    holds, without build/ or caches a previous run left in the working tree."""
    files = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    for f in files:
        src, out = REPO / f, dst / f
        out.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            out.symlink_to(os.readlink(src))
        elif src.is_file():
            shutil.copy2(src, out)
    return dst


@pytest.mark.slow
def test_wheel_has_one_top_level_name_and_runs_the_demo_in_a_clean_venv(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
         "-w", str(dist), str(tracked_copy(tmp_path / "src"))],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    (wheel,) = dist.glob("kwatt-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        (top,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
        assert z.read(top).decode().split() == ["kwatt"]
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {
        "kwatt"
    }
    for shipped in ("kwatt/emulators/node.py", "kwatt/demo/run.py", "kwatt/emulators/catalogue.yaml",
                    "kwatt/emulators/libnvml/nvml_emu.c", "kwatt/analytics/targets.yaml"):  # fmt: skip
        assert shipped in names, shipped

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    install = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", str(wheel)],
        capture_output=True, text=True, timeout=900, env={**os.environ, "PIP_NO_INPUT": "1"},
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-3000:]
    _need("mosquitto/influxd not installed", bool(shutil.which("influxd")))
    # from a directory outside the repository: only the installed wheel is importable
    demo = subprocess.run(
        [str(env_dir / "bin" / "kwatt"), "demo", "--duration", "10", "--no-live", "--nodes", "2",
         "--json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )  # fmt: skip
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert '"lost": 0' in demo.stdout.replace(" ", "").replace('"lost":0', '"lost": 0')


@pytest.mark.slow
def test_lint_fails_on_an_error_planted_in_any_room(tmp_path: Path) -> None:
    """A type error and a lint error in one module of each room: ruff and mypy (as ``make lint``
    runs them, through the kwatt/ links) name every one of them."""
    tree = tracked_copy(tmp_path / "tree")
    planted = {}
    for room in ROOMS:
        target = next(p for p in sorted((tree / room).glob("*.py")) if p.name != "__init__.py")
        target.write_text(
            target.read_text(encoding="utf-8")
            + "\n\ndef _planted_type_error() -> int:\n    return 'not an int'\n"
            + "\n\ndef _planted_lint_error() -> None:\n    import os\n"
        )
        planted[room] = target.relative_to(tree)
    bindir = REPO / ".venv" / "bin"
    ruff = subprocess.run([str(bindir / "ruff"), "check", "--no-cache", "."], cwd=tree,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    mypy = subprocess.run([str(bindir / "mypy"), "--no-incremental"], cwd=tree,
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert ruff.returncode != 0 and mypy.returncode != 0
    for room, rel in planted.items():
        assert f"{rel}:" in ruff.stdout, (room, "ruff", ruff.stdout[-2000:])
        via_link = f"kwatt/{rel}:"
        assert via_link in mypy.stdout and "return value" in mypy.stdout, (
            room,
            mypy.stdout[-2000:],
        )
