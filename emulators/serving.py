"""An emulated furiosa-llm server: requests completed from the devices' work, and its ``/metrics``.

Each device is one engine (data parallel). A device's interval of work is a number of generated
tokens; requests complete when the tokens they need have been produced, so the counters follow the
device physics exactly. A request's end-to-end latency is prefill + decode time, where the time per
output token grows with load (batching) and shrinks with the clock.

The exposition is Prometheus text format 0.0.4 in the furiosa-llm 2026 naming
(docs/device-interfaces.md §6.2: ``furiosa_llm_*`` with labels ``model_name`` and ``engine``;
histogram buckets as vLLM's request-latency buckets, §6.1), written the way the Python
``prometheus_client`` writes it (``_total`` counters with ``_created`` samples, float values).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

__all__ = [
    "E2E_LATENCY_BUCKETS_S",
    "RUNTIMES",
    "TRITON_MODELS",
    "MetricsServer",
    "ServingModel",
    "TritonEnsemble",
    "TritonModel",
    "render_triton",
]

#: vLLM's request-latency histogram bounds, s (§6.1: "buckets 0.3…7680 s"); furiosa-llm reuses them.
E2E_LATENCY_BUCKETS_S = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
    120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip
FINISHED_REASONS = ("stop", "length", "abort")
DEFAULT_MODEL_NAME = "furiosa-ai/Llama-3.1-8B-Instruct"
PREFIX = "furiosa_llm_"
#: Metric-name prefix and default model per runtime (§6.1 vLLM; §6.2 furiosa-llm 2026; §6.3 vllm-rbln
#: exposes upstream vLLM's ``vllm:*`` names). The model names of the vLLM runtimes are assumptions.
RUNTIMES: dict[str, tuple[str, str]] = {
    "furiosa-llm": (PREFIX, DEFAULT_MODEL_NAME),
    "vllm": ("vllm:", "meta-llama/Llama-3.1-8B-Instruct"),
    "vllm-rbln": ("vllm:", "rebellions/Llama-3.1-8B-Instruct"),
}
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# request and latency model (assumptions, chosen to be plausible for an 8B model on one card)
MAX_TOKENS = 1024
MEAN_GENERATION_TOKENS = 200.0
PROMPT_TOKENS_RANGE = (32, 512)
PREFILL_TOKENS_PER_S = 20_000.0
TIME_PER_OUTPUT_TOKEN_IDLE_S = 0.012
MAX_NUM_SEQS = 256


@dataclass(slots=True)
class _Request:
    prompt_tokens: int
    generation_tokens: int
    finished_reason: str


@dataclass(slots=True)
class _Engine:
    """Counters of one engine, cumulative since the server started."""

    success: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FINISHED_REASONS, 0))
    prompt_tokens: int = 0
    generation_tokens: int = 0
    bucket_counts: list[int] = field(default_factory=lambda: [0] * len(E2E_LATENCY_BUCKETS_S))
    latency_sum_s: float = 0.0
    latency_count: int = 0
    running: int = 0
    pending_tokens: float = 0.0


class ServingModel:
    """Request accounting for ``engines`` engines serving one model, deterministic for a seed."""

    def __init__(
        self,
        engines: int,
        *,
        seed: int = 0,
        model_name: str = DEFAULT_MODEL_NAME,
        prefix: str = PREFIX,
    ) -> None:
        self.model_name = model_name
        self.prefix = prefix
        self._rng = random.Random(f"kwatt-serving:{seed}")
        self._engines = [_Engine() for _ in range(engines)]
        self._next = [self._draw_request() for _ in range(engines)]
        self._created_s = time.time()

    @property
    def requests_total(self) -> int:
        return sum(sum(e.success.values()) for e in self._engines)

    @property
    def generation_tokens_total(self) -> int:
        return sum(e.generation_tokens for e in self._engines)

    @property
    def prompt_tokens_total(self) -> int:
        return sum(e.prompt_tokens for e in self._engines)

    def _draw_request(self) -> _Request:
        wanted = max(1, math.ceil(self._rng.expovariate(1.0 / MEAN_GENERATION_TOKENS)))
        generated = min(wanted, MAX_TOKENS)
        reason = "length" if wanted >= MAX_TOKENS else "stop"
        return _Request(self._rng.randint(*PROMPT_TOKENS_RANGE), generated, reason)

    def advance(self, engine: int, tokens: float, util: float, clock_ratio: float) -> list[float]:
        """Credit ``engine`` with ``tokens`` generated; return latencies of completed requests."""
        e = self._engines[engine]
        e.running = round(MAX_NUM_SEQS * util)
        e.pending_tokens += tokens
        done: list[float] = []
        while e.pending_tokens >= self._next[engine].generation_tokens:
            req = self._next[engine]
            e.pending_tokens -= req.generation_tokens
            tpot_s = TIME_PER_OUTPUT_TOKEN_IDLE_S * (1.0 + 4.0 * util**2) / max(clock_ratio, 0.1)
            ideal_s = req.prompt_tokens / PREFILL_TOKENS_PER_S + req.generation_tokens * tpot_s
            latency_s = ideal_s * self._rng.lognormvariate(0.0, 0.15)
            e.success[req.finished_reason] += 1
            e.prompt_tokens += req.prompt_tokens
            e.generation_tokens += req.generation_tokens
            for i, bound in enumerate(E2E_LATENCY_BUCKETS_S):
                if latency_s <= bound:
                    e.bucket_counts[i] += 1
                    break
            e.latency_sum_s += latency_s
            e.latency_count += 1
            done.append(latency_s)
            self._next[engine] = self._draw_request()
        return done

    def render(self) -> str:
        """The ``/metrics`` body, Prometheus text format 0.0.4.

        As ``prometheus_client`` writes it: a counter family is named with ``_total``, and the
        ``_created`` samples of a counter or histogram follow it as a gauge family of their own.
        """
        out: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            out.append(f"# HELP {self.prefix}{name} {help_text}")
            out.append(f"# TYPE {self.prefix}{name} {kind}")

        def line(name: str, labels: dict[str, str], value: float) -> None:
            inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            out.append(f"{self.prefix}{name}{{{inner}}} {_num(value)}")

        def created(base: str, help_text: str, label_sets: list[dict[str, str]]) -> None:
            family(f"{base}_created", "gauge", help_text)
            for labels in label_sets:
                line(f"{base}_created", labels, self._created_s)

        engines = [
            ({"engine": str(i), "model_name": self.model_name}, e)
            for i, e in enumerate(self._engines)
        ]
        plain = [labels for labels, _ in engines]
        family("num_requests_running", "gauge", "Number of requests in model execution batches.")
        for labels, e in engines:
            line("num_requests_running", labels, e.running)
        family("num_requests_waiting", "gauge", "Number of requests waiting to be processed.")
        for labels in plain:
            line("num_requests_waiting", labels, 0)
        help_text = "Count of successfully processed requests."
        family("request_success_total", "counter", help_text)
        with_reason = []
        for labels, e in engines:
            for reason in FINISHED_REASONS:
                with_reason.append({**labels, "finished_reason": reason})
                line("request_success_total", with_reason[-1], e.success[reason])
        created("request_success", help_text, with_reason)
        for base, help_text, attr in (
            ("prompt_tokens", "Number of prefill tokens processed.", "prompt_tokens"),
            ("generation_tokens", "Number of generation tokens processed.", "generation_tokens"),
        ):
            family(f"{base}_total", "counter", help_text)
            for labels, e in engines:
                line(f"{base}_total", labels, getattr(e, attr))
            created(base, help_text, plain)
        hist = "e2e_request_latency_seconds"
        help_text = "Histogram of e2e request latency in seconds."
        family(hist, "histogram", help_text)
        for labels, e in engines:
            cumulative = 0
            for bound, count in zip(E2E_LATENCY_BUCKETS_S, e.bucket_counts, strict=True):
                cumulative += count
                line(f"{hist}_bucket", {**labels, "le": _num(bound)}, cumulative)
            line(f"{hist}_bucket", {**labels, "le": "+Inf"}, e.latency_count)
            line(f"{hist}_count", labels, e.latency_count)
            line(f"{hist}_sum", labels, e.latency_sum_s)
        created(hist, help_text, plain)
        return "\n".join(out) + "\n"


#: The model each vision service runs on Triton (§6.4 labels ``model``/``version``; names assumed).
TRITON_MODELS: dict[str, str] = {
    "traffic": "traffic_yolov8s",
    "food": "food_resnet50",
    "construction": "hazard_yolov8s",
}
#: Triton's dynamic batcher: the largest batch one execution takes (assumed ``max_batch_size``).
TRITON_MAX_BATCH = 8
#: Share of a request's compute time spent in input / output handling (assumed: decode, resize, NMS).
TRITON_INPUT_SHARE = 0.08
TRITON_OUTPUT_SHARE = 0.04
#: Failure reasons Triton labels ``nv_inference_request_failure`` with (§6.4).
TRITON_FAILURE_REASONS = ("REJECTED", "CANCELED", "BACKEND", "OTHER")
#: HELP texts of the per-model families, as tritonserver (``src/metrics.cc``) prints them.
_TRITON_FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("nv_inference_request_success", "counter",
     "Number of successful inference requests, all batch sizes"),
    ("nv_inference_request_failure", "counter",
     "Number of failed inference requests, all batch sizes"),
    ("nv_inference_count", "counter",
     "Number of inferences performed (does not include cached requests)"),
    ("nv_inference_exec_count", "counter",
     "Number of model executions performed (does not include cached requests)"),
    ("nv_inference_request_duration_us", "counter",
     "Cumulative inference request duration in microseconds (includes cached requests)"),
    ("nv_inference_queue_duration_us", "counter",
     "Cumulative inference queuing duration in microseconds (includes cached requests)"),
    ("nv_inference_compute_input_duration_us", "counter",
     "Cumulative compute input duration in microseconds (does not include cached requests)"),
    ("nv_inference_compute_infer_duration_us", "counter",
     "Cumulative compute inference duration in microseconds (does not include cached requests)"),
    ("nv_inference_compute_output_duration_us", "counter",
     "Cumulative inference compute output duration in microseconds (does not include cached "
     "requests)"),
    ("nv_inference_pending_request_count", "gauge",
     "Instantaneous number of pending requests awaiting execution per-model."),
)  # fmt: skip


class TritonModel:
    """One model on Triton Inference Server, its per-model counters and its ``/metrics`` (§6.4).

    The vision services send one frame or image per request (batch 1); the dynamic batcher groups
    them into executions of up to :data:`TRITON_MAX_BATCH`, larger as the devices get busier. A
    request completes when the devices have served its unit of work, so ``nv_inference_count`` and
    ``nv_inference_request_success`` are the node's true served work, in whole units (the fraction
    of a frame in flight is carried to the next step). Durations are cumulative microseconds: each
    completed request adds the queueing model's mean response time, split into queue time and
    compute time (input, infer, output).

    The exposition is what tritonserver prints with its defaults and ``--allow-gpu-metrics=false
    --allow-cpu-metrics=false`` (prometheus-cpp: whole numbers without a decimal point): counters
    only, since the latency summaries (``nv_inference_*_summary_us``) need ``--metrics-config
    summary_latencies=true`` and Triton has no request-latency histogram. A scraper can derive the
    mean latency (Δ``request_duration_us`` / Δ``request_success``), not p50/p99.
    """

    def __init__(self, model_name: str, *, version: str = "1") -> None:
        self.model_name = model_name
        self.version = version
        self.success = 0
        self.inferences = 0
        self.executions = 0
        self.request_us = 0
        self.queue_us = 0
        self.input_us = 0
        self.infer_us = 0
        self.output_us = 0
        self.pending = 0
        self._carry = 0.0

    def advance(
        self, served_units: float, util: float, mean_latency_s: float, compute_s: float
    ) -> int:
        """Credit ``served_units`` frames/images; return the requests completed in this step.

        ``util`` (0–1) sets the batch size; ``mean_latency_s`` is the mean response time of this
        step's requests and ``compute_s`` the part of it spent executing (the rest is queueing).
        """
        self._carry += max(served_units, 0.0)
        done = math.floor(self._carry + 1e-9)
        self._carry -= done
        if done <= 0:
            self.pending = 0
            return 0
        batch = 1 + round((TRITON_MAX_BATCH - 1) * min(max(util, 0.0), 1.0))
        self.success += done
        self.inferences += done
        self.executions += math.ceil(done / batch)
        if not math.isfinite(mean_latency_s) or mean_latency_s <= 0:
            mean_latency_s = compute_s
        compute_s = min(compute_s, mean_latency_s) if math.isfinite(compute_s) else 0.0
        total_us = round(done * mean_latency_s * 1e6)
        compute_us = round(done * compute_s * 1e6)
        self.request_us += total_us
        self.queue_us += total_us - compute_us
        self.input_us += round(compute_us * TRITON_INPUT_SHARE)
        self.output_us += round(compute_us * TRITON_OUTPUT_SHARE)
        self.infer_us += (
            compute_us
            - round(compute_us * TRITON_INPUT_SHARE)
            - round(compute_us * TRITON_OUTPUT_SHARE)
        )
        self.pending = round(util * TRITON_MAX_BATCH) if util > 0.9 else 0
        return done

    def values(self) -> dict[str, int]:
        """This model's value of each family of :data:`_TRITON_FAMILIES` (failures excepted)."""
        return {
            "nv_inference_request_success": self.success,
            "nv_inference_count": self.inferences,
            "nv_inference_exec_count": self.executions,
            "nv_inference_request_duration_us": self.request_us,
            "nv_inference_queue_duration_us": self.queue_us,
            "nv_inference_compute_input_duration_us": self.input_us,
            "nv_inference_compute_infer_duration_us": self.infer_us,
            "nv_inference_compute_output_duration_us": self.output_us,
            "nv_inference_pending_request_count": self.pending,
        }

    def render(self) -> str:
        """The ``/metrics`` body (Prometheus text format 0.0.4, as tritonserver writes it)."""
        return render_triton((self,))

    def config(self) -> dict[str, object]:
        """The model configuration Triton answers ``GET /v2/models/<name>/config`` with (the
        members kwatt's collector reads; a real one has inputs, outputs, batching too)."""
        return {"name": self.model_name, "platform": "onnxruntime_onnx"}


def render_triton(models: Sequence[TritonModel]) -> str:
    """One ``/metrics`` body for the models a tritonserver serves: per family, a line per model."""
    out: list[str] = []
    rows = [
        (f'model="{_escape(m.model_name)}",version="{_escape(m.version)}"', m.values())
        for m in models
    ]
    for name, kind, help_text in _TRITON_FAMILIES:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")
        for labels, values in rows:
            if name == "nv_inference_request_failure":
                for reason in TRITON_FAILURE_REASONS:
                    out.append(f'{name}{{{labels},reason="{reason}"}} 0')
            else:
                out.append(f"{name}{{{labels}}} {values[name]}")
    return "\n".join(out) + "\n"


class TritonEnsemble:
    """An ensemble on Triton and the models it calls, as one tritonserver serves them.

    Triton counts a client request to an ensemble once for the ensemble and once for every
    composing model it runs (tensorrtllm_backend issue #49: ``ensemble``, ``preprocessing`` and
    ``postprocessing`` all at 59; tests/fixtures/real/serving), so each step model here completes
    the ensemble's requests too. ``config(name)`` is Triton's model configuration API: the ensemble
    lists its steps in ``ensemble_scheduling.step[].model_name`` (Triton's model_config.proto).
    Step latencies are a share of the ensemble's (assumed: an equal share per step).
    """

    def __init__(self, name: str, steps: Sequence[str], *, version: str = "1") -> None:
        if not steps:
            raise ValueError("an ensemble needs at least one step")
        self.ensemble = TritonModel(name, version=version)
        self.steps = tuple(TritonModel(step, version=version) for step in steps)

    @property
    def models(self) -> tuple[TritonModel, ...]:
        return (self.ensemble, *self.steps)

    def advance(
        self, served_units: float, util: float, mean_latency_s: float, compute_s: float
    ) -> int:
        """Credit ``served_units`` client requests to the ensemble and to each step."""
        done = self.ensemble.advance(served_units, util, mean_latency_s, compute_s)
        share = 1.0 / len(self.steps)
        for step in self.steps:
            step.advance(done, util, mean_latency_s * share, compute_s * share)
        return done

    def render(self) -> str:
        return render_triton(self.models)

    def config(self, name: str) -> dict[str, object] | None:
        """``GET /v2/models/<name>/config``; None for a model this server does not serve."""
        if name == self.ensemble.model_name:
            return {
                "name": name,
                "platform": "ensemble",
                "ensemble_scheduling": {
                    "step": [
                        {
                            "model_name": step.model_name,
                            "model_version": -1,
                            "input_map": {},
                            "output_map": {},
                        }
                        for step in self.steps
                    ]
                },
            }
        for step in self.steps:
            if step.model_name == name:
                return step.config()
        return None


def _config_target(path: str) -> str | None:
    """The model of ``/v2/models/<name>/config`` (KServe v2 protocol, Triton's extension)."""
    parts = path.split("/")
    if len(parts) == 5 and parts[:3] == ["", "v2", "models"] and parts[4] == "config" and parts[3]:
        return unquote(parts[3])
    return None


def _escape(value: str) -> str:
    """Label-value escaping of the text format: backslash, double quote, line feed."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(value: float) -> str:
    """A sample value as prometheus_client writes it: ``1.0``, ``2.5e-05``, ``+Inf``, ``NaN``."""
    v = float(value)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(v)


class MetricsServer:
    """A minimal HTTP/1.1 server on 127.0.0.1: ``GET /metrics`` (and ``HEAD``), ``GET /health``.

    One request per connection (``Connection: close``), which is what Prometheus scrapers and urllib
    need. ``render`` is called on the event loop, so it sees a consistent state between steps.
    """

    HOST = "127.0.0.1"
    READ_TIMEOUT_S = 5.0

    def __init__(
        self,
        render: Callable[[], str],
        *,
        port: int = 0,
        model_config: Callable[[str], dict[str, object] | None] | None = None,
    ) -> None:
        self._render = render
        self._port = port
        #: Triton's model configuration API on the same port (``GET /v2/models/<name>/config``).
        self._model_config = model_config
        self._server: asyncio.Server | None = None

    @property
    def started(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("MetricsServer is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.HOST, self._port)

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(self.READ_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
            status, headers, body = self._respond(head)
            lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers.items())]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass  # a client that went away or never finished its request
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def _respond(self, head: bytes) -> tuple[str, dict[str, str], bytes]:
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return "400 Bad Request", self._headers("text/plain", 0), b""
        method, target = parts[0], urlsplit(parts[1]).path
        if method not in ("GET", "HEAD"):
            headers = self._headers("text/plain", 0)
            headers["Allow"] = "GET, HEAD"
            return "405 Method Not Allowed", headers, b""
        if target == "/metrics":
            body = self._render().encode("utf-8")
            content_type = CONTENT_TYPE
        elif target == "/health":
            body, content_type = b"", "text/plain"
        elif (name := _config_target(target)) is not None and self._model_config is not None:
            doc = self._model_config(name)
            if doc is None:
                error = f"Request for unknown model: '{name}' is not found"
                data = json.dumps({"error": error}).encode("utf-8")
                return "400 Bad Request", self._headers("application/json", len(data)), data
            body, content_type = json.dumps(doc).encode("utf-8"), "application/json"
        else:
            body, content_type = b"not found\n", "text/plain"
            return "404 Not Found", self._headers(content_type, len(body)), body
        headers = self._headers(content_type, len(body))
        return "200 OK", headers, b"" if method == "HEAD" else body

    @staticmethod
    def _headers(content_type: str, length: int) -> dict[str, str]:
        return {
            "Content-Type": content_type,
            "Content-Length": str(length),
            "Connection": "close",
            "Server": "kwatt-emulator",
        }
