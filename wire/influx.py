"""InfluxDB write paths and a small InfluxQL query client (DESIGN §1).

Two write paths, chosen by ``influx.api``:

* ``v1``: ``POST /write?db=...&rp=...&precision=ns`` with line protocol. InfluxDB 1.x, the 2.x
  v1-compatibility API and 3.x all accept it (docs.influxdata.com/influxdb/v2/api-guide/influxdb-1x/).
  Plain ``http.client`` with a keep-alive connection; basic auth (username + password) or ``Token``
  auth.
* ``v2``: influxdb-client's synchronous ``write_api`` (``/api/v2/write``) for InfluxDB 2.x/3.x/Cloud,
  with ``bucket`` (default: ``database``) and ``org``.

Errors split in two: :class:`InfluxUnavailable` (network, 5xx, 429, 408: retry later, never drop) and
:class:`InfluxRejected` (other 4xx: the data or the credentials are wrong, retrying cannot help).
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import http.client
import json
import ssl
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException
from urllib3.exceptions import HTTPError

from kwatt.wire.settings import InfluxConfig

__all__ = [
    "InfluxError",
    "InfluxQL",
    "InfluxRejected",
    "InfluxUnavailable",
    "V1Writer",
    "V2Writer",
    "Writer",
    "make_writer",
]


class InfluxError(Exception):
    """Root of InfluxDB errors."""


class InfluxUnavailable(InfluxError):
    """The server could not take the write now (connection, 5xx, 429, 408): retry."""


class InfluxRejected(InfluxError):
    """The server refused the write for good (4xx): retrying the same body cannot succeed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class Writer(Protocol):
    def write(self, body: bytes) -> None: ...
    def close(self) -> None: ...


def _classify(status: int, body: bytes) -> InfluxError:
    text = body.decode("utf-8", "replace").strip()[:500]
    with contextlib.suppress(ValueError, AttributeError):
        text = str(json.loads(text).get("error", text))
    if status >= 500 or status in (408, 429):
        return InfluxUnavailable(f"HTTP {status}: {text}")
    return InfluxRejected(status, text)


class _Http:
    """A keep-alive HTTP(S) connection to one InfluxDB base URL."""

    def __init__(self, cfg: InfluxConfig) -> None:
        u = urllib.parse.urlsplit(cfg.url)
        self.https = u.scheme == "https"
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or (443 if self.https else 80)
        self.base = u.path.rstrip("/")
        self.timeout_s = cfg.timeout_s
        self.ctx: ssl.SSLContext | None = None
        if self.https:
            self.ctx = ssl.create_default_context(cafile=cfg.ca_file)
            if not cfg.verify_tls:
                self.ctx.check_hostname = False
                self.ctx.verify_mode = ssl.CERT_NONE
        self.headers: dict[str, str] = {}
        token, password = cfg.token(), cfg.password()
        if token:
            self.headers["Authorization"] = f"Token {token}"
        elif cfg.username:
            raw = f"{cfg.username}:{password or ''}".encode()
            self.headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self.https:
                self._conn = http.client.HTTPSConnection(
                    self.host, self.port, timeout=self.timeout_s, context=self.ctx
                )
            else:
                self._conn = http.client.HTTPConnection(
                    self.host, self.port, timeout=self.timeout_s
                )
        return self._conn

    def request(
        self,
        method: str,
        path: str,
        params: dict[str, str],
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        hdrs = {**self.headers, **(headers or {})}
        for attempt in (0, 1):  # one silent retry when a kept-alive connection went stale
            conn = self._connection()
            try:
                conn.request(method, url, body=body, headers=hdrs)
                resp = conn.getresponse()
                return resp.status, resp.read()
            except (OSError, http.client.HTTPException) as e:
                self.close()
                if attempt == 1 or not isinstance(
                    e, http.client.RemoteDisconnected | BrokenPipeError | ConnectionResetError
                ):
                    raise InfluxUnavailable(f"{self.host}:{self.port}: {e}") from e
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class V1Writer:
    """Line protocol to ``/write`` (InfluxDB 1.x API)."""

    def __init__(self, cfg: InfluxConfig) -> None:
        self.cfg = cfg
        self.http = _Http(cfg)
        self.params = {"db": cfg.database, "precision": "ns"}
        if cfg.retention_policy:
            self.params["rp"] = cfg.retention_policy
        self._ready = not cfg.create_database

    def _create_database(self) -> None:
        q = f'CREATE DATABASE "{self.cfg.database}"'
        status, body = self.http.request("POST", "/query", {"q": q})
        if status != 200:
            raise _classify(status, body)
        self._ready = True

    def write(self, body: bytes) -> None:
        if not self._ready:
            self._create_database()
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.cfg.gzip:
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        status, resp = self.http.request("POST", "/write", self.params, body, headers)
        if status == 404 and b"database not found" in resp and self.cfg.create_database:
            self._create_database()
            status, resp = self.http.request("POST", "/write", self.params, body, headers)
        if status != 204:
            raise _classify(status, resp)

    def close(self) -> None:
        self.http.close()


class V2Writer:
    """influxdb-client's synchronous write API (``/api/v2/write``)."""

    def __init__(self, cfg: InfluxConfig) -> None:
        token = cfg.token()
        if token is None and cfg.username:
            token = f"{cfg.username}:{cfg.password() or ''}"  # InfluxDB 1.8+ v2-compat form
        self.bucket = cfg.bucket or (
            cfg.database + (f"/{cfg.retention_policy}" if cfg.retention_policy else "")
        )
        self.org = cfg.org
        self.client: Any = InfluxDBClient(
            url=cfg.url,
            token=token or "",
            org=cfg.org,
            timeout=int(cfg.timeout_s * 1000),
            enable_gzip=cfg.gzip,
            verify_ssl=cfg.verify_tls,
            ssl_ca_cert=cfg.ca_file,
        )
        self.api: Any = self.client.write_api(write_options=SYNCHRONOUS)

    def write(self, body: bytes) -> None:
        try:
            self.api.write(bucket=self.bucket, org=self.org, record=body)
        except ApiException as e:
            raise _classify(int(e.status or 0), (e.body or e.reason or "").encode()) from e
        except (HTTPError, OSError) as e:
            raise InfluxUnavailable(str(e)) from e

    def close(self) -> None:
        self.api.close()
        self.client.close()


def make_writer(cfg: InfluxConfig) -> Writer:
    return V1Writer(cfg) if cfg.api == "v1" else V2Writer(cfg)


@dataclass(frozen=True)
class Series:
    """One series of an InfluxQL result."""

    name: str
    tags: dict[str, str]
    columns: list[str]
    values: list[list[Any]]


class InfluxQL:
    """InfluxQL over ``GET /query`` (1.x, 2.x v1-compat, 3.x): chunked, errors raised."""

    def __init__(self, cfg: InfluxConfig) -> None:
        self.cfg = cfg
        self.http = _Http(cfg)

    def query(self, q: str, *, chunk_size: int = 10000) -> Iterator[Series]:
        """Yield series of every statement of ``q``; raise InfluxError on a statement error."""
        params = {
            "db": self.cfg.database,
            "q": q,
            "epoch": "ns",
            "chunked": "true",
            "chunk_size": str(chunk_size),
        }
        status, body = self.http.request("GET", "/query", params)
        if status != 200:
            raise _classify(status, body)
        for line in body.splitlines():  # chunked responses are one JSON document per line
            if not line.strip():
                continue
            doc = json.loads(line)
            if "error" in doc:
                raise InfluxRejected(status, str(doc["error"]))
            for result in doc.get("results", []):
                if "error" in result:
                    raise InfluxRejected(status, str(result["error"]))
                for s in result.get("series", []):
                    yield Series(s["name"], s.get("tags", {}), s["columns"], s.get("values", []))

    def count_points(self, measurement: str, where: str = "") -> int:
        """Points (rows: series × timestamp) of ``measurement`` matching ``where``."""
        clause = f" WHERE {where}" if where else ""
        q = f'SELECT * FROM "{measurement}"{clause} GROUP BY *'
        return sum(len(s.values) for s in self.query(q))

    def close(self) -> None:
        self.http.close()
