"""`make bench` in miniature: every benchmark of bench/run.py runs with tiny sizes and reports its
figures (issue 8: a smoke run may be part of `make test`; nothing here looks at a time)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_benchmark_runs_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    r = subprocess.run(
        [sys.executable, "bench/run.py", "--quick", "--output", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    text = out.read_text()
    assert "Smoke run" in text and "## Summary" in text
    for heading in ("Agent overhead", "Cost per collector poll", "Ingest throughput",
                    "Encoder and parser", "End-to-end latency", "Fleet scale",
                    "Analytics reduction"):  # fmt: skip
        assert f"### {heading}" in text, heading
    assert "error" not in text.split("## Commands and output")[0], text


def test_the_runner_reads_the_last_json_line_and_refuses_garbage(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("bench_run", REPO / "bench" / "run.py")
    assert spec is not None and spec.loader is not None
    bench_run = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = bench_run  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(bench_run)
    finally:
        del sys.modules["bench_run"]
    assert bench_run._last_json('x\n{"bench": "a"}\ntail\n{"bench": "b", "n": 1}\n') == {
        "bench": "b",
        "n": 1,
    }
    assert bench_run._last_json("no json\n") is None
    assert bench_run._last_json("{not json\n") is None
    r = subprocess.run(
        [sys.executable, "bench/run.py", "--only", "nonesuch"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 2 and "unknown benchmark(s) nonesuch" in r.stderr
