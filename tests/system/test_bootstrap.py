"""scripts/bootstrap.sh asks apt for the packages of the binaries it did not find, and nothing else.

The real script runs in a private mount namespace (``unshare -m``) where every binary it looks for is
hidden (``/dev/null`` bound over it, so it is neither a regular file nor executable) and a recording
fake ``apt-get`` is first on ``PATH``; the binaries a case wants present are small stubs in the same
directory. So the test does not depend on what this machine happens to have installed. The fake
``apt-get install`` "installs" a package by adding stubs for its binaries, checks that
``policy-rc.d`` forbids service starts while it runs, and records its arguments.

A machine whose Node.js comes from NodeSource has ``node`` and ``npm`` from one package, and Debian's
``npm`` package conflicts with it: asking apt for ``npm`` there fails the whole install.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import in_ci

REPO = Path(__file__).resolve().parents[2]

#: the contract: binary -> Debian package, for `--for test` (the script's TEST_NEEDS)
TEST_NEEDS = {
    "mosquitto": "mosquitto",
    "influxd": "influxdb",
    "mosquitto_pub": "mosquitto-clients",
    "victoria-metrics": "victoria-metrics",
    "systemd-analyze": "systemd",
    "node": "nodejs",
    "npm": "npm",
    "cc": "gcc",
    "prometheus-node-exporter": "prometheus-node-exporter",
    "tmux": "tmux",
    "strace": "strace",
    "unshare": "util-linux",
    "faketime": "faketime",
}
DEMO_NEEDS = {"mosquitto": "mosquitto", "influxd": "influxdb"}
SEARCHED = ("/usr/local/bin", "/usr/bin", "/bin", "/usr/local/sbin", "/usr/sbin", "/sbin")

FAKE_APT = """#!/bin/bash
# recording fake apt-get (tests/system/test_bootstrap.py)
here=$(cd "$(dirname "$0")" && pwd)
echo "$*" >>"$here/../apt.log"
[ "$1" = update ] && exit 0
if [ -x /usr/sbin/policy-rc.d ]; then
    /usr/sbin/policy-rc.d; echo "policy-rc.d exit $?" >>"$here/../apt.log"
fi
for pkg in "$@"; do
    case "$pkg" in -*|install) continue ;; esac
    while read -r p bins; do
        [ "$p" = "$pkg" ] || continue
        for b in $bins; do printf '#!/bin/sh\\nexit 0\\n' >"$here/$b"; chmod 755 "$here/$b"; done
    done <"$here/../packages"
done
"""


@dataclass(frozen=True)
class Run:
    rc: int
    apt: list[str]  # the fake apt-get's argument lines
    stderr: str

    def installed(self) -> list[str]:
        lines = [a for a in self.apt if a.startswith("install")]
        assert len(lines) <= 1, self.apt
        return [w for w in lines[0].split()[1:] if not w.startswith("-")] if lines else []


@pytest.fixture(scope="module")
def can_unshare() -> None:
    problem = None
    if os.geteuid() != 0:
        problem = "needs root for a private mount namespace"
    elif shutil.which("unshare") is None or shutil.which("setpriv") is None:
        problem = "unshare/setpriv (util-linux) not installed"
    else:
        r = subprocess.run(["unshare", "-m", "true"], capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            problem = f"unshare -m not permitted here: {r.stderr.strip()}"
    if problem:
        if in_ci():
            pytest.fail(f"{problem} [CI is set, so the bootstrap test must run]", pytrace=False)
        pytest.skip(problem)


@pytest.fixture
def world() -> Iterator[Path]:
    """A world-readable copy of the script (the not-root case runs it as nobody)."""
    d = Path(tempfile.mkdtemp(prefix="kwatt-bootstrap-"))
    try:
        (d / "repo" / "scripts").mkdir(parents=True)
        shutil.copy(REPO / "scripts" / "bootstrap.sh", d / "repo" / "scripts" / "bootstrap.sh")
        (d / "fake").mkdir()
        (d / "apt.log").touch()
        (d / "fake" / "apt-get").write_text(FAKE_APT)
        packages: dict[str, list[str]] = {}
        for b, p in TEST_NEEDS.items():
            packages.setdefault(p, []).append(b)
        (d / "packages").write_text("".join(f"{p} {' '.join(bs)}\n" for p, bs in packages.items()))
        for p in d.rglob("*"):
            p.chmod(0o777 if p.is_dir() else 0o755)
        d.chmod(0o777)
        (d / "apt.log").chmod(0o666)
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def run(world: Path, present: set[str], *args: str, as_nobody: bool = False) -> Run:
    """The real bootstrap with every known binary hidden but ``present`` (stubs)."""
    for b in present:
        stub = world / "fake" / b
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
    hide = sorted(
        {
            str(Path(d) / b)
            for b in TEST_NEEDS
            for d in SEARCHED
            if os.path.lexists(Path(d) / b) and os.path.exists(Path(d) / b)
        }
    )
    mounts = "".join(f"mount --bind /dev/null '{p}' && " for p in hide)
    drop = "setpriv --reuid=65534 --regid=65534 --clear-groups " if as_nobody else ""
    script = world / "repo" / "scripts" / "bootstrap.sh"
    inner = (
        f"{mounts}PATH='{world / 'fake'}':/usr/local/bin:/usr/bin:/bin "
        f"{drop}bash '{script}' {' '.join(args)} --no-venv"
    )
    r = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "bash", "-c", inner],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if k != "PATH"} | {"PATH": "/usr/bin:/bin"},
    )
    apt = [line for line in (world / "apt.log").read_text().splitlines() if line]
    return Run(r.returncode, apt, r.stderr)


pytestmark = pytest.mark.usefixtures("can_unshare")


def test_nothing_missing_asks_apt_for_nothing(world: Path) -> None:
    r = run(world, set(TEST_NEEDS), "--for", "test")
    assert r.rc == 0, r.stderr
    assert r.apt == []


def test_one_server_missing_installs_that_package_only(world: Path) -> None:
    r = run(world, set(TEST_NEEDS) - {"victoria-metrics"}, "--for", "test")
    assert r.rc == 0, r.stderr
    assert r.apt[0].startswith("update")
    assert r.installed() == ["victoria-metrics"]
    assert "policy-rc.d exit 101" in r.apt  # services kept from starting during the install
    policy = Path("/usr/sbin/policy-rc.d")  # the script's temporary one is gone again
    assert not policy.exists() or "kwatt" not in policy.read_text(errors="replace")


def test_nodesource_node_with_its_own_npm_is_left_alone(world: Path) -> None:
    # NodeSource's nodejs ships node and npm; everything else missing
    r = run(world, {"node", "npm"}, "--for", "test")
    assert r.rc == 0, r.stderr
    assert "npm" not in r.installed() and "nodejs" not in r.installed()


def test_debian_node_without_npm_gets_npm_only(world: Path) -> None:
    r = run(world, set(TEST_NEEDS) - {"npm"}, "--for", "test")
    assert r.rc == 0, r.stderr
    assert r.installed() == ["npm"]


def test_everything_missing_installs_every_package_once(world: Path) -> None:
    r = run(world, set(), "--for", "test")
    assert r.rc == 0, r.stderr
    got = r.installed()
    assert sorted(got) == sorted(set(TEST_NEEDS.values()))
    assert len(got) == len(set(got))


def test_demo_needs_only_the_two_servers(world: Path) -> None:
    r = run(world, set(), "--for", "demo")
    assert r.rc == 0, r.stderr
    assert sorted(r.installed()) == sorted(set(DEMO_NEEDS.values()))


def test_not_root_prints_the_exact_command_and_installs_nothing(world: Path) -> None:
    r = run(world, set(TEST_NEEDS) - {"tmux", "mosquitto"}, "--for", "test", as_nobody=True)
    assert r.rc == 1
    assert r.apt == []
    (line,) = [s for s in r.stderr.splitlines() if s.startswith("sudo apt-get update")]
    assert line.split("--no-install-recommends ")[1].split() == ["mosquitto", "tmux"]
    assert "missing: mosquitto tmux" in r.stderr


def test_a_package_that_does_not_bring_its_binary_is_an_error(world: Path) -> None:
    (world / "packages").write_text("")  # the fake apt "installs" nothing
    r = run(world, set(TEST_NEEDS) - {"strace"}, "--for", "test")
    assert r.rc == 1
    assert "still missing after apt-get install strace: strace" in r.stderr


def test_script_and_test_agree_on_the_binary_package_pairs() -> None:
    text = (REPO / "scripts" / "bootstrap.sh").read_text()
    for b, p in TEST_NEEDS.items():
        assert f"{b}:{p}" in text, f"{b}:{p} not in bootstrap.sh"
    assert stat.S_IMODE((REPO / "scripts" / "bootstrap.sh").stat().st_mode) & 0o444
