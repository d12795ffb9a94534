"""Triton Inference Server ``/metrics`` for the vision services: the emulator's exposition (golden),
the serving collector's ``triton`` mapping, and the two end to end against a running ``Node``; an
ensemble served with Triton's model configuration API, counted once."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import yaml

from kwatt.collectors import serving
from kwatt.collectors.base import CollectorError
from kwatt.collectors.serving import Config, parse_exposition, snapshot
from kwatt.emulators.agentconfig import agent_config
from kwatt.emulators.node import Node, NodeOptions, parse_devices
from kwatt.emulators.serving import TRITON_MAX_BATCH, MetricsServer, TritonEnsemble, TritonModel

FIXTURES = Path(__file__).parents[1] / "fixtures" / "serving"


def golden_model() -> TritonModel:
    t = TritonModel("food_resnet50")
    t.advance(120.4, 0.35, 0.0042, 0.0021)
    t.advance(80.7, 0.95, 0.0113, 0.0024)
    return t


def test_triton_exposition_matches_the_golden_file() -> None:
    text = golden_model().render()
    assert text == (FIXTURES / "triton-food-counters.txt").read_text(encoding="utf-8")
    # the real format: HELP/TYPE per family, labels model and version, whole numbers, reasons
    assert "# TYPE nv_inference_count counter\n" in text
    assert "# TYPE nv_inference_pending_request_count gauge\n" in text
    assert 'nv_inference_count{model="food_resnet50",version="1"} 201\n' in text
    for reason in ("REJECTED", "CANCELED", "BACKEND", "OTHER"):
        assert (
            f'nv_inference_request_failure{{model="food_resnet50",version="1",reason="{reason}"}} 0'
            in text
        )
    assert "summary_us" not in text and "_bucket" not in text  # Triton's defaults: counters only


def test_triton_counters_follow_the_served_work() -> None:
    t = TritonModel("m")
    assert t.advance(0.6, 0.1, 0.01, 0.005) == 0  # a frame in flight is not counted yet
    assert t.advance(0.6, 0.1, 0.01, 0.005) == 1
    assert t.advance(99.8, 1.0, 0.02, 0.004) == 100  # 0.2 + 99.8
    assert t.inferences == t.success == 101
    assert t.executions == 1 + math.ceil(100 / TRITON_MAX_BATCH)  # batch 1, then 8 at full load
    assert t.request_us == round(1 * 0.01e6) + round(100 * 0.02e6)
    assert t.queue_us == t.request_us - (round(0.005e6) + round(100 * 0.004e6))
    assert t.input_us + t.infer_us + t.output_us == t.request_us - t.queue_us


def test_collector_maps_triton_names() -> None:
    expo = parse_exposition(
        (FIXTURES / "triton-food-counters.txt").read_text(encoding="utf-8"),
        keep=serving.WANTED_NAMES,
    )
    snap = snapshot(expo, "triton")
    assert snap.requests_total == 201
    assert snap.inferences_total == 201
    assert snap.tokens_total is None and snap.latency_buckets is None
    assert snap.model_names == frozenset({"food_resnet50"})
    # model_name selects Triton's `model` label; two models are summed
    two = (FIXTURES / "triton-food-counters.txt").read_text(encoding="utf-8") + (
        'nv_inference_request_success{model="other",version="2"} 7\n'
        'nv_inference_count{model="other",version="2"} 56\n'
    )
    expo2 = parse_exposition(two, keep=serving.WANTED_NAMES)
    assert snapshot(expo2, "triton").inferences_total == 201 + 56
    assert snapshot(expo2, "triton", model_name="other").requests_total == 7
    # found under another runtime's name too (a mislabelled entry still reads the counters)
    assert snapshot(expo, "vllm").inferences_total == 201


def test_triton_end_to_end_against_a_node(tmp_path: Path) -> None:
    """A vision node's printed config has a triton entry; the collector reads the node's true work."""

    async def go() -> None:
        opts = NodeOptions(devices=parse_devices("l4:2"), services=("traffic",), seed=4)
        async with Node(tmp_path, opts) as node:
            node.step(0.0)
            entries = [
                e
                for e in yaml.safe_load(agent_config(node))["collectors"]
                if e["type"] == "serving"
            ]
            assert [(e["service"], e["runtime"], e["name"]) for e in entries] == [
                ("traffic", "triton", "traffic-triton")
            ]
            c = serving.PLUGIN.create(
                "t", Config(url=entries[0]["url"], service="traffic", runtime="triton")
            )
            first = (await c.collect())[0]
            truth = node.step(5.0)
            second = (await c.collect())[0]
            await c.aclose()
            served = truth.services["traffic"].served_units_total
            tri = truth.triton["traffic"]
            assert first.tag("runtime") == "triton" and first.tag("service") == "traffic"
            assert first.tag("model_name") == "traffic_yolov8s"
            assert second.field("inferences_total") == tri.inferences_total
            assert second.field("requests_total") == tri.requests_total
            # whole frames of the physics' served work: at most one frame in flight
            assert 0 <= served - tri.inferences_total < 1.0
            assert tri.inferences_total > 1000  # 2 L4s at 70 % of their detection peak
            assert second.field("latency_p50_s") is None  # no histogram: not invented
            assert second.field("latency_p99_s") is None

    asyncio.run(go())


def test_every_service_endpoint_gets_a_serving_collector(tmp_path: Path) -> None:
    async def go() -> None:
        opts = NodeOptions(
            devices=parse_devices("rngd,warboy,atom,x220-compact"),
            services=("chatbot", "traffic", "food", "construction"),
        )
        async with Node(tmp_path, opts) as node:
            node.step(0.0)
            doc = yaml.safe_load(agent_config(node))
            got = {
                (e["service"], e["runtime"]) for e in doc["collectors"] if e["type"] == "serving"
            }
            # rngd and atom run the chatbot (first service they can run); warboy and x220 traffic
            assert got == {
                ("chatbot", "furiosa-llm"),
                ("chatbot", "vllm-rbln"),
                ("traffic", "triton"),
            }

    asyncio.run(go())


# ---------------------------------------------------------------------------------- ensembles


def serve_ensemble(
    body: Callable[[MetricsServer, TritonEnsemble], Awaitable[None]],
) -> None:
    """Run ``body`` against an emulated tritonserver serving the TensorRT-LLM style ensemble
    (``/metrics`` and ``/v2/models/<name>/config`` on one port)."""
    ensemble = TritonEnsemble("ensemble", ["preprocessing", "tensorrt_llm", "postprocessing"])

    async def main() -> None:
        server = MetricsServer(ensemble.render, model_config=ensemble.config)
        await server.start()
        try:
            await body(server, ensemble)
        finally:
            await server.aclose()

    asyncio.run(main())


def test_ensemble_counts_client_requests_once_end_to_end() -> None:
    """The emulated ensemble counts each request for itself and every step (as tritonserver does);
    the collector, told by Triton's configuration API which models are steps, counts it once."""

    async def body(server: MetricsServer, ensemble: TritonEnsemble) -> None:
        url = f"http://{MetricsServer.HOST}:{server.port}"
        learnt = serving.PLUGIN.create(
            "t", Config(url=url, service="chat", runtime="triton", model_config_url=url)
        )
        listed = serving.PLUGIN.create(
            "t",
            Config(
                url=url,
                service="chat",
                runtime="triton",
                composing_models=("preprocessing", "tensorrt_llm", "postprocessing"),
            ),
        )
        naive = serving.PLUGIN.create("t", Config(url=url, service="chat", runtime="triton"))
        for served in (12.0, 30.0, 7.0):
            ensemble.advance(served, 0.5, 0.2, 0.15)
            truth = ensemble.ensemble.success
            for c in (learnt, listed):
                (s,) = await c.collect()
                assert s.field("requests_total") == truth
                assert s.field("inferences_total") == truth
                assert s.tag("model_name") == "ensemble"
            (s,) = await naive.collect()
            assert s.field("requests_total") == 4 * truth  # the over-count this option fixes
        assert learnt._steps == {  # each model's configuration was asked for once
            "ensemble": ("preprocessing", "tensorrt_llm", "postprocessing"),
            "preprocessing": (),
            "tensorrt_llm": (),
            "postprocessing": (),
        }

    serve_ensemble(body)


def test_model_config_errors_fail_the_poll() -> None:
    """A configuration the collector cannot read fails the poll (never a silent over-count)."""

    async def body(server: MetricsServer, ensemble: TritonEnsemble) -> None:
        url = f"http://{MetricsServer.HOST}:{server.port}"
        ensemble.advance(5.0, 0.5, 0.2, 0.15)
        wrong = serving.PLUGIN.create(
            "t",
            Config(
                url=url,
                service="chat",
                runtime="triton",
                model_config_url=f"http://{MetricsServer.HOST}:9",
            ),
        )
        with pytest.raises(CollectorError):
            await wrong.collect()

    serve_ensemble(body)
    with pytest.raises(ValueError, match="model_config_url"):
        Config(url="http://x:8002", service="s", runtime="triton", model_config_url="ftp://x")
