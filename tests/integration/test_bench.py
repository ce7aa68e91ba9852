"""The benchmark still runs end to end (a smoke run: its numbers are not judged here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_client.py"


def test_quick_benchmark_run_measures_every_client(comfyui_url: str, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--url", comfyui_url, "--quick", "--levels", "1,8"]
        + ["--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(out.read_text())
    for name in ("raw", "async", "sync"):
        assert results["sequential_ms"][name]["n"] == 20
        assert results["sequential_ms"][name]["p50"] > 0
        assert set(results["throughput_jobs_per_s"][name]) == {"1", "8"}
        assert all(v > 0 for v in results["throughput_jobs_per_s"][name].values())
    assert results["sequential_ms"]["raw_sync"]["n"] == 20
    for name in ("raw", "async", "sync", "raw_sync"):
        # the server's own execution time of each job, from its history timestamps
        seq = results["sequential_ms"][name]
        assert 0 <= seq["server_execution_mean"] < 1000
        assert 0 < seq["outside_execution_mean"] < seq["p95"] + 1  # (whole-ms timestamps)
    assert "| server's execution per job, sequential (ms, trimmed mean) |" in done.stdout
    assert results["sequential_ms"]["raw_sync"]["p50"] > 0
    assert results["import"]["heavy_modules_loaded"] == []
    assert "| sequential latency p50 (ms) |" in done.stdout
    assert "throughput, 8 in flight" in done.stdout
    assert "raw *sync* client" in done.stdout


def test_split_placement_needs_the_benchmarks_own_server() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--url", "http://127.0.0.1:9", "--placement", "split"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "--placement split needs the benchmark's own server" in done.stderr


POOL_BENCH = BENCH.with_name("bench_pool.py")


def test_quick_pool_benchmark_run(comfyui_url: str, tmp_path: Path) -> None:
    """bench_pool.py end to end (it starts its own servers; its numbers are not judged here)."""
    del comfyui_url  # only for the skip: the harness must be able to start servers
    out = tmp_path / "pool.json"
    done = subprocess.run(
        [sys.executable, str(POOL_BENCH), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr[-2000:]  # 1: a ratio under the target
    results = json.loads(out.read_text())["results"]
    assert [row["servers"] for row in results] == [1, 2]
    assert all(row["jobs_per_s"] > 0 and row["by_hand_jobs_per_s"] > 0 for row in results)
    assert results[1]["jobs_per_server"] == [[5, 5]] and results[1]["ratio"] > 0
    assert "| servers (K) |" in done.stdout
