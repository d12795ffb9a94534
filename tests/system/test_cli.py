"""The `kwatt` command: every subcommand has its own --help; config checks and errors."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from kwatt.cli import build_parser, main

REPO = Path(__file__).resolve().parents[2]


def subcommands() -> list[str]:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return sorted(action.choices)
    raise AssertionError("no subcommands")


def test_help_lists_every_subcommand():
    out = subprocess.run(
        [sys.executable, "-m", "kwatt.cli", "--help"], capture_output=True, text=True, cwd=REPO
    )
    assert out.returncode == 0
    names = subcommands()
    assert {"agent", "ingest", "demo", "emulate"} <= set(names)
    for name in names:
        assert name in out.stdout


@pytest.mark.parametrize("name", subcommands())
def test_each_subcommand_has_its_own_help(name):
    out = subprocess.run(
        [sys.executable, "-m", "kwatt.cli", name, "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr
    assert "usage:" in out.stdout and "--" in out.stdout


def test_agent_check_validates_the_example(capsys):
    assert main(["agent", "--config", str(REPO / "examples" / "agent.yaml"), "--check"]) == 0
    assert "OK" in capsys.readouterr().out


def test_ingest_check_validates_the_example(capsys):
    assert main(["ingest", "--config", str(REPO / "examples" / "ingest.yaml"), "--check"]) == 0


def test_a_bad_config_exits_2_naming_file_and_key(tmp_path, capsys):
    p = tmp_path / "a.yaml"
    p.write_text("site: a\nnode: b\nmqtt:\n  url: mqtt://x\n  keepalive: 3\n")
    assert main(["agent", "--config", str(p), "--check"]) == 2
    err = capsys.readouterr().err
    assert str(p) in err and "mqtt" in err and "keepalive" in err
