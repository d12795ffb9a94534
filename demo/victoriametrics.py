"""A private VictoriaMetrics: an ``/api/v2/write`` and ``/write`` target for the tests, read back
with PromQL/MetricsQL (it has no InfluxQL and no Flux). A :class:`kwatt.demo.services.Service` like
the Mosquitto and InfluxDB of :mod:`kwatt.demo.services`, configured by command-line flags only
(``victoria-metrics -help`` lists them).
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any

from kwatt.demo.services import Service, ServiceError, http_request

__all__ = ["VictoriaMetrics"]


def _label_matchers(labels: Mapping[str, str]) -> str:
    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return ",".join(f'{k}="{esc(v)}"' for k, v in sorted(labels.items()))


def _series_key(metric: Mapping[str, str]) -> str:
    """``name{a="1",b="2"}``, labels sorted: a stable, readable identity for one series."""
    labels = {k: v for k, v in metric.items() if k != "__name__"}
    return f"{metric.get('__name__', '')}{{{_label_matchers(labels)}}}"


class VictoriaMetrics(Service):
    """A private VictoriaMetrics (Debian 1.79) on ``127.0.0.1:<free port>``.

    An ``/api/v2/write`` and ``/write`` target for tests. It has no InfluxQL and no Flux: read
    back with PromQL/MetricsQL.

    A line ``cpu,node=n1 load=0.5`` becomes the series ``cpu_load{node="n1"}`` (plus ``db="..."``
    when written to ``/write?db=...``; the v2 ``bucket`` is ignored in 1.79).
    """

    binary_name = "victoria-metrics"
    log_name = "victoria-metrics.log"

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        *,
        retention: str = "100y",
        binary: str | None = None,
        ready_timeout_s: float = 30.0,
    ) -> None:
        super().__init__(state_dir, binary=binary, ready_timeout_s=ready_timeout_s)
        self.retention = retention
        self.data_dir = self.state_dir / "data"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _write_config(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)  # all configuration is in flags

    def _argv(self, binary: str) -> list[str]:
        return [
            binary,
            f"-httpListenAddr={self.host}:{self.port}",
            f"-storageDataPath={self.data_dir}",
            f"-retentionPeriod={self.retention}",
            "-search.latencyOffset=0s",  # fresh samples are visible to queries at once
            "-search.disableCache",  # no rollup-result cache: read-after-write in tests
            "-loggerLevel=ERROR",
        ]

    def _is_ready(self) -> bool:
        answer = self._http_status("/health")
        return answer is not None and answer[0] == 200

    # -- helpers (standard library only)

    def _get_json(self, path: str, params: Mapping[str, str]) -> Any:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            status, body = http_request("GET", url)
        except OSError as e:
            raise ServiceError(f"victoria-metrics {self.url}: {path} failed: {e}") from e
        if status != 200:
            raise ServiceError(f"victoria-metrics {self.url}: {path} HTTP {status}: {body[:500]!r}")
        return json.loads(body)

    def force_flush(self) -> None:
        """Make every sample written so far visible to queries."""
        try:
            status, body = http_request("GET", f"{self.url}/internal/force_flush")
        except OSError as e:
            raise ServiceError(f"victoria-metrics {self.url}: force_flush failed: {e}") from e
        if status != 200:
            raise ServiceError(f"victoria-metrics {self.url}: force_flush HTTP {status}: {body!r}")

    def query_vector(
        self, promql: str, *, at: float | None = None
    ) -> list[tuple[dict[str, str], float]]:
        """Instant PromQL/MetricsQL query (``/api/v1/query``) after a flush: (labels, value)s.

        Evaluated at ``at`` (Unix seconds). By default that is 60 s ahead of the wall clock:
        evaluated at "now", VictoriaMetrics 1.79 misses samples written in the last second or
        two (the evaluation time is cut to whole seconds, measured). Bare selectors look back
        5 minutes from ``at``; use ``*_over_time(m[window])`` or :meth:`export` for older samples.
        """
        self.force_flush()
        when = time.time() + 60.0 if at is None else at
        params = {"query": promql, "time": f"{when:.3f}"}
        doc = self._get_json("/api/v1/query", params)
        if doc.get("status") != "success":
            raise ServiceError(f"victoria-metrics {self.url}: query {promql!r}: {doc}")
        data = doc["data"]
        if data.get("resultType") == "scalar":
            return [({}, float(data["result"][1]))]
        return [
            ({str(k): str(v) for k, v in r["metric"].items()}, float(r["value"][1]))
            for r in data["result"]
        ]

    def query(self, promql: str, *, at: float | None = None) -> float:
        """Instant query that must yield exactly one value, e.g. ``sum(count_over_time(m[1d]))``."""
        result = self.query_vector(promql, at=at)
        if len(result) != 1:
            raise ServiceError(
                f"victoria-metrics {self.url}: {promql!r} gave {len(result)} series, expected 1"
                + (f": {[_series_key(m) for m, _ in result][:10]}" if result else "")
            )
        return result[0][1]

    def export(self, match: str) -> Iterator[tuple[dict[str, str], list[int], list[float]]]:
        """Every raw sample of the series matching ``match`` (``/api/v1/export``), whatever its
        timestamp: (labels, timestamps in ms, values) per series."""
        self.force_flush()
        # the default end ("now", cut to whole seconds) misses samples written a moment ago
        end = str(int(time.time()) + 86400)
        url = f"{self.url}/api/v1/export?{urllib.parse.urlencode({'match[]': match, 'end': end})}"
        try:
            status, body = http_request("GET", url)
        except OSError as e:
            raise ServiceError(f"victoria-metrics {self.url}: export failed: {e}") from e
        if status != 200:
            raise ServiceError(f"victoria-metrics {self.url}: export HTTP {status}: {body[:500]!r}")
        for line in body.splitlines():
            if line.strip():
                doc = json.loads(line)
                yield (
                    {str(k): str(v) for k, v in doc["metric"].items()},
                    [int(t) for t in doc["timestamps"]],
                    [float(v) for v in doc["values"]],
                )

    def series_values(
        self, metric: str, labels: Mapping[str, str] | None = None
    ) -> dict[str, float]:
        """Latest raw value of each series of ``metric`` whose labels include ``labels``.

        Keys are ``name{label="value",...}`` with sorted labels; uses the export API, so samples
        with old timestamps are found too.
        """
        match = f"{metric}{{{_label_matchers(labels or {})}}}"
        out: dict[str, float] = {}
        for m, timestamps, values in self.export(match):
            if values:
                latest = max(range(len(values)), key=lambda i: timestamps[i])
                out[_series_key(m)] = values[latest]
        return out

    def series_count(self, match: str) -> int:
        """How many series matching ``match`` hold samples, whatever their timestamps.

        (Counted from the export API: 1.79's ``/api/v1/series`` misses series whose only
        samples lie outside its day-based index range.)
        """
        return sum(1 for _ in self.export(match))

    def sample_count(self, match: str) -> int:
        """How many raw samples the series matching ``match`` hold, whatever their timestamps."""
        return sum(len(v) for _, _, v in self.export(match))
