"""An inference-serving runtime's Prometheus ``/metrics``: completed requests, tokens and latency.

Metric names per runtime (docs/device-interfaces.md §6.1 vLLM, §6.2 furiosa-llm):

========================  =============================================================
furiosa-llm 2026.x        ``furiosa_llm_request_success_total{finished_reason}``,
and 2025.3.1              ``furiosa_llm_generation_tokens_total``,
                          ``furiosa_llm_e2e_request_latency_seconds`` (histogram)
furiosa-llm 2025.2–3.0    the same with the colon prefix ``furiosa_llm:``
vLLM (and vllm-rbln)      ``vllm:request_success_total``, ``vllm:generation_tokens_total``,
                          ``vllm:e2e_request_latency_seconds``
Triton (§6.4)             ``nv_inference_request_success{model,version}``,
                          ``nv_inference_count`` (a batch of n counts n)
========================  =============================================================

Triton: ``requests_total`` is ``nv_inference_request_success`` and ``inferences_total`` is
``nv_inference_count``, summed over models and versions (``model_name`` selects Triton's ``model``
label). An ensemble counts each client request once for itself and once more for every composing
model it calls (tensorrtllm_backend issue #49: ``ensemble``, ``preprocessing`` and
``postprocessing`` all at 59 for 59 client requests; tests/fixtures/real/serving), so the sum over
models over-counts: the composing models are left out of the sum. They are known from the
collector's ``composing_models`` list, or from Triton's model configuration API when
``model_config_url`` is set (Triton's HTTP port, ``GET /v2/models/<name>/config``: every
``ensemble_scheduling.step[].model_name`` of an ensemble is a composing model; asked once per model
name). A model never recognised as composing is counted, so an unlisted ensemble still over-counts:
list it, or set ``model_config_url``. Direct client calls to a composing model are left out with
the rest of its count (Triton's counters cannot tell the two apart). Triton has no request-latency histogram, and its latency summaries are off by default
(``--metrics-config summary_latencies=true``) and quantiles over Triton's own sliding window, not
over our poll: only the mean latency (Δ``nv_inference_request_duration_us`` / Δsuccess) could be
derived, and the ``serving`` measurement has no field for it, so p50/p99 are absent for Triton rather
than invented.

``requests_total`` is the sum of ``request_success_total`` over its series (finished reasons,
engines), ``tokens_total`` the generated tokens; both are the runtime's cumulative counters.
Latency p50/p99 are computed from the *increase* of the end-to-end latency histogram since the
previous poll, with Prometheus ``histogram_quantile``'s linear interpolation inside a bucket; with
no request completed in the window (or on the first poll) they are absent. A histogram that went
backwards (server restart) counts from zero: its new value is the window's increase.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import re
import time
import urllib.error
import urllib.request
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import quote, urlsplit, urlunsplit

from kwatt.collectors.base import CollectorError, CollectorTimeout, CollectorUnavailable, ParseError
from kwatt.collectors.plugin import CollectorPlugin, Entries, Surface
from kwatt.wire.model import DeviceInfo, Sample, validate_tag_value

__all__ = [
    "PLUGIN",
    "RUNTIME_PREFIXES",
    "Config",
    "Exposition",
    "PromSample",
    "ServingCollector",
    "ServingSnapshot",
    "fetch",
    "histogram_delta",
    "histogram_quantile",
    "metrics_url",
    "parse_exposition",
    "parse_model_config",
    "parse_value",
    "snapshot",
    "triton_models",
]

#: Metric-name prefixes per runtime, the current spelling first (§6.1, §6.2).
RUNTIME_PREFIXES: Mapping[str, tuple[str, ...]] = {
    "furiosa-llm": ("furiosa_llm_", "furiosa_llm:"),
    "vllm": ("vllm:",),
    "vllm-rbln": ("vllm:",),  # §6.3: a vLLM platform plugin, exposes upstream vLLM's metrics
}
#: Triton Inference Server's per-model counters (§6.4), labels ``model`` and ``version``.
TRITON = "triton"
TRITON_SUCCESS = "nv_inference_request_success"
TRITON_COUNT = "nv_inference_count"
_ALL_PREFIXES = ("furiosa_llm_", "furiosa_llm:", "vllm:")
REQUESTS = "request_success_total"
TOKENS = "generation_tokens_total"
LATENCY = "e2e_request_latency_seconds"
#: Largest body read from a /metrics endpoint.
MAX_BODY_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Config:
    """Options of a ``serving`` collector entry."""

    #: The runtime's metrics URL; a URL without a path gets ``/metrics``.
    url: str
    #: The service this runtime serves (the ``service`` tag).
    service: str
    #: The runtime (the ``runtime`` tag): picks which metric names are read first.
    runtime: str = "furiosa-llm"
    #: HTTP timeout of one scrape, seconds.
    timeout_s: float = 2.0
    #: Only series with this ``model_name`` label; None = all models (tagged if there is only one).
    model_name: str | None = None
    #: Triton: models that are steps of an ensemble (their requests are not client requests).
    composing_models: tuple[str, ...] = ()
    #: Triton: its HTTP endpoint (``http://host:8000``), to learn the composing models from each
    #: model's configuration (``GET /v2/models/<name>/config``); None = only ``composing_models``.
    model_config_url: str | None = None

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"url: expected http://host:port[/metrics], got {self.url!r}")
        validate_tag_value("service", self.service)
        validate_tag_value("runtime", self.runtime)
        if self.model_name is not None:
            validate_tag_value("model_name", self.model_name)
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s: must be > 0, got {self.timeout_s}")
        if self.model_config_url is not None:
            cfg = urlsplit(self.model_config_url)
            if cfg.scheme not in ("http", "https") or not cfg.netloc:
                raise ValueError(
                    f"model_config_url: expected http://host:port, got {self.model_config_url!r}"
                )


def metrics_url(url: str) -> str:
    """``url`` itself, or ``url`` + ``/metrics`` when it has no path."""
    parts = urlsplit(url)
    if parts.path in ("", "/"):
        parts = parts._replace(path="/metrics")
    return urlunsplit(parts)


# ------------------------------------------------------------------------ exposition text format


@dataclass(frozen=True, slots=True)
class PromSample:
    """One sample line: ``name{labels} value [timestamp_ms]``."""

    name: str
    labels: Mapping[str, str]
    value: float
    timestamp_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Exposition:
    """A parsed ``/metrics`` body: samples in order, and the ``# TYPE`` / ``# HELP`` of families."""

    samples: tuple[PromSample, ...]
    types: Mapping[str, str] = field(default_factory=dict)
    helps: Mapping[str, str] = field(default_factory=dict)


_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r'[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"((?:[^"\\\n]|\\.)*)"[ \t]*')
_FLOAT = re.compile(
    r"^[+-]?(?:inf|infinity|nan|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)$", re.IGNORECASE
)
_TIMESTAMP = re.compile(r"^-?\d+$")
_TYPES = frozenset(
    {"counter", "gauge", "histogram", "summary", "untyped", "unknown", "info", "stateset",
     "gaugehistogram"}
)  # fmt: skip
_LABEL_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}
# The common line, with no escape in it, in one match: name, optional label set, value, optional
# timestamp. The label set must then be a well-formed list (_FAST_LABELS); anything else goes the
# slow, character-by-character way of _parse_sample, which names what is wrong.
_FAST_LINE = re.compile(
    r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:[ \t]*\{([^{}]*)\})?[ \t]+([^ \t]+)(?:[ \t]+(-?\d+))?"
)
_FAST_SERIES = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)[ \t]*\{([^{}]*)\}")
_FAST_LABELS = re.compile(
    r'(?:[ \t]*[a-zA-Z_][a-zA-Z0-9_]*[ \t]*=[ \t]*"[^"\\\n]*"[ \t]*(?:,|(?=$)))*[ \t]*'
)
_FAST_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"([^"\\\n]*)"')


def _unescape(text: str, escapes: Mapping[str, str], where: str) -> str:
    if "\\" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            nxt = text[i + 1 : i + 2]
            if nxt not in escapes:
                raise ParseError(f"{where}: invalid escape sequence '\\{nxt}'")
            out.append(escapes[nxt])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def parse_value(token: str, where: str) -> float:
    """A sample value: a float, ``+Inf``, ``-Inf`` or ``NaN``."""
    if not _FLOAT.match(token):
        raise ParseError(f"{where}: expected a number, +Inf, -Inf or NaN, got {token[:40]!r}")
    return float(token)


@functools.lru_cache(maxsize=4096)
def _series(head: str) -> tuple[str, Mapping[str, str]] | None:
    """``name{labels}`` of a line without escapes → (name, labels), or None if not well-formed.
    A server repeats the same series every scrape, so the answer is cached (bounded)."""
    fast = _FAST_SERIES.fullmatch(head)
    if fast is None or not _FAST_LABELS.fullmatch(fast.group(2)):
        return None
    return fast.group(1), MappingProxyType(dict(_FAST_LABEL.findall(fast.group(2))))


def _parse_sample(line: str, where: str) -> PromSample:
    sample = _parse_fast(line)
    return sample if sample is not None else _parse_sample_slow(line, where)


def _parse_fast(line: str) -> PromSample | None:
    """The common line (no escape) by the cached series and one split; None: ask the full parser."""
    if "\\" not in line:
        end = line.rfind("}") + 1
        if end:  # name{labels} value [timestamp]
            series = _series(line[:end])
            rest = line[end:]
            if series is not None and rest[:1] in (" ", "\t"):
                tokens = rest.split()
                if 1 <= len(tokens) <= 2 and _FLOAT.match(tokens[0]):
                    if len(tokens) == 1:
                        return PromSample(series[0], series[1], float(tokens[0]), None)
                    if _TIMESTAMP.match(tokens[1]):
                        return PromSample(series[0], series[1], float(tokens[0]), int(tokens[1]))
        else:  # name value [timestamp]
            fast = _FAST_LINE.fullmatch(line)
            if fast is not None and fast.group(2) is None and _FLOAT.match(fast.group(3)):
                name, _, value_text, ts_text = fast.groups()
                return PromSample(
                    name, {}, float(value_text), None if ts_text is None else int(ts_text)
                )
    return None


def _parse_sample_slow(line: str, where: str) -> PromSample:
    m = _METRIC_NAME.match(line)
    if m is None:
        raise ParseError(f"{where}: expected a metric name, got {line[:80]!r}")
    name, pos = m.group(0), m.end()
    labels: dict[str, str] = {}
    after_name = pos
    while pos < len(line) and line[pos] in " \t":  # blanks may precede the label set
        pos += 1
    if pos < len(line) and line[pos] == "{":
        pos += 1
        while True:
            while pos < len(line) and line[pos] in " \t":
                pos += 1
            if pos < len(line) and line[pos] == "}":
                pos += 1
                break
            lm = _LABEL.match(line, pos)
            if lm is None:
                raise ParseError(f'{where}: expected label="value" in {line[:120]!r}')
            labels[lm.group(1)] = _unescape(lm.group(2), _LABEL_ESCAPES, where)
            pos = lm.end()
            if pos < len(line) and line[pos] == ",":
                pos += 1
            elif pos >= len(line) or line[pos] != "}":
                raise ParseError(f"{where}: expected ',' or '}}' after a label in {line[:120]!r}")
    elif pos == after_name and pos < len(line):
        raise ParseError(f"{where}: expected a space before the value in {line[:120]!r}")
    rest = line[pos:].split()
    if not 1 <= len(rest) <= 2:
        raise ParseError(f"{where}: expected 'value [timestamp]' after {name}, got {rest!r}")
    value = parse_value(rest[0], where)
    timestamp_ms: int | None = None
    if len(rest) == 2:
        if not _TIMESTAMP.match(rest[1]):
            raise ParseError(f"{where}: expected an integer timestamp (ms), got {rest[1][:40]!r}")
        timestamp_ms = int(rest[1])
    return PromSample(name, labels, value, timestamp_ms)


def parse_exposition(
    text: str, source: str = "metrics", keep: Container[str] | None = None
) -> Exposition:
    """Parse Prometheus text exposition format 0.0.4 (also the OpenMetrics subset it shares).

    Handles ``# HELP`` (with ``\\\\`` and ``\\n`` escapes), ``# TYPE``, other comments, label
    values with escaped quotes, backslashes and newlines, ``+Inf``/``-Inf``/``NaN`` and optional
    timestamps.
    A malformed line raises :class:`ParseError` naming ``source`` and the line number.
    With ``keep``, only samples of those metric names are parsed in full (a scrape of a busy
    server has hundreds of series the collector does not use); every line still needs a valid name.
    """
    samples: list[PromSample] = []
    types: dict[str, str] = {}
    helps: dict[str, str] = {}
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip("\r").strip(" \t")
        if not line:
            continue
        if line[0] == "#":
            where = f"{source}: line {number}"
            parts = line[1:].strip(" \t").split(None, 2)
            if len(parts) >= 2 and parts[0] == "HELP":
                helps[parts[1]] = _unescape(
                    parts[2] if len(parts) > 2 else "", {"\\": "\\", "n": "\n"}, where
                )
            elif len(parts) >= 2 and parts[0] == "TYPE":
                kind = parts[2].strip().lower() if len(parts) > 2 else ""
                if kind not in _TYPES:
                    raise ParseError(f"{where}: unknown metric type {kind!r} for {parts[1]}")
                types[parts[1]] = kind
            continue
        if keep is not None:
            m = _METRIC_NAME.match(line)
            if m is None:
                raise ParseError(
                    f"{source}: line {number}: expected a metric name, got {line[:80]!r}"
                )
            if m.group(0) not in keep:
                continue
        sample = _parse_fast(line)
        samples.append(
            sample if sample is not None else _parse_sample_slow(line, f"{source}: line {number}")
        )
    return Exposition(tuple(samples), types, helps)


#: Every metric name :func:`snapshot` can use, for ``parse_exposition(keep=...)``.
WANTED_NAMES = frozenset(
    name
    for prefix in {*_ALL_PREFIXES, *(p for ps in RUNTIME_PREFIXES.values() for p in ps)}
    for name in (prefix + REQUESTS, prefix + TOKENS, f"{prefix}{LATENCY}_bucket")
) | {TRITON_SUCCESS, TRITON_COUNT}


# ------------------------------------------------------------------------ runtime mapping


@dataclass(frozen=True, slots=True)
class ServingSnapshot:
    """The serving counters of one scrape, summed over the selected series."""

    requests_total: float | None
    tokens_total: float | None
    #: Cumulative e2e-latency histogram: (upper bound ``le`` in s, cumulative count), ascending.
    latency_buckets: tuple[tuple[float, float], ...] | None
    model_names: frozenset[str]
    #: Inferences (Triton's ``nv_inference_count``: a batch of n counts n); None for LLM runtimes.
    inferences_total: float | None = None


def _select(
    samples: Iterable[PromSample], name: str, model_name: str | None, label: str = "model_name"
) -> list[PromSample]:
    return [
        s
        for s in samples
        if s.name == name and (model_name is None or s.labels.get(label) == model_name)
    ]


def triton_models(expo: Exposition) -> frozenset[str]:
    """The ``model`` labels of Triton's request counters in one scrape."""
    return frozenset(
        s.labels["model"]
        for s in expo.samples
        if s.name in (TRITON_SUCCESS, TRITON_COUNT) and "model" in s.labels
    )


def parse_model_config(body: bytes, source: str) -> tuple[str, ...]:
    """Triton's model configuration (``GET /v2/models/<name>/config``, JSON) → the models an
    ensemble calls (``ensemble_scheduling.step[].model_name``); () for a model that is not one."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as e:
        raise ParseError(f"{source}: expected a JSON model configuration: {e}") from None
    if not isinstance(doc, dict):
        raise ParseError(f"{source}: expected a JSON object, got {type(doc).__name__}")
    scheduling = doc.get("ensemble_scheduling")
    if scheduling is None:
        return ()
    steps = scheduling.get("step") if isinstance(scheduling, dict) else None
    if not isinstance(steps, list):
        raise ParseError(f"{source}: ensemble_scheduling: expected a 'step' list")
    names: list[str] = []
    for i, step in enumerate(steps):
        name = step.get("model_name") if isinstance(step, dict) else None
        if not isinstance(name, str) or not name:
            raise ParseError(f"{source}: ensemble_scheduling.step[{i}]: expected a model_name")
        names.append(name)
    return tuple(names)


def _triton_snapshot(
    expo: Exposition, model_name: str | None, composing: frozenset[str] = frozenset()
) -> ServingSnapshot:
    success = _select(expo.samples, TRITON_SUCCESS, model_name, "model")
    count = _select(expo.samples, TRITON_COUNT, model_name, "model")
    if model_name is None and composing:
        success = [s for s in success if s.labels.get("model") not in composing]
        count = [s for s in count if s.labels.get("model") not in composing]
    models = {s.labels["model"] for s in (*success, *count) if "model" in s.labels}
    return ServingSnapshot(
        _sum(success), None, None, frozenset(models), inferences_total=_sum(count)
    )


def _sum(samples: Sequence[PromSample]) -> float | None:
    values = [s.value for s in samples if not math.isnan(s.value)]
    return math.fsum(values) if values else None


def snapshot(
    expo: Exposition,
    runtime: str,
    model_name: str | None = None,
    source: str = "metrics",
    composing: frozenset[str] = frozenset(),
) -> ServingSnapshot:
    """Map a runtime's metric names to requests, tokens (or inferences) and the latency histogram.

    The runtime's own names are tried first (Triton's ``nv_inference_*`` for ``triton``), then every
    known prefix, then Triton's names; the first with any of its metrics wins. ``model_name`` keeps
    only series with that label (Triton's ``model`` label). Triton models in ``composing`` (the
    steps of an ensemble) are left out of the sums unless ``model_name`` selects one.
    """
    names = {s.name for s in expo.samples}
    has_triton = TRITON_SUCCESS in names or TRITON_COUNT in names
    if runtime == TRITON and has_triton:
        return _triton_snapshot(expo, model_name, composing)
    prefixes = RUNTIME_PREFIXES.get(runtime, ())
    prefixes += tuple(p for p in _ALL_PREFIXES if p not in prefixes)
    for prefix in prefixes:
        wanted = (prefix + REQUESTS, prefix + TOKENS, f"{prefix}{LATENCY}_bucket")
        if not any(n in names for n in wanted):
            continue
        requests = _select(expo.samples, wanted[0], model_name)
        tokens = _select(expo.samples, wanted[1], model_name)
        buckets = _select(expo.samples, wanted[2], model_name)
        models = {
            s.labels["model_name"]
            for s in (*requests, *tokens, *buckets)
            if "model_name" in s.labels
        }
        return ServingSnapshot(
            _sum(requests), _sum(tokens), _sum_buckets(buckets, source), frozenset(models)
        )
    if has_triton:
        return _triton_snapshot(expo, model_name, composing)
    return ServingSnapshot(None, None, None, frozenset())


def _sum_buckets(
    samples: Sequence[PromSample], source: str
) -> tuple[tuple[float, float], ...] | None:
    by_bound: dict[float, float] = {}
    for s in samples:
        le = s.labels.get("le")
        if le is None or math.isnan(s.value):
            continue
        try:
            bound = float(le)
        except ValueError:
            raise ParseError(
                f"{source}: {s.name}: bucket bound le={le!r} is not a number"
            ) from None
        by_bound[bound] = by_bound.get(bound, 0.0) + s.value
    if math.inf not in by_bound:
        return None
    return tuple(sorted(by_bound.items()))


def histogram_delta(
    previous: Sequence[tuple[float, float]] | None, current: Sequence[tuple[float, float]]
) -> tuple[tuple[float, float], ...] | None:
    """The increase of a cumulative histogram between two scrapes.

    None without a previous scrape or when the bucket bounds changed. When any bucket decreased
    (the counters were reset), the current histogram is the increase.
    """
    if previous is None or [b for b, _ in previous] != [b for b, _ in current]:
        return None
    if any(c < p for (_, p), (_, c) in zip(previous, current, strict=True)):
        return tuple(current)
    return tuple((b, c - p) for (b, p), (_, c) in zip(previous, current, strict=True))


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The ``q``-quantile of a cumulative histogram, as Prometheus ``histogram_quantile`` has it.

    ``buckets`` are ``(upper bound, cumulative count)`` ascending and ending with ``+Inf``. The rank
    ``q × count`` is located in the first bucket whose cumulative count reaches it and interpolated
    linearly between that bucket's bounds (the lowest bucket starts at 0 unless its bound is ≤ 0). A
    rank in the ``+Inf`` bucket gives the highest finite bound. None when there are no observations
    or no ``+Inf`` bucket.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {q}")
    if len(buckets) < 2 or buckets[-1][0] != math.inf:
        return None
    counts: list[float] = []
    running = 0.0
    for _, c in buckets:  # Prometheus fixes small non-monotonicity the same way
        running = max(running, c)
        counts.append(running)
    total = counts[-1]
    if not total > 0:
        return None
    rank = q * total
    b = next(i for i, c in enumerate(counts) if c >= rank)
    if b == len(buckets) - 1:
        return buckets[-2][0]
    upper = buckets[b][0]
    if b == 0 and upper <= 0:
        return upper
    lower, below = (0.0, 0.0) if b == 0 else (buckets[b - 1][0], counts[b - 1])
    in_bucket = counts[b] - below
    if in_bucket <= 0:
        return lower
    value = lower + (upper - lower) * (rank - below) / in_bucket
    return min(upper, max(lower, value))  # rounding must not leave the bucket


# ------------------------------------------------------------------------ I/O


def fetch(url: str, timeout_s: float, accept: str = "text/plain; version=0.0.4") -> str:
    """GET ``url`` and return the body as text; errors become collector errors naming the URL."""
    request = urllib.request.Request(  # noqa: S310 - Config only admits http and https URLs
        url, headers={"Accept": accept, "User-Agent": "kwatt"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            body: bytes = response.read(MAX_BODY_BYTES + 1)
    except urllib.error.HTTPError as e:
        e.close()
        raise CollectorError(f"{url}: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        if isinstance(e.reason, TimeoutError):
            raise CollectorTimeout(f"{url}: no answer within {timeout_s:g} s") from None
        raise CollectorUnavailable(f"{url}: {e.reason} (is the serving runtime up?)") from None
    except TimeoutError:
        raise CollectorTimeout(f"{url}: no answer within {timeout_s:g} s") from None
    except OSError as e:
        raise CollectorError(f"{url}: {e}") from None
    if len(body) > MAX_BODY_BYTES:
        raise ParseError(f"{url}: body larger than {MAX_BODY_BYTES} bytes")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ParseError(f"{url}: body is not UTF-8 ({e})") from None


class ServingCollector:
    """Scrapes one serving runtime; one ``serving`` sample per poll."""

    def __init__(self, name: str, config: Config) -> None:
        self.name = name
        self.config = config
        self.url = metrics_url(config.url)
        self._previous: tuple[tuple[float, float], ...] | None = None
        #: Triton model → the models it calls (empty: not an ensemble), from the configuration API.
        self._steps: dict[str, tuple[str, ...]] = {}

    def _composing(self, expo: Exposition) -> frozenset[str]:
        """The composing models: configured, and learnt from Triton's configuration API."""
        base = self.config.model_config_url
        if base is not None:
            for model in sorted(triton_models(expo) - self._steps.keys()):
                url = f"{base.rstrip('/')}/v2/models/{quote(model, safe='')}/config"
                body = fetch(url, self.config.timeout_s, accept="application/json")
                self._steps[model] = parse_model_config(body.encode("utf-8"), url)
        learnt = {step for steps in self._steps.values() for step in steps}
        return frozenset(self.config.composing_models) | learnt

    async def inventory(self) -> list[DeviceInfo]:
        return []  # a serving runtime is not a device

    async def aclose(self) -> None:
        return None

    async def collect(self) -> list[Sample]:
        text = await asyncio.to_thread(fetch, self.url, self.config.timeout_s)
        ts_ns = time.time_ns()
        expo = parse_exposition(text, self.url, keep=WANTED_NAMES)
        composing = frozenset(self.config.composing_models)
        if self.config.model_config_url is not None:
            composing = await asyncio.to_thread(self._composing, expo)
        snap = snapshot(expo, self.config.runtime, self.config.model_name, self.url, composing)
        if (
            snap.requests_total is None
            and snap.tokens_total is None
            and snap.latency_buckets is None
            and snap.inferences_total is None
        ):
            selector = (
                f" with model_name={self.config.model_name!r}" if self.config.model_name else ""
            )
            raise ParseError(
                f"{self.url}: no {REQUESTS}, {TOKENS} or {LATENCY} series{selector} under the "
                f"prefixes {', '.join(_ALL_PREFIXES)}, and no Triton {TRITON_SUCCESS} or "
                f"{TRITON_COUNT} (runtime {self.config.runtime!r})"
            )
        p50 = p99 = None
        if snap.latency_buckets is not None:
            window = histogram_delta(self._previous, snap.latency_buckets)
            self._previous = snap.latency_buckets
            if window is not None:
                p50 = histogram_quantile(0.5, window)
                p99 = histogram_quantile(0.99, window)
        model = self.config.model_name
        if model is None and len(snap.model_names) == 1:
            (model,) = snap.model_names
            try:
                validate_tag_value("model_name", model)
            except ValueError:
                model = None  # a name that cannot be a tag: leave the tag off rather than fail
        requests, tokens = _count(snap.requests_total), _count(snap.tokens_total)
        inferences = _count(snap.inferences_total)
        if (
            requests is None
            and tokens is None
            and inferences is None
            and p50 is None
            and p99 is None
        ):
            return []  # only a histogram, and no window over it yet
        try:
            return [
                Sample.serving(
                    ts_ns,
                    service=self.config.service,
                    runtime=self.config.runtime,
                    model_name=model,
                    requests_total=requests,
                    tokens_total=tokens,
                    inferences_total=inferences,
                    latency_p50_s=p50,
                    latency_p99_s=p99,
                )
            ]
        except ValueError as e:
            raise ParseError(f"{self.url}: {e}") from None


def _count(value: float | None) -> int | None:
    """A counter exposed as a float (``12.0``) as the integer it counts; infinities are absent."""
    return round(value) if value is not None and math.isfinite(value) else None


def _detect(surface: Surface) -> Entries:
    """Doctor: one entry per ``URL[=SERVICE[:RUNTIME]]`` it was given (not discoverable)."""
    out: Entries = []
    for item in surface.serving:
        url, _, rest = item.partition("=")
        service, _, runtime = (rest or "default").partition(":")
        entry: dict[str, object] = {"type": "serving", "url": url, "service": service}
        if runtime:
            entry["runtime"] = runtime
        entry["name"] = f"{service}-{runtime or 'furiosa-llm'}"
        out.append(entry)
    return out


#: This module's collector, as the registry (:mod:`kwatt.collectors`) finds it.
PLUGIN = CollectorPlugin(
    kind="serving",
    config=Config,
    factory=ServingCollector,
    detect=_detect,
    demo=True,
    permission_fix="let the agent reach the runtime's /metrics port",
)
