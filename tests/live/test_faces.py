"""The terminal faces at a real terminal's width: golden renders of ``kwatt report`` (table) and
``kwatt top`` at 80, 120 and 200 columns, what must appear in full at 80 columns, and ``kwatt top``
in a real 80 × 50 terminal (tmux) against a real broker and emulated nodes with real agents.

Golden files live in tests/golden/; ``UPDATE_GOLDEN=1 .venv/bin/pytest tests/live/test_faces.py``
rewrites them (then read the diff). They are rich's recording console's text at a fixed width, so
they depend on rich's version: the dev extra pins it (pyproject.toml).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import in_ci
from rich.console import Console

from kwatt.analytics.findings import Report, build_report
from kwatt.analytics.load import from_points
from kwatt.analytics.render import _dev_cells, _num, render_json, render_markdown, table_renderables
from kwatt.analytics.targets import load_targets
from kwatt.cli import main as kwatt
from kwatt.live.render import _fmt_power, _fmt_rate, _short_id, render
from kwatt.live.state import TopState
from kwatt.live.top import _target
from kwatt.live.view import ViewOptions
from kwatt.wire.lineproto import parse_line

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parents[1] / "golden"
WIDTHS = (80, 120, 200)
T0 = 1_760_000_000

# ------------------------------------------------------------------------------ the fleets

#: The demo's default fleet in miniature (README: node, model, service): one NPU node and one GPU
#: baseline per service; tokens for the chatbot, inferences for the vision services.
FLEET = (
    ("node-01", "furiosa", "rngd", "chatbot", "tokens", 2, 120.0, 2600.0),
    ("node-02", "nvidia", "h100", "chatbot", "tokens", 1, 560.0, 4100.0),
    ("node-03", "furiosa", "warboy", "traffic", "inferences", 2, 38.0, 1900.0),
    ("node-04", "nvidia", "t4", "traffic", "inferences", 1, 62.0, 2300.0),
    ("node-05", "rebellions", "atom", "food", "inferences", 2, 55.0, 5200.0),
    ("node-06", "nvidia", "l4", "food", "inferences", 1, 68.0, 3100.0),
    ("node-07", "sapeon", "x220-compact", "construction", "inferences", 2, 58.0, 2500.0),
    ("node-08", "nvidia", "a100", "construction", "inferences", 1, 300.0, 4800.0),
)


def device_ids(node: str, vendor: str, n: int) -> list[str]:
    """Ids shaped like each vendor's (UUIDs, NVIDIA's GPU- UUIDs, PCI addresses), fixed."""
    k = int(node[-2:])
    if vendor == "rebellions":
        return [f"0000:{k:02x}:{i:02x}.0" for i in range(n)]
    ids = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"kwatt-faces/{node}/{i}")) for i in range(n)]
    return [f"GPU-{u}" for u in ids] if vendor == "nvidia" else [u.upper() for u in ids]


def fleet_lines(seconds: int = 120) -> list[str]:
    out = []
    for node, vendor, model, svc, kind, n, watts, rate in FLEET:
        for k in range(seconds + 1):
            ts = (T0 + k) * 10**9
            for i, dev in enumerate(device_ids(node, vendor, n)):
                util = 0.4 + 0.05 * i
                out.append(
                    f"accel,device={dev},model={model},node={node},site=dc1,vendor={vendor} "
                    f"power_w={watts + 3 * i},util_ratio={util},temp_c={45 + i} {ts}"
                )
            out.append(
                f"serving,node={node},runtime=triton,service={svc},site=dc1 "
                f"{kind}_total={int(rate * k)}i,requests_total={int(rate * k / 8)}i {ts}"
            )
    return out


def demo_report() -> Report:
    pts = ((p.measurement, p.tags, p.fields, p.ts_ns) for p in map(parse_line, fleet_lines()))
    ss = from_points(pts, "demo-fleet-synthetic")
    return build_report(ss, 0, 2e9, load_targets())


def demo_top() -> tuple[TopState, float]:
    """A TopState fed two batches per node (rates need two readings); node-09 is offline."""
    s = TopState()
    now = 100.0
    for node, *_ in FLEET:
        s.feed(f"kwatt/v1/dc1/{node}/status", b'{"state":"online","agent":"0.1.0"}', 90.0)
    for step, ts in enumerate((T0 * 10**9, (T0 + 2) * 10**9)):
        for node, vendor, model, svc, kind, n, watts, rate in FLEET:
            lines = []
            for i, dev in enumerate(device_ids(node, vendor, n)):
                lines.append(
                    f"accel,device={dev},model={model},node={node},site=dc1,vendor={vendor} "
                    f"power_w={watts + 3 * i + step},util_ratio={0.4 + 0.05 * i},"
                    f"temp_c={45 + i + step},clock_hz=1.8e9,throttled={int(node.endswith('08'))}i "
                    f"{ts}"
                )
            lines.append(
                f"serving,node={node},runtime=triton,service={svc},site=dc1 "
                f"{kind}_total={int(rate * 2 * step)}i,requests_total={int(rate * step / 4)}i {ts}"
            )
            s.feed(f"kwatt/v1/dc1/{node}/metrics", ("\n".join(lines) + "\n").encode(), 99.0)
    s.feed("kwatt/v1/dc1/node-09/status", b'{"state":"offline","agent":"0.1.0"}', 95.0)
    return s, now


def record(width: int, renderables: list[object]) -> str:
    console = Console(record=True, width=width, force_terminal=True, color_system=None)
    for r in renderables:
        console.print(r, highlight=False)
    return console.export_text()


def report_text(width: int) -> str:
    return record(width, list(table_renderables(demo_report(), width)))


#: targets from analytics/targets.yaml (phase 1: ratio × the GPU measured live on the service);
#: food's target set by hand (``--target food=60``)
TOP_OPTS = ViewOptions(
    title="kwatt top · golden", targets_doc=load_targets(), targets=(("food", 60.0),)
)


def top_text(width: int, height: int | None = None) -> str:
    state, now = demo_top()
    return record(width, [render(state, TOP_OPTS, now, width=width, height=height)])


# ------------------------------------------------------------------------------ golden renders


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} missing: run with UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(encoding="utf-8"), f"{name} differs (UPDATE_GOLDEN=1 refreshes)"


@pytest.mark.parametrize("width", WIDTHS)
def test_report_golden(width: int) -> None:
    text = report_text(width)
    assert max(len(line) for line in text.splitlines()) <= width
    check_golden(f"report_{width}.txt", text)


@pytest.mark.parametrize("width", WIDTHS)
def test_top_golden(width: int) -> None:
    text = top_text(width)
    assert max(len(line) for line in text.splitlines()) <= width
    check_golden(f"top_{width}.txt", text)


def test_top_golden_collapsed_at_a_short_height() -> None:
    text = top_text(80, height=24)
    assert len(text.splitlines()) <= 24
    check_golden("top_80x24.txt", text)


# ------------------------------------------------------------------------------ in full at 80


def test_report_at_80_columns_shows_every_figure_in_full() -> None:
    r = demo_report()
    text = report_text(80)
    assert "…" not in text
    words = set(re.split(r"\s+", text))
    for d in r.analysis.devices:
        cells = _dev_cells(d)
        energy, power, util = cells[5], cells[6], cells[7]
        for figure in (energy, power, util):
            assert figure in words, (d.device.device, figure)
        assert d.device.device[:20] in text  # long ids fold onto a second line
    assert len(r.verdicts) == 4
    for v in r.verdicts:
        assert _num(v.work_per_j) in words
        word = "PASS" if v.meets_target else "FAIL"
        assert re.search(rf"{re.escape(v.service)}\s+{re.escape(v.device_class)}.*{word}", text)


def test_top_at_80_columns_shows_every_device_and_service_in_full() -> None:
    state, _ = demo_top()
    text = top_text(80)
    for line in text.splitlines():
        if "…" in line:  # only long device ids are shortened (head…tail), never a figure
            assert line.startswith(" └ "), line
            assert "…" not in line.split(maxsplit=2)[-1], line
    for (_, node), view in state.nodes.items():
        if node == "node-09":
            assert re.search(r"node-09\s+OFFLINE", text)
            continue
        row = next(line for line in text.splitlines() if line.startswith(node))
        for d in view.devices.values():
            dev_row = next(
                line
                for line in text.splitlines()
                if line.startswith(f" └ {_short_id(d.device, 14)} ")
            )
            assert d.power_w is not None and d.util_ratio is not None and d.temp_c is not None
            assert _fmt_power(d.power_w) in dev_row
            assert f"{d.util_ratio * 100:.0f}%" in dev_row
            assert f"{d.temp_c:.0f}°C" in dev_row
        kind = next(iter(view.serving.values())).kinds()[0]
        unit = {"tokens": "tok", "inferences": "inf"}[kind]
        assert _fmt_rate(view.work_per_s(kind), unit) in row
    # every service on each device class, in its own unit; NPU rows with their target (the GPU
    # measured live × the phase-1 ratio, or set by hand) and their ratio to the baseline
    for svc, npu, gpu, unit, target in (
        ("chatbot", "rngd", "h100", "tok", "≥7.31"),  # 1.0 × the H100's 7.31 tok/J
        ("construction", "x220-compact", "a100", "inf", "≥31.9"),  # 2.0 × 15.9
        ("traffic", "warboy", "t4", "inf", "≥73.0"),
        ("food", "atom", "l4", "inf", "≥60.0"),  # --target food=60
    ):
        assert re.search(rf"{svc}\s+{gpu}\s+\d+\.\d {unit}/s\s+\S+ {unit}/J\s+\S+\s+base", text)
        assert re.search(rf"{svc}\s+{npu}\s+\d+\.\d {unit}/s\s+\S+ {unit}/J\s+{target}\s+\d", text)
    assert "tok/s" in text.splitlines()[2] and "inf/s" in text.splitlines()[2]  # fleet: per kind


def test_work_filter_keeps_one_kind() -> None:
    state, now = demo_top()
    opts = ViewOptions(work="tokens")
    text = record(120, [render(state, opts, now, width=120)])
    assert "chatbot" in text and "traffic" not in text and "inf/s" not in text
    assert "node-01" in text and "node-02" in text and "node-03" not in text


def test_report_not_a_terminal_prints_every_column(tmp_path: Path) -> None:
    lp = tmp_path / "demo.lp"
    lp.write_text("\n".join(fleet_lines()) + "\n", encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "kwatt.cli", "report", "--input", str(lp)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={"COLUMNS": "80", "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    header = next(line for line in out.stdout.splitlines() if line.startswith("service "))
    for h in ("device class", "energy method", "baseline", "margin", "verdict"):
        assert h in header  # one table, full headers
    assert "(1/" not in out.stdout and "…" not in out.stdout
    forced = subprocess.run(
        [sys.executable, "-m", "kwatt.cli", "report", "--input", str(lp), "--width", "80"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert forced.returncode == 0, forced.stderr
    assert "(1/" in forced.stdout
    assert max(len(line) for line in forced.stdout.splitlines()) <= 80


# ------------------------------------------------------------------------------ tmux, 80 × 50

NODES = (("tn1", "rngd:2", "chatbot"), ("tn2", "warboy:2", "traffic"), ("tn3", "t4:1", "food"))


def _need_tmux() -> str:
    tmux = shutil.which("tmux")
    if tmux is None:
        if in_ci():
            pytest.fail("tmux not found [CI is set, so a missing tool is an error]", pytrace=False)
        pytest.skip("tmux not found")
    return tmux


def _capture(tmux: str, session: str) -> str:
    return subprocess.run(
        [tmux, "capture-pane", "-p", "-t", session], capture_output=True, text=True, check=True
    ).stdout


@pytest.mark.services
@pytest.mark.slow
def test_top_in_an_80_column_terminal_against_emulated_nodes(mosquitto, tmp_path: Path) -> None:
    tmux = _need_tmux()
    site = f"faces{uuid.uuid4().hex[:6]}"
    session = f"kwatt-faces-{uuid.uuid4().hex[:6]}"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name, devices, service in NODES:
            cfg = tmp_path / f"{name}.yaml"
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "kwatt.cli",
                        "emulate",
                        "node",
                        "--devices",
                        devices,
                        "--service",
                        service,
                        "--root",
                        str(tmp_path / name),
                        "--name",
                        name,
                        "--site",
                        site,
                        "--mqtt",
                        mosquitto.url,
                        "--print-config",
                        str(cfg),
                        "--period",
                        "0.2",
                        "--duration",
                        "120",
                    ],
                    cwd=REPO,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for name, _, _ in NODES:
            cfg = tmp_path / f"{name}.yaml"
            deadline = time.monotonic() + 30
            while not cfg.exists() or not cfg.read_text(encoding="utf-8").strip():
                assert time.monotonic() < deadline, f"{name}: the emulator printed no config"
                time.sleep(0.2)
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "kwatt.cli", "agent", "--config", str(cfg)],
                    cwd=REPO,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        top = f"{sys.executable} -m kwatt.cli top --broker {mosquitto.url} --site {site}"
        subprocess.run(
            [
                tmux,
                "new-session",
                "-d",
                "-s",
                session,
                "-x",
                "80",
                "-y",
                "50",
                "-c",
                str(REPO),
                top,
            ],
            check=True,
            env={**os.environ, "TERM": "xterm-256color"},
        )
        screen = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            screen = _capture(tmux, session)
            rows = {
                name: next((ln for ln in screen.splitlines() if ln.startswith(name)), "")
                for name, _, _ in NODES
            }
            if all(
                re.search(r"\d+\.\d W", r)
                and re.search(r"\d+°C", r)
                and re.search(r"/s\b", r)
                and re.search(r"\d+\.\d (tok|inf)/s", r)
                for r in rows.values()
            ):
                break
            time.sleep(1.0)
        else:
            pytest.fail(
                f"the screen never showed power, temperature and work for every node:\n{screen}"
            )
        lines = screen.splitlines()
        assert max(len(line) for line in lines) <= 80
        assert re.search(r"chatbot\s+rngd\s+\d+\.\d tok/s", screen)
        assert re.search(r"traffic\s+warboy\s+\d+\.\d inf/s", screen) and re.search(
            r"food\s+t4\s+\d+\.\d inf/s", screen
        )
        dev_rows = [ln for ln in lines if ln.startswith(" └ ")]
        assert len(dev_rows) == 5
        for ln in dev_rows:
            assert (
                re.search(r"\d+\.\d W", ln) and re.search(r"\d+%", ln) and re.search(r"\d+°C", ln)
            )
        # keys: d cycles device rows auto -> all -> none; q quits
        subprocess.run([tmux, "send-keys", "-t", session, "d", "d"], check=True)
        deadline = time.monotonic() + 10
        while any(ln.startswith(" └ ") for ln in _capture(tmux, session).splitlines()):
            assert time.monotonic() < deadline, "d did not hide the device rows"
            time.sleep(0.3)
        assert "tn1" in _capture(tmux, session)
        subprocess.run([tmux, "send-keys", "-t", session, "q"], check=True)
        deadline = time.monotonic() + 10
        while (
            subprocess.run([tmux, "has-session", "-t", session], capture_output=True).returncode
            == 0
        ):
            assert time.monotonic() < deadline, "q did not quit kwatt top"
            time.sleep(0.2)
    finally:
        subprocess.run([tmux, "kill-session", "-t", session], capture_output=True)
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


# ------------------------------------------------------------------------------ any width


def test_every_width_fits_and_never_cuts_a_number() -> None:
    report = demo_report()
    state, now = demo_top()
    for width in range(40, 241, 9):
        text = record(width, list(table_renderables(report, width)))
        assert max(len(line) for line in text.splitlines()) <= width, width
        assert "…" not in text, width
        screen = record(width, [render(state, TOP_OPTS, now, width=width)])
        assert max(len(line) for line in screen.splitlines()) <= width, width
        for line in screen.splitlines():
            if "…" in line:
                assert line.startswith(" └ ") and "…" not in line.split(maxsplit=2)[-1], line


def test_warnings_have_their_place_in_both_faces() -> None:
    r = dataclasses.replace(demo_report(), warnings=("node-03: clock 2.1 s ahead of the broker",))
    text = record(80, list(table_renderables(r, 80)))
    assert "⚠ node-03: clock 2.1 s ahead of the broker" in text
    assert "## Warnings" in render_markdown(r)
    assert json.loads(render_json(r))["warnings"] == list(r.warnings)
    state, now = demo_top()
    state.nodes[("dc1", "node-03")].warnings.append("clock 2.1 s ahead of the broker")
    screen = record(80, [render(state, TOP_OPTS, now, width=80)])
    assert "⚠ node-03: clock 2.1 s ahead of the broker" in screen


def test_cli_width_and_target_options_are_checked(capsys: pytest.CaptureFixture[str]) -> None:
    assert _target("3.5") == ("*", 3.5)
    assert _target("chatbot=2") == ("chatbot", 2.0)
    for bad in ("x", "=2", "chatbot=-1", "food=nan"):
        with pytest.raises(Exception, match="SERVICE"):
            _target(bad)
    for argv in (["top", "--width", "20"], ["report", "--input", "x.lp", "--width", "ab"]):
        with pytest.raises(SystemExit):
            kwatt(argv)
        assert "expected a number of columns ≥ 40" in capsys.readouterr().err
