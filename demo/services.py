"""Private throw-away instances of the pipeline's servers: Mosquitto and InfluxDB 1.x here, and
VictoriaMetrics in :mod:`kwatt.demo.victoriametrics` (the same :class:`Service` machinery).

Used by the test suite (``tests/conftest.py``) and by ``kwatt demo``. Each service is a synchronous
context manager (also usable through explicit ``start()`` / ``stop()``) that

* picks free loopback ports (``bind 127.0.0.1:0``) once, and keeps them across ``stop()`` and
  ``start()`` so that outage tests can bring a server back at the same address;
* writes its configuration into a state directory (created if missing);
* starts the real Debian binary as a child in its own session, stdout/stderr appended to
  ``<state_dir>/<name>.log``;
* waits for readiness with a deadline (Mosquitto: TCP connect; influxd: ``GET /ping`` 204;
  VictoriaMetrics: ``GET /health`` 200) and raises :class:`ServiceError` carrying the tail of the
  log when the child dies or is not ready in time;
* stops with SIGTERM to the PID, then SIGKILL to its process group after a timeout. ``stop()`` is
  idempotent, and an ``atexit`` hook stops whatever is still running when the interpreter exits.

Only the standard library is used, so the helpers here cannot mask a bug in the product's own
InfluxDB or MQTT code. Configuration keys: mosquitto.conf(5)
(mosquitto.org/man/mosquitto-conf-5.html) and InfluxDB 1.x's configuration reference (docs.influxdata.com/influxdb/v1/administration/config/).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

__all__ = [
    "InfluxSeries",
    "Influxd",
    "MissingBinaryError",
    "Mosquitto",
    "Service",
    "ServiceError",
    "find_binary",
    "free_port",
    "http_request",
]

LOOPBACK = "127.0.0.1"

#: binary name -> Debian package that ships it
_PACKAGES: dict[str, str] = {
    "mosquitto": "mosquitto",
    "mosquitto_pub": "mosquitto-clients",
    "mosquitto_sub": "mosquitto-clients",
    "influxd": "influxdb",
    "influx": "influxdb-client",
    "victoria-metrics": "victoria-metrics",
}

#: ``mosquitto`` lives in /usr/sbin, which is not on an ordinary user's PATH
_SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")

_LOG_TAIL_CHARS = 4000

# No proxy for loopback requests, whatever http_proxy/HTTP_PROXY say.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ServiceError(RuntimeError):
    """A service could not be started, did not become ready, or answered with an error."""


class MissingBinaryError(ServiceError):
    """The server's binary is not installed; the message says which package to install."""

    def __init__(self, binary: str, package: str | None, searched: str) -> None:
        self.binary = binary
        self.package = package
        sudo = "" if _is_root() else "sudo "
        if package is None:
            fix = f"install the package that provides {binary!r}"
        else:
            fix = (
                f"install it with: {sudo}apt-get install -y {package}"
                " (or run scripts/bootstrap.sh, which installs everything kwatt needs)"
            )
        super().__init__(f"{binary}: binary not found (searched {searched}); {fix}")


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def find_binary(name: str, *, search_path: str | None = None) -> str:
    """Absolute path of the executable ``name``.

    Searches ``$PATH`` and then the sbin directories (Debian installs ``mosquitto`` in /usr/sbin,
    which is not on a normal user's PATH). ``search_path`` (an ``os.pathsep``-separated list)
    replaces both. Raises :class:`MissingBinaryError` with the ``apt-get install`` command.
    """
    if search_path is None:
        dirs = [d for d in os.environ.get("PATH", os.defpath).split(os.pathsep) if d]
        dirs += [d for d in _SBIN_DIRS if d not in dirs]
        search_path = os.pathsep.join(dirs)
    found = shutil.which(name, path=search_path)
    if found is None:
        raise MissingBinaryError(name, _PACKAGES.get(name), search_path)
    return str(Path(found).absolute())


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that was free on ``host`` a moment ago (the OS picks it: bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def _tail(path: Path, n: int = _LOG_TAIL_CHARS, since: int = 0) -> str:
    """The last ``n`` bytes of ``path`` written after byte offset ``since``, as text."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(since, size - n, 0))
            text = f.read().decode("utf-8", errors="replace")
    except OSError as e:
        return f"(log {path} unreadable: {e})"
    return text.strip() or "(log is empty)"


def http_request(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = 30.0,
) -> tuple[int, bytes]:
    """One HTTP request without proxies; returns (status, body) for every status, raises OSError."""
    # only ever called with http:// URLs built from this module's own loopback host and port
    req = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))  # noqa: S310
    try:
        with _HTTP.open(req, timeout=timeout_s) as resp:
            status: int = resp.status
            return status, resp.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.read()


# --------------------------------------------------------------------------- the common machinery


_LIVE: set[Service] = set()
_LIVE_LOCK = threading.Lock()


@atexit.register
def _stop_all_at_exit() -> None:
    """Safety net: stop every service this process started and did not stop."""
    with _LIVE_LOCK:
        services = list(_LIVE)
    for svc in services:
        if svc._owner_pid == os.getpid():  # never from a forked child that inherited the set
            with contextlib.suppress(Exception):
                svc.stop(timeout_s=5.0)


class Service:
    """One child server process: ports, config, spawn, readiness, stop. Subclasses fill the gaps."""

    #: binary name, also the stem of the log file
    binary_name: ClassVar[str]
    #: log file name in the state directory
    log_name: ClassVar[str]

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        *,
        binary: str | None = None,
        ready_timeout_s: float = 30.0,
    ) -> None:
        self.state_dir = Path(state_dir).absolute()
        self.host = LOOPBACK
        self.port = free_port()
        self.log_path = self.state_dir / self.log_name
        self.ready_timeout_s = ready_timeout_s
        self.returncode: int | None = None
        self._binary = binary
        self._proc: subprocess.Popen[bytes] | None = None
        self._owner_pid = os.getpid()
        self._lock = threading.RLock()
        # ports were picked here and may be re-picked if another process grabs one before the
        # first start binds it; once a start succeeded they are kept for every later start
        self._ports_settled = False
        self._log_offset = 0

    # -- subclass hooks

    def _pick_ports(self) -> None:
        self.port = free_port()

    def _write_config(self) -> None:
        raise NotImplementedError

    def _argv(self, binary: str) -> list[str]:
        raise NotImplementedError

    def _env(self) -> dict[str, str]:
        return dict(os.environ)

    def _is_ready(self) -> bool:
        raise NotImplementedError

    # -- public API

    @property
    def url(self) -> str:
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        """PID of the running child, None when it is not running."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def start(self) -> Self:
        """Start the server and wait until it is ready. A no-op when it is already running."""
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                return self
            self._proc = None
            binary = self._binary or find_binary(self.binary_name)
            if not os.access(binary, os.X_OK):
                raise MissingBinaryError(binary, _PACKAGES.get(self.binary_name), binary)
            self.state_dir.mkdir(parents=True, exist_ok=True)
            attempts = 1 if self._ports_settled else 3
            for attempt in range(1, attempts + 1):
                try:
                    self._spawn_and_wait(binary)
                except ServiceError as e:
                    port_taken = "address already in use" in str(e).lower()
                    if not port_taken or attempt == attempts:
                        raise
                    self._pick_ports()  # lost the race for a port picked a moment ago
                else:
                    break
            self._ports_settled = True
            with _LIVE_LOCK:
                _LIVE.add(self)
            return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM the child by PID, wait up to ``timeout_s``, then SIGKILL. Idempotent."""
        with self._lock:
            proc, self._proc = self._proc, None
            with _LIVE_LOCK:
                _LIVE.discard(self)
            if proc is None:
                return
            self.returncode = _terminate(proc, timeout_s)

    def restart(self) -> Self:
        """Stop, then start again on the same port(s) with the same state directory."""
        self.stop()
        return self.start()

    def log_tail(self, n: int = _LOG_TAIL_CHARS) -> str:
        """The end of the log written since the latest start."""
        return _tail(self.log_path, n, since=self._log_offset)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"<{type(self).__name__} {self.url} {state} state_dir={str(self.state_dir)!r}>"

    # -- internals

    def _spawn_and_wait(self, binary: str) -> None:
        self._write_config()
        argv = self._argv(binary)
        with self.log_path.open("ab") as log:
            self._log_offset = log.tell()
            log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(argv)}\n".encode())
            log.flush()
            try:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.state_dir,
                    env=self._env(),
                    start_new_session=True,  # own process group: a Ctrl-C to ours is not its
                )
            except OSError as e:
                raise ServiceError(f"{self.binary_name}: cannot run {binary}: {e}") from e
        self._proc = proc
        deadline = time.monotonic() + self.ready_timeout_s
        pause = 0.005
        while True:
            rc = proc.poll()
            if rc is not None:
                self._proc = None
                self.returncode = rc
                raise ServiceError(
                    f"{self.binary_name} exited with status {rc} before it was ready "
                    f"({self.url}); log {self.log_path}:\n{self.log_tail()}"
                )
            if self._is_ready():
                if proc.poll() is None:
                    return
                continue  # it died right after answering (someone else owns the port?)
            if time.monotonic() > deadline:
                self._proc = None
                self.returncode = _terminate(proc, 5.0)
                raise ServiceError(
                    f"{self.binary_name} was not ready at {self.url} within "
                    f"{self.ready_timeout_s:g} s; log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.1)

    def _http_status(self, path: str) -> tuple[int, Mapping[str, str]] | None:
        """(status, headers) of ``GET path``, or None when nothing answers (yet)."""
        req = urllib.request.Request(self.url + path)  # noqa: S310 - http://127.0.0.1:PORT
        try:
            with _HTTP.open(req, timeout=1.0) as resp:
                resp.read()
                return resp.status, dict(resp.headers.items())
        except urllib.error.HTTPError as e:
            with e:
                return e.code, dict(e.headers.items())
        except OSError:
            return None


def _terminate(proc: subprocess.Popen[bytes], timeout_s: float) -> int:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            return proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            # the child leads its own process group (start_new_session): take anything it forked too
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
    return proc.wait()


# --------------------------------------------------------------------------- Mosquitto


class Mosquitto(Service):
    """A private Mosquitto 2.x broker on ``127.0.0.1:<free port>``, anonymous access allowed.

    QoS 1/2 messages are never dropped for a lagging subscriber: ``max_queued_messages 0`` lifts the
    default 1000-message per-client queue limit, past which Mosquitto drops messages it already
    PUBACKed to the publisher (mosquitto.conf(5)). ``max_inflight_messages`` only sizes the
    window of unacknowledged messages in flight to one client (messages beyond it wait in that
    queue, they are not dropped); it is set to 0 (no maximum) as in the measured configuration,
    with MQTT 5 clients bounding it by their Receive Maximum.

    With ``persistence=True`` a stop/start (SIGTERM writes ``mosquitto.db``; ``autosave_interval 1``
    covers a SIGKILL) keeps retained messages, durable sessions, their plain subscriptions and
    the QoS 1 messages queued for them. Measured with 2.0.11: **shared subscriptions
    (``$share/group/...``) are not restored**, so after a restart a durable session must
    subscribe again, and messages published before it does are not delivered to that group.
    """

    binary_name = "mosquitto"
    log_name = "mosquitto.log"

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        *,
        persistence: bool = False,
        extra_conf: str = "",
        binary: str | None = None,
        ready_timeout_s: float = 30.0,
    ) -> None:
        super().__init__(state_dir, binary=binary, ready_timeout_s=ready_timeout_s)
        self.persistence = persistence
        self.extra_conf = extra_conf
        self.conf_path = self.state_dir / "mosquitto.conf"
        self.persistence_dir = self.state_dir / "persistence"

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def _write_config(self) -> None:
        lines = [
            "# written by demo/services.py; regenerated at every start",
            "per_listener_settings false",
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            "max_queued_messages 0",
            "max_queued_bytes 0",
            "max_inflight_messages 0",
            "log_dest stderr",  # the child's stderr is the log file
            "log_type error",
            "log_type warning",
            "log_type notice",  # "Outgoing messages are being dropped ..." is a notice
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        ]
        if _is_root():
            # Started as root, mosquitto drops to user 'mosquitto' after reading this file, and
            # then cannot write the persistence DB (or open password/ACL files given in
            # extra_conf) inside a 0700 directory such as pytest's or mkdtemp's. chmod-ing the
            # state dir is not enough, every parent needs o+x too, so keep the privileges of
            # the process that started it instead. Run as non-root, mosquitto ignores `user`.
            lines.append("user root")
        if self.persistence:
            self.persistence_dir.mkdir(parents=True, exist_ok=True)
            lines += [
                "persistence true",
                f"persistence_location {self.persistence_dir}/",  # trailing slash required
                "persistence_file mosquitto.db",
                "autosave_interval 1",  # a SIGKILL loses at most ~1 s of broker state
            ]
        else:
            lines.append("persistence false")
        text = "\n".join(lines) + "\n"
        if self.extra_conf:
            text += "# extra_conf\n" + self.extra_conf.rstrip("\n") + "\n"
        self.conf_path.write_text(text, encoding="utf-8")

    def _argv(self, binary: str) -> list[str]:
        return [binary, "-c", str(self.conf_path)]  # foreground; never -d

    def _is_ready(self) -> bool:
        # An MQTT handshake rather than a bare TCP connect: a connect alone would also succeed
        # against whatever else might own the port in the moment before mosquitto fails to bind.
        return _mqtt_connack(self.host, self.port, timeout_s=0.5)


# MQTT 3.1.1 CONNECT: protocol "MQTT" level 4, clean session, keepalive 10 s, empty client id
_CONNECT = bytes([0x10, 12, 0, 4, *b"MQTT", 4, 0x02, 0, 10, 0, 0])
_DISCONNECT = bytes([0xE0, 0])


def _mqtt_connack(host: str, port: int, timeout_s: float) -> bool:
    """True when an MQTT broker answers CONNECT with a CONNACK (whatever its return code: with
    ``allow_anonymous false`` in extra_conf it is "not authorized", and still a broker)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as s:
            s.sendall(_CONNECT)
            head = s.recv(4)
            if head[:2] == bytes([0x20, 2]):
                with contextlib.suppress(OSError):
                    s.sendall(_DISCONNECT)
                return True
            return False
    except OSError:
        return False


# --------------------------------------------------------------------------- InfluxDB 1.x


@dataclass(frozen=True)
class InfluxSeries:
    """One series of an InfluxQL result."""

    name: str
    tags: dict[str, str]
    columns: list[str]
    values: list[list[Any]]

    def rows(self) -> list[dict[str, Any]]:
        """The values as ``{column: value}`` dicts, tags included."""
        return [{**self.tags, **dict(zip(self.columns, v, strict=False))} for v in self.values]


def _quote_ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Influxd(Service):
    """A private InfluxDB 1.x (Debian's ``influxd`` 1.6.7) on ``127.0.0.1:<free port>``.

    Config (InfluxDB 1.x configuration reference): no phoning home, RPC/backup port moved off 8088
    to another free loopback port, meta/data/wal under the state dir, unlimited body size, no
    ``_internal`` monitor database, log level warn. ``INFLUXDB_*`` variables are removed from the
    child's environment, since they would override the file.
    """

    binary_name = "influxd"
    log_name = "influxd.log"

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        *,
        binary: str | None = None,
        ready_timeout_s: float = 30.0,
    ) -> None:
        super().__init__(state_dir, binary=binary, ready_timeout_s=ready_timeout_s)
        self.rpc_port = free_port()
        self.conf_path = self.state_dir / "influxdb.conf"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _pick_ports(self) -> None:
        self.port = free_port()
        self.rpc_port = free_port()

    def _write_config(self) -> None:
        d = self.state_dir

        def q(s: object) -> str:
            return json.dumps(str(s))  # a JSON string is a valid TOML basic string

        self.conf_path.write_text(
            f"""# written by demo/services.py; regenerated at every start
reporting-enabled = false
bind-address = {q(f"{self.host}:{self.rpc_port}")}

[meta]
  dir = {q(d / "meta")}

[data]
  dir = {q(d / "data")}
  wal-dir = {q(d / "wal")}
  query-log-enabled = false

[http]
  bind-address = {q(f"{self.host}:{self.port}")}
  log-enabled = false
  max-body-size = 0

[monitor]
  store-enabled = false

[logging]
  level = "warn"
""",
            encoding="utf-8",
        )

    def _argv(self, binary: str) -> list[str]:
        return [binary, "-config", str(self.conf_path)]

    def _env(self) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if not k.startswith("INFLUXDB_")}

    def _is_ready(self) -> bool:
        answer = self._http_status("/ping")
        return answer is not None and answer[0] == 204 and "X-Influxdb-Version" in answer[1]

    # -- helpers (standard library only)

    def query(self, db: str | None, q: str) -> list[InfluxSeries]:
        """Run InfluxQL (``POST /query``); every series of every statement, in order.

        Raises :class:`ServiceError` on an HTTP error (1.x answers a parse error with 400) and on a
        per-statement ``error``.
        """
        params = {"q": q, "epoch": "ns"}
        if db is not None:
            params["db"] = db
        try:
            status, body = http_request(
                "POST",
                f"{self.url}/query",
                body=urllib.parse.urlencode(params).encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
        except OSError as e:
            raise ServiceError(f"influxd {self.url}: query failed: {e}") from e
        if status != 200:
            raise ServiceError(f"influxd {self.url}: HTTP {status} for {q!r}: {body[:500]!r}")
        doc = json.loads(body)
        if "error" in doc:
            raise ServiceError(f"influxd {self.url}: {doc['error']} (query {q!r})")
        series: list[InfluxSeries] = []
        for result in doc.get("results", []):
            if "error" in result:
                raise ServiceError(f"influxd {self.url}: {result['error']} (query {q!r})")
            for s in result.get("series", []):
                series.append(
                    InfluxSeries(
                        name=str(s.get("name", "")),
                        tags={str(k): str(v) for k, v in (s.get("tags") or {}).items()},
                        columns=[str(c) for c in s.get("columns", [])],
                        values=[list(v) for v in s.get("values", [])],
                    )
                )
        return series

    def create_database(self, name: str) -> None:
        """``CREATE DATABASE`` (a no-op when it exists)."""
        self.query(None, f"CREATE DATABASE {_quote_ident(name)}")

    def write(self, db: str, lines: str | bytes, *, precision: str = "ns") -> None:
        """``POST /write`` line protocol. ``precision``: ns, u (or us), ms, s.

        influxd 1.6 silently treats ``precision=us`` as nanoseconds (its v1 ``/write`` API documents
        ``n``, ``u``, ``ms``, ``s``, ``m``, ``h``: docs.influxdata.com/influxdb/v1/tools/api/), so
        ``us`` is sent as ``u``.
        """
        wire = {"ns": "n", "n": "n", "u": "u", "us": "u", "ms": "ms", "s": "s"}.get(precision)
        if wire is None:
            raise ValueError(f"precision must be ns, u, ms or s, not {precision!r}")
        body = lines.encode() if isinstance(lines, str) else lines
        qs = urllib.parse.urlencode({"db": db, "precision": wire})
        try:
            status, resp = http_request("POST", f"{self.url}/write?{qs}", body=body)
        except OSError as e:
            raise ServiceError(f"influxd {self.url}: write failed: {e}") from e
        if status != 204:
            raise ServiceError(f"influxd {self.url}: write HTTP {status}: {resp[:500]!r}")

    def count(self, db: str, measurement: str, field: str) -> int:
        """``SELECT count(field) FROM measurement``: 0 when there is nothing."""
        # identifiers are double-quoted and escaped by _quote_ident, so no injection
        q = f"SELECT count({_quote_ident(field)}) FROM {_quote_ident(measurement)}"
        series = self.query(db, q)
        total = 0
        for s in series:
            for row in s.values:
                total += int(row[1] or 0)
        return total


# --------------------------------------------------------------------------- VictoriaMetrics
