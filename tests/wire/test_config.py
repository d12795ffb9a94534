"""Config files: examples load; unknown keys, wrong types and bad durations name file and key path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kwatt.agent.config import load_agent_config
from kwatt.ingest.config import load_ingest_config
from kwatt.wire.settings import ConfigError, parse_duration, read_secret

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def write(tmp_path: Path, text: str, name: str = "agent.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_examples_load():
    a = load_agent_config(EXAMPLES / "agent.yaml")
    assert (a.site, a.node) == ("dc1", "npu-node-01")
    assert [c.name for c in a.collectors] == ["rngd", "llm"]
    assert a.collectors[0].timeout_s == 0.8
    assert a.mqtt.reconnect_min_s == 0.5
    i = load_ingest_config(EXAMPLES / "ingest.yaml")
    assert i.batch.max_delay_s == 0.2 and i.influx.api == "v1"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(2, 2.0), (0.5, 0.5), ("500ms", 0.5), ("2s", 2.0), ("1.5m", 90.0), ("1h", 3600.0)],
)
def test_durations(value, seconds):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("site: a\nnode: b\nbogus: 1\n", "agent.yaml: unknown key 'bogus'"),
        ("site: a\nnode: b\nmqtt:\n  keepalive_s: soon\n", "mqtt.keepalive_s: expected a duration"),
        ("site: a\nnode: b\nmqtt:\n  keepalive_s: -1\n", "mqtt.keepalive_s"),
        (
            "site: a\nnode: b\npublish:\n  max_batch_points: many\n",
            "publish.max_batch_points: expected an integer",
        ),
        ("site: a\nnode: b\nmqtt:\n  prtocol: 5\n", "mqtt: unknown key 'prtocol'"),
        ("site: a\nnode: b\nmqtt:\n  url: http://x\n", "mqtt.url"),
        ("site: a b\nnode: b\n", "site"),
        ("node: b\n", "site: required key missing"),
        ("site: a\nnode: b\ncollectors:\n  - type: nope\n", "collectors[0].type: expected one of"),
        (
            "site: a\nnode: b\ncollectors:\n  - type: furiosa\n    rooot: /x\n",
            "collectors[0]: unknown key 'rooot'",
        ),
        (
            "site: a\nnode: b\ncollectors:\n  - type: furiosa\n    interval_s: 1x\n",
            "collectors[0]: expected a duration",
        ),
        ("site: a\nnode: b\ncollectors:\n  - type: furiosa\n  - type: furiosa\n", "duplicate name"),
        ("- just a list\n", "expected a mapping at the top level"),
        ("site: [unclosed\n", "not valid YAML"),
        ("site: a\nnode: b\nlog_level: loud\n", "log_level: expected one of"),
    ],
)
def test_agent_config_errors_name_file_and_key(tmp_path, body, message):
    p = write(tmp_path, body)
    with pytest.raises(ConfigError) as e:
        load_agent_config(p)
    assert str(p) in str(e.value)
    assert message in str(e.value)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("influx:\n  api: v3\n", "influx.api: expected one of ['v1', 'v2']"),
        ("influx:\n  url: 8086\n", "influx.url: expected a string"),
        ("batch:\n  max_delay_s: fast\n", "batch.max_delay_s"),
        ("batch:\n  max_points: 0\n", "max_points"),
        ("group: 'a/b'\n", "group"),
    ],
)
def test_ingest_config_errors(tmp_path, body, message):
    p = write(tmp_path, body, "ingest.yaml")
    with pytest.raises(ConfigError) as e:
        load_ingest_config(p)
    assert str(p) in str(e.value) and message in str(e.value)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_agent_config(tmp_path / "absent.yaml")


def test_secrets_from_file_and_env(tmp_path, monkeypatch):
    f = tmp_path / "pw"
    f.write_text("s3cret\n", encoding="utf-8")
    os.chmod(f, 0o600)
    assert read_secret(str(f), None, "mqtt password") == "s3cret"
    monkeypatch.setenv("KWATT_TEST_SECRET", "tok")
    assert read_secret(None, "KWATT_TEST_SECRET", "influx token") == "tok"
    with pytest.raises(ConfigError, match="KWATT_UNSET_SECRET is not set"):
        read_secret(None, "KWATT_UNSET_SECRET", "influx token")
    empty = tmp_path / "empty"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match="is empty"):
        read_secret(str(empty), None, "mqtt password")


def test_world_readable_secret_warns_without_leaking_it(tmp_path, caplog):
    f = tmp_path / "pw"
    f.write_text("hunter2\n", encoding="utf-8")
    os.chmod(f, 0o644)
    p = write(tmp_path, f"site: a\nnode: b\nmqtt:\n  username: u\n  password_file: {f}\n")
    cfg = load_agent_config(p)
    assert "readable by group/others" in caplog.text
    assert "hunter2" not in caplog.text
    assert cfg.mqtt.password() == "hunter2"
    assert "hunter2" not in repr(cfg)


def test_collector_timeout_reaches_a_collector_with_its_own_io_timeout(tmp_path):
    p = write(
        tmp_path,
        "site: a\nnode: b\ncollectors:\n"
        "  - type: serving\n    url: http://127.0.0.1:1/metrics\n    service: chat\n"
        "    interval_s: 2s\n    timeout_s: 750ms\n",
    )
    entry = load_agent_config(p).collectors[0]
    assert entry.timeout_s == 0.75
    assert entry.options.timeout_s == 0.75  # type: ignore[attr-defined]
