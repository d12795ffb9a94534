"""Shared fixtures: real Mosquitto, influxd and VictoriaMetrics processes (demo/services.py).

Session-scoped servers are shared by every test that asks for them (tests must therefore use unique
topics, client ids, databases and label values); ``fresh_mosquitto`` is a private broker, with
persistence on, for tests that stop and restart it.

A missing binary fails the test run when ``CI`` is set (CI must have installed it: see
``scripts/bootstrap.sh``) and skips the test locally; both print the ``apt-get install`` command.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from kwatt.demo.services import Influxd, MissingBinaryError, Mosquitto
from kwatt.demo.victoriametrics import VictoriaMetrics

S = TypeVar("S", Mosquitto, Influxd, VictoriaMetrics)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def start_or_skip(service: S) -> S:
    """Start ``service``; a missing binary skips the test locally and fails it in CI."""
    try:
        return service.start()
    except MissingBinaryError as e:
        if in_ci():
            pytest.fail(f"{e} [CI is set, so a missing server binary is an error]", pytrace=False)
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A broker shared by the whole session (no persistence). Use unique topics and client ids."""
    svc = start_or_skip(Mosquitto(tmp_path_factory.mktemp("mosquitto")))
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture
def fresh_mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A private broker for one test, with persistence: stop()/start() or restart() bring it back
    on the same port with its durable sessions and retained messages."""
    svc = start_or_skip(Mosquitto(tmp_path_factory.mktemp("fresh-mosquitto"), persistence=True))
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Influxd]:
    """An InfluxDB 1.6 server shared by the whole session. Use a unique database per test."""
    svc = start_or_skip(Influxd(tmp_path_factory.mktemp("influxd")))
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture(scope="session")
def victoria_metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    """A VictoriaMetrics server (an /api/v2/write target) shared by the whole session."""
    svc = start_or_skip(VictoriaMetrics(tmp_path_factory.mktemp("victoria-metrics")))
    try:
        yield svc
    finally:
        svc.stop()


WaitUntil = Callable[..., None]


def _wait_until(
    predicate: Callable[[], object],
    timeout: float = 10.0,
    what: str = "condition",
    interval: float = 0.02,
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


@pytest.fixture
def wait_until() -> WaitUntil:
    """``wait_until(predicate, timeout=10.0, what="...", interval=0.02)``: poll until truthy,
    else fail with ``timed out after N s waiting for <what>``."""
    return _wait_until


@pytest.fixture(autouse=True)
def _no_leaked_nvml_state() -> Iterator[None]:
    """``kwatt.emulators.libnvml.load_in_process`` points this process's NVML at one node by
    setting ``KWATT_NVML_STATE``; left set, every process a later test starts (a demo's agents)
    would inherit it and read that long-gone node instead of its own. Restore it after each test."""
    before = os.environ.get("KWATT_NVML_STATE")
    yield
    if before is None:
        os.environ.pop("KWATT_NVML_STATE", None)
    else:
        os.environ["KWATT_NVML_STATE"] = before
