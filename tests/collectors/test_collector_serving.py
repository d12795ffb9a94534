"""The serving collector: exposition parser, runtime mapping, histogram quantiles, live emulator."""

from __future__ import annotations

import asyncio
import math
import socket
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kwatt.collectors import serving
from kwatt.collectors.base import (
    Collector,
    CollectorError,
    CollectorTimeout,
    CollectorUnavailable,
    ParseError,
)
from kwatt.collectors.serving import (
    WANTED_NAMES,
    Config,
    histogram_delta,
    histogram_quantile,
    metrics_url,
    parse_exposition,
    snapshot,
)
from kwatt.emulators.rngd_node import EmulatedNode
from kwatt.emulators.serving import E2E_LATENCY_BUCKETS_S
from kwatt.wire.settings import from_mapping

FIXTURES = Path(__file__).parents[1] / "fixtures" / "serving"
INF = math.inf


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


# --------------------------------------------------------------------------------- text format


def test_parse_exposition_basics() -> None:
    text = (
        "# HELP http_requests_total The total\\nnumber of requests \\\\ so far.\n"
        "# TYPE http_requests_total counter\n"
        "# a comment that is neither HELP nor TYPE\n"
        'http_requests_total{method="post",code="200"} 1027 1395066363000\n'
        'http_requests_total{method="post",code="400",} 3\n'
        "\n"
        'msdos_file_access_time_seconds{path="C:\\\\DIR\\\\FILE.TXT",error="Cannot find file:\\n\\"FILE.TXT\\""} 1.458255915e9\n'
        "metric_without_labels 12.47\n"
        "empty_braces{} -Inf\n"
        'spaced { a = "1" , b="2" }\t+Inf\n'
        'tight{a="1"}2\n'
        'nan_value{x="y"} NaN\r\n'
    )
    expo = parse_exposition(text)
    assert expo.types == {"http_requests_total": "counter"}
    assert expo.helps["http_requests_total"] == "The total\nnumber of requests \\ so far."
    s = expo.samples
    assert [x.name for x in s] == [
        "http_requests_total",
        "http_requests_total",
        "msdos_file_access_time_seconds",
        "metric_without_labels",
        "empty_braces",
        "spaced",
        "tight",
        "nan_value",
    ]
    assert s[0].labels == {"method": "post", "code": "200"}
    assert (s[0].value, s[0].timestamp_ms) == (1027.0, 1395066363000)
    assert s[1].labels == {"method": "post", "code": "400"} and s[1].timestamp_ms is None
    assert s[2].labels == {"path": "C:\\DIR\\FILE.TXT", "error": 'Cannot find file:\n"FILE.TXT"'}
    assert s[2].value == 1.458255915e9
    assert s[3].labels == {} and s[3].value == 12.47
    assert s[4].value == -INF
    assert s[5].labels == {"a": "1", "b": "2"} and s[5].value == INF
    assert s[6].labels == {"a": "1"} and s[6].value == 2.0
    assert math.isnan(s[7].value)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('foo{a="b" 1', "expected ',' or '}'"),
        ("foo{a=b} 1", 'expected label="value"'),
        ('foo{a="\\t"} 1', "invalid escape sequence"),
        ("foo bar", "expected a number"),
        ("foo 1_000", "expected a number"),
        ("foo 1 2.5", "expected an integer timestamp"),
        ("foo 1 2 3", "expected 'value [timestamp]'"),
        ("foo", "expected 'value [timestamp]'"),
        ("9foo 1", "expected a metric name"),
        ("foo+1", "expected a space before the value"),
        ("# TYPE foo countr", "unknown metric type 'countr'"),
    ],
)
def test_parse_exposition_errors_name_the_line(line: str, message: str) -> None:
    with pytest.raises(ParseError) as e:
        parse_exposition(f"ok 1\n{line}\n", "http://h/metrics")
    assert "http://h/metrics: line 2" in str(e.value)
    assert message in str(e.value)


# --------------------------------------------------------------------------------- runtimes


def test_furiosa_llm_2026_fixture() -> None:
    expo = parse_exposition(fixture("furiosa-llm-2026-synthetic.txt"))
    info = next(s for s in expo.samples if s.name == "furiosa_llm_cache_config_info")
    assert info.labels["note"] == 'a "quoted" C:\\path\nnext line'
    assert (
        expo.helps["furiosa_llm_kv_cache_usage_percent"]
        == "KV-cache usage.\nOne means 100 percent."
    )
    snap = snapshot(expo, "furiosa-llm")
    assert snap.requests_total == 225.0  # 120 + 5 + 0 + 98 + 2 over reasons and engines
    assert snap.tokens_total == 45000.0
    assert snap.latency_buckets == ((1.0, 10.0), (5.0, 100.0), (10.0, 215.0), (INF, 225.0))
    assert snap.model_names == {"furiosa-ai/Llama-3.1-8B-Instruct"}


def test_furiosa_llm_2025_colon_fixture() -> None:
    snap = snapshot(parse_exposition(fixture("furiosa-llm-2025.2-synthetic.txt")), "furiosa-llm")
    assert snap.requests_total == 54.0
    assert snap.tokens_total == 13824.0
    assert snap.latency_buckets == ((0.3, 0.0), (2.5, 10.0), (5.0, 30.0), (10.0, 54.0), (INF, 54.0))
    assert histogram_quantile(0.5, snap.latency_buckets) == pytest.approx(2.5 + 2.5 * 17 / 20)


def test_vllm_fixture_with_two_models() -> None:
    expo = parse_exposition(fixture("vllm-synthetic.txt"))
    kv = next(s for s in expo.samples if s.name == "vllm:kv_cache_usage_perc")
    assert kv.timestamp_ms == 1782300000123
    both = snapshot(expo, "vllm")
    assert both.requests_total == 1328.0
    assert both.model_names == {"Qwen/Qwen3-4B", "Qwen/Qwen3-0.6B"}
    one = snapshot(expo, "vllm", model_name="Qwen/Qwen3-4B")
    assert (one.requests_total, one.tokens_total) == (328.0, 41984.0)
    assert one.latency_buckets == (
        (0.3, 0.0),
        (1.0, 0.0),
        (5.0, 164.0),
        (10.0, 320.0),
        (INF, 328.0),
    )
    assert histogram_quantile(0.5, one.latency_buckets) == pytest.approx(5.0)
    # a runtime name kwatt has no table for still finds the vllm: names
    assert snapshot(expo, "vllm-rbln").requests_total == 1328.0
    assert snapshot(expo, "triton").requests_total == 1328.0


def test_unknown_metrics_give_an_empty_snapshot() -> None:
    snap = snapshot(parse_exposition("up 1\n"), "furiosa-llm")
    assert snap.requests_total is None and snap.latency_buckets is None


def test_a_bucket_bound_that_is_not_a_number() -> None:
    text = 'vllm:e2e_request_latency_seconds_bucket{le="soon"} 1\n'
    with pytest.raises(ParseError, match=r"http://h/metrics: .*le='soon' is not a number"):
        snapshot(parse_exposition(text), "vllm", source="http://h/metrics")


# --------------------------------------------------------------------------------- histograms


def test_histogram_quantile_like_prometheus() -> None:
    b = [(1.0, 10.0), (2.0, 20.0), (INF, 20.0)]
    assert histogram_quantile(0.5, b) == 1.0
    assert histogram_quantile(0.75, b) == 1.5
    assert histogram_quantile(0.0, b) == 0.0
    assert histogram_quantile(1.0, b) == 2.0
    assert histogram_quantile(0.5, [(1.0, 0.0), (INF, 5.0)]) == 1.0  # rank in +Inf: highest bound
    assert histogram_quantile(0.5, [(-1.0, 5.0), (INF, 5.0)]) == -1.0
    # non-monotonic counts are raised to a running maximum first: [3, 3, 4]
    assert histogram_quantile(0.5, [(1.0, 3.0), (2.0, 2.0), (INF, 4.0)]) == pytest.approx(2 / 3)
    # found by hypothesis: -1 + (tiny - -1) rounds to 0.0, above the bucket; clamped to its bound
    assert histogram_quantile(0.5, [(-1.0, 0.0), (-7e-269, 1.0), (INF, 2.0)]) == -7e-269
    assert histogram_quantile(0.5, [(1.0, 0.0), (INF, 0.0)]) is None  # no observations
    assert histogram_quantile(0.5, [(1.0, 3.0), (2.0, 4.0)]) is None  # no +Inf bucket
    assert histogram_quantile(0.5, [(INF, 4.0)]) is None
    with pytest.raises(ValueError, match="quantile must be in"):
        histogram_quantile(1.5, b)


def test_histogram_delta_and_reset() -> None:
    a = ((1.0, 2.0), (INF, 3.0))
    b = ((1.0, 5.0), (INF, 9.0))
    assert histogram_delta(None, b) is None
    assert histogram_delta(a, b) == ((1.0, 3.0), (INF, 6.0))
    assert histogram_delta(b, a) == a  # went backwards: restarted, the new value is the increase
    assert histogram_delta(a, ((2.0, 5.0), (INF, 9.0))) is None  # other bounds


@st.composite
def histograms(draw: st.DrawFn) -> list[tuple[float, float]]:
    bounds = draw(
        st.lists(
            st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False),
            min_size=1,
            max_size=25,
            unique=True,
        )
    )
    counts = draw(
        st.lists(st.integers(0, 10_000), min_size=len(bounds) + 1, max_size=len(bounds) + 1)
    )
    cumulative, running = [], 0
    for c in counts:
        running += c
        cumulative.append(float(running))
    return list(zip([*sorted(bounds), INF], cumulative, strict=True))


@given(histograms(), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_histogram_quantile_is_monotone_and_inside_its_bucket(
    buckets: list[tuple[float, float]], q1: float, q2: float
) -> None:
    lo_q, hi_q = sorted((q1, q2))
    lo, hi = histogram_quantile(lo_q, buckets), histogram_quantile(hi_q, buckets)
    if buckets[-1][1] == 0:
        assert lo is None and hi is None
        return
    assert lo is not None and hi is not None
    assert lo <= hi + 1e-9 * max(1.0, abs(hi))
    p50, p99 = histogram_quantile(0.5, buckets), histogram_quantile(0.99, buckets)
    assert p50 is not None and p99 is not None and p50 <= p99
    finite = [b for b, _ in buckets[:-1]]
    for q, value in ((lo_q, lo), (hi_q, hi)):
        assert min(0.0, finite[0]) <= value <= finite[-1]
        rank = q * buckets[-1][1]
        i = next(i for i, (_, c) in enumerate(buckets) if c >= rank)
        if i < len(finite):  # inside the bucket that holds the rank
            lower = finite[i - 1] if i > 0 else min(0.0, finite[0])
            assert lower <= value <= finite[i]


# --------------------------------------------------------------------------------- config


def test_config() -> None:
    cfg = from_mapping(Config, {"url": "http://127.0.0.1:8000", "service": "chat"}, where="t")
    assert (cfg.runtime, cfg.timeout_s, cfg.model_name) == ("furiosa-llm", 2.0, None)
    assert metrics_url(cfg.url) == "http://127.0.0.1:8000/metrics"
    assert metrics_url("http://h:1/custom/metrics") == "http://h:1/custom/metrics"
    for bad in ({"url": "file:///etc/passwd"}, {"url": "http://h", "service": "a b"}):
        with pytest.raises(ValueError, match=r"url|service"):
            Config(**{"url": "http://h", "service": "chat", **bad})
    with pytest.raises(ValueError, match="timeout_s"):
        Config(url="http://h", service="chat", timeout_s=0)
    c = serving.PLUGIN.create("llm", cfg)
    assert isinstance(c, Collector) and c.name == "llm"
    assert asyncio.run(c.inventory()) == []


# --------------------------------------------------------------------------------- live endpoint


def bucket_of(latency_s: float) -> tuple[float, float]:
    """The emulator's bucket holding ``latency_s``: (lower, upper) bounds."""
    lower = 0.0
    for bound in (*E2E_LATENCY_BUCKETS_S, INF):
        if latency_s <= bound:
            return lower, bound if bound != INF else E2E_LATENCY_BUCKETS_S[-1]
        lower = bound
    raise AssertionError


def test_reads_an_emulated_node_against_its_ground_truth(tmp_path: Path) -> None:
    async def go() -> None:
        async with EmulatedNode(tmp_path, devices=2, seed=5) as node:
            c = serving.PLUGIN.create("llm", Config(url=node.serving_url, service="chat"))
            first_truth = node.step(0.0).serving
            (first,) = await c.collect()
            assert first.tag("runtime") == "furiosa-llm"
            assert first.tag("service") == "chat"
            assert first.tag("model_name") == "furiosa-ai/Llama-3.1-8B-Instruct"
            assert first.field("requests_total") == first_truth.requests_total == 0
            assert first.field("latency_p50_s") is None  # no window yet
            latencies: list[float] = []
            for k in range(1, 41):
                step = node.step(k * 0.5).serving
                latencies += step.latencies_s
            (second,) = await c.collect()
            requests = second.field("requests_total")
            assert requests == step.requests_total == len(latencies) > 50
            assert second.field("tokens_total") == step.tokens_total
            p50, p99 = second.field("latency_p50_s"), second.field("latency_p99_s")
            assert p50 is not None and p99 is not None and p50 <= p99
            ordered = sorted(latencies)
            for q, value in ((0.5, p50), (0.99, p99)):
                lower, upper = bucket_of(ordered[math.ceil(q * len(ordered)) - 1])
                assert lower <= value <= upper
            # a poll without new requests: counters unchanged, latency absent
            (third,) = await c.collect()
            assert third.field("requests_total") == requests
            assert third.field("latency_p50_s") is None and third.field("latency_p99_s") is None

    asyncio.run(go())


def test_a_restarted_server_counts_from_zero(tmp_path: Path) -> None:
    async def go() -> None:
        async with EmulatedNode(tmp_path / "a", devices=1, seed=1) as node:
            port = int(node.serving_url.rsplit(":", 1)[1])
            c = serving.PLUGIN.create("llm", Config(url=node.serving_url, service="chat"))
            for k in range(30):
                node.step(k * 1.0)
            await c.collect()
        async with EmulatedNode(tmp_path / "b", devices=1, seed=2, serving_port=port) as node:
            latencies: list[float] = []
            for k in range(6):
                latencies += node.step(k * 1.0).serving.latencies_s
            (sample,) = await c.collect()
            assert sample.field("requests_total") == len(latencies) > 0
            p50 = sample.field("latency_p50_s")
            assert p50 is not None
            lower, upper = bucket_of(sorted(latencies)[math.ceil(0.5 * len(latencies)) - 1])
            assert lower <= p50 <= upper

    asyncio.run(go())


def test_model_name_filter(tmp_path: Path) -> None:
    async def go() -> None:
        async with EmulatedNode(tmp_path, devices=1) as node:
            node.step(0.0)
            model = node.serving.model_name
            ok = serving.PLUGIN.create(
                "a", Config(url=node.serving_url, service="s", model_name=model)
            )
            assert (await ok.collect())[0].tag("model_name") == model
            other = serving.PLUGIN.create(
                "b", Config(url=node.serving_url, service="s", model_name="x")
            )
            with pytest.raises(ParseError, match="with model_name='x'"):
                await other.collect()

    asyncio.run(go())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_nothing_listening_is_unavailable_with_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/metrics"
    c = serving.PLUGIN.create("llm", Config(url=url, service="chat"))
    with pytest.raises(CollectorUnavailable, match="is the serving runtime up") as e:
        asyncio.run(c.collect())
    assert url in str(e.value)


def test_http_errors_and_non_serving_endpoints(tmp_path: Path) -> None:
    async def go() -> None:
        async with EmulatedNode(tmp_path, devices=1) as node:
            node.step(0.0)
            c = serving.PLUGIN.create("llm", Config(url=node.serving_url + "/nope", service="chat"))
            with pytest.raises(CollectorError, match="HTTP 404"):
                await c.collect()
            c = serving.PLUGIN.create(
                "llm", Config(url=node.serving_url + "/health", service="chat")
            )
            with pytest.raises(ParseError, match="no request_success_total"):
                await c.collect()

    asyncio.run(go())


def test_a_silent_server_times_out() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()  # accepts the connection in the kernel, never answers
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/metrics"
        c = serving.PLUGIN.create("llm", Config(url=url, service="chat", timeout_s=0.2))
        with pytest.raises(CollectorTimeout, match=r"no answer within 0\.2 s"):
            asyncio.run(c.collect())


def test_keep_parses_only_the_metrics_used_but_still_rejects_garbage() -> None:
    text = (
        "# TYPE vllm:num_requests_running gauge\n"
        'vllm:num_requests_running{model_name="m"} 3\n'
        'vllm:request_success_total{finished_reason="stop",model_name="m"} 7\n'
    )
    expo = parse_exposition(text, "t", keep=WANTED_NAMES)
    assert [s.name for s in expo.samples] == ["vllm:request_success_total"]
    with pytest.raises(ParseError, match="line 2"):
        parse_exposition("vllm:request_success_total 1\n{not a metric} 2\n", "t", keep=WANTED_NAMES)


_LINE_PIECES = st.sampled_from(
    ['vllm:e2e_request_latency_seconds_bucket', "a", "_x:y", "9bad", "{", "}", "{}", 'le="0.5"',
     'le="+Inf"', 'model_name="m a"', 'x="q\\"z"', 'y="\\\\"', 'z="{}"', ",", " ", "\t", "=", '"',
     "1", "-2.5e3", "+Inf", "NaN", "nan", "0x1", "12345", "-7", "1_0", "é"]
)  # fmt: skip


@given(st.lists(_LINE_PIECES, min_size=1, max_size=12).map("".join))
def test_sample_fast_path_agrees_with_the_full_parser(line: str) -> None:
    """The one-regex path for lines without escapes gives what the full parser gives, or leaves
    the line to it (which then accepts it the same way or names the error)."""
    line = line.strip(" \t")

    def run(f: object) -> object:
        try:
            return f(line, "t")  # type: ignore[operator]
        except serving.ParseError as e:
            return ("error", str(e))

    fast, slow = run(serving._parse_sample), run(serving._parse_sample_slow)
    if isinstance(fast, serving.PromSample) and isinstance(slow, serving.PromSample):
        assert (fast.name, fast.labels, fast.timestamp_ms) == (
            slow.name, slow.labels, slow.timestamp_ms,
        )  # fmt: skip
        assert fast.value == slow.value or (math.isnan(fast.value) and math.isnan(slow.value))
    else:
        assert fast == slow
