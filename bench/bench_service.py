"""Benchmark the REST service (``comfykit serve``) against the SDK on the same ComfyUI, in one run.

Three figures, each against real processes on loopback:

* **overhead**: one model-free job (EmptyImage -> ImageInvert -> SaveImage, a new colour every
  time so the cache never skips it) submitted through ``POST /api/v1/jobs`` with
  ``Prefer: wait=60`` until it is completed, versus the same job with ``AsyncComfyClient.run()``;
  sequential p50/p95 and the difference (target: at most +5 ms at p50);
* **status reads**: ``GET /api/v1/jobs/{id}`` from a Python load generator (N keep-alive
  connections, one ``httpx.AsyncClient`` each) against a standalone ``comfykit serve`` process,
  for the SQLite store and, where PostgreSQL is installed, the PostgreSQL store (target: at least
  2,000 req/s);
* **burst**: 1,000 concurrent submissions through the service: how many completed, how many
  prompts ComfyUI ran for them (0 duplicated) and how many were lost.

    .venv/bin/python bench/bench_service.py              # starts ComfyUI, the service(s)
    .venv/bin/python bench/bench_service.py --quick      # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from comfykit import AsyncComfyClient
from comfykit.testing import ComfyUIServer, PostgresServer, find_postgres_bin, free_port


def _graph(color: int) -> dict[str, Any]:
    return {
        "1": {"class_type": "EmptyImage",
              "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": color}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "bs"}},
    }  # fmt: skip


def _color() -> int:
    return random.randrange(0xFFFFFF)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@contextlib.contextmanager
def _service(comfyui_url: str, database_url: str | None, data_dir: Path) -> Iterator[str]:
    """A ``comfykit serve`` process on a free port; its base URL once ``/ready`` answers."""
    port = free_port()
    cmd = [
        sys.executable, "-m", "comfykit", "serve", "--comfyui-url", comfyui_url,
        "--port", str(port), "--data-dir", str(data_dir),
    ]  # fmt: skip
    if database_url:
        cmd += ["--database-url", database_url]
    log = open(data_dir / "serve.log", "ab")  # noqa: SIM115 - closed below
    env = {**os.environ, "COMFYKIT_LOG_LEVEL": "warning"}
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"comfykit serve exited: {(data_dir / 'serve.log').read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise SystemExit("comfykit serve did not become ready in 60 s")
            time.sleep(0.2)
        yield url
    except BaseException:
        # say what the service logged before the failure (its data dir is a temp dir)
        log.flush()
        tail = (data_dir / "serve.log").read_text(errors="replace")[-4000:]
        sys.stderr.write(f"--- comfykit serve's log (last 4000 characters) ---\n{tail}\n")
        raise
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


async def _overhead(service: str, comfyui: str, n: int) -> dict[str, float]:
    """Sequential latency to completion: service vs SDK, interleaved."""
    through_service: list[float] = []
    direct: list[float] = []
    async with httpx.AsyncClient(base_url=service, timeout=120) as http:
        async with AsyncComfyClient(comfyui) as comfy:
            for i in range(n + 5):
                t = time.perf_counter()
                r = await http.post(
                    "/api/v1/jobs", json={"workflow": _graph(_color())},
                    headers={"Prefer": "wait=60"},
                )  # fmt: skip
                elapsed_service = time.perf_counter() - t
                body = r.json()
                if r.status_code != 201 or body.get("status") != "completed":
                    raise SystemExit(f"service job did not complete: {r.status_code} {body}")
                t = time.perf_counter()
                await comfy.run(_graph(_color()), timeout=60)
                elapsed_direct = time.perf_counter() - t
                if i >= 5:  # warm-up
                    through_service.append(elapsed_service * 1000)
                    direct.append(elapsed_direct * 1000)
    return {
        "service_p50": statistics.median(through_service),
        "service_p95": _pct(through_service, 0.95),
        "sdk_p50": statistics.median(direct),
        "sdk_p95": _pct(direct, 0.95),
    }


def _wrk(url: str, seconds: float, connections: int) -> float | None:
    """Requests per second measured by wrk (Debian's package), or ``None`` without it."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    done = subprocess.run(
        [wrk, "-t", "1", "-c", str(connections), "-d", f"{max(1, int(seconds))}s", url],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    rate = re.search(r"Requests/sec:\s+([0-9.]+)", done.stdout)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", done.stdout)
    if rate is None or errors is not None:
        raise SystemExit(f"wrk failed: {done.stdout}{done.stderr}")
    return float(rate.group(1))


async def _status_reads(service: str, seconds: float, connections: int) -> dict[str, Any]:
    """Requests per second of ``GET /api/v1/jobs/{id}`` with keep-alive connections: wrk where
    it is installed (one thread: the machine has two cores and the service uses one), else a
    Python load generator."""
    async with httpx.AsyncClient(base_url=service, timeout=60) as http:
        r = await http.post(
            "/api/v1/jobs", json={"workflow": _graph(_color())}, headers={"Prefer": "wait=60"}
        )
        job_id = r.json()["job_id"]
    rate = _wrk(f"{service}/api/v1/jobs/{job_id}", seconds, connections)
    if rate is not None:
        return {"rate": rate, "tool": "wrk"}
    return {"rate": await _python_reads(service, job_id, seconds, connections), "tool": "httpx"}


async def _python_reads(service: str, job_id: str, seconds: float, connections: int) -> float:
    count = 0
    errors = 0
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal count, errors
        async with httpx.AsyncClient(base_url=service, timeout=30) as http:
            while time.perf_counter() < stop:
                resp = await http.get(f"/api/v1/jobs/{job_id}")
                if resp.status_code == 200:
                    count += 1
                else:
                    errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    if errors:
        raise SystemExit(f"{errors} status reads failed")
    return count / (time.perf_counter() - started)


async def _burst(service: str, comfyui: str, n: int) -> dict[str, int]:
    """``n`` concurrent submissions; completed / duplicated on ComfyUI / lost."""
    limits = httpx.Limits(max_connections=100)
    async with httpx.AsyncClient(base_url=service, timeout=600, limits=limits) as http:
        created = await asyncio.gather(
            *(http.post("/api/v1/jobs", json={"workflow": _graph(_color())}) for _ in range(n))
        )
        ids = [r.json()["job_id"] for r in created if r.status_code == 201]
        deadline = time.monotonic() + 600
        pending = set(ids)
        finished: dict[str, str] = {}
        while pending and time.monotonic() < deadline:
            for job_id in list(pending)[:200]:
                status = (await http.get(f"/api/v1/jobs/{job_id}")).json()["status"]
                if status in ("completed", "failed", "cancelled"):
                    finished[job_id] = status
                    pending.discard(job_id)
            await asyncio.sleep(0.2)
    async with AsyncComfyClient(comfyui) as comfy:
        history = await comfy.history()
    # every run of a job on ComfyUI carries the job id in its save node's file name prefix
    runs: dict[str, int] = {}
    for entry in history.values():
        text = json.dumps(entry.api_prompt)
        for job_id in re.findall(r"comfykit-server/([0-9a-f-]{36})/", text):
            runs[job_id] = runs.get(job_id, 0) + 1
    return {
        "submitted": n,
        "accepted": len(ids),
        "completed": sum(s == "completed" for s in finished.values()),
        "failed": sum(s != "completed" for s in finished.values()),
        "lost": len(pending),
        "history_entries": len(history),
        "ran_on_comfyui": sum(1 for i in ids if runs.get(i)),
        "duplicated": sum(runs.get(i, 0) - 1 for i in ids if runs.get(i, 0) > 1),
    }


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with ComfyUIServer(checkpoint=False) as comfyui, tempfile.TemporaryDirectory() as tmp:
        stores: list[tuple[str, str | None]] = [("sqlite", None)]
        pg: PostgresServer | None = None
        if find_postgres_bin() is not None and not args.no_postgres:
            pg = PostgresServer(database="bench").start()
            stores.append(("postgresql", pg.url))
        try:
            for name, database_url in stores:
                data_dir = Path(tmp) / name
                data_dir.mkdir()
                with _service(comfyui.url, database_url, data_dir) as service:
                    if name == "sqlite":
                        results["overhead"] = await _overhead(service, comfyui.url, args.jobs)
                    results[f"status_reads_{name}"] = await _status_reads(
                        service, args.seconds, args.connections
                    )
                    if name == "sqlite":
                        results["burst"] = await _burst(service, comfyui.url, args.burst)
        finally:
            if pg is not None:
                pg.stop()
    return results


def _table(r: dict[str, Any]) -> str:
    o = r["overhead"]
    diff = o["service_p50"] - o["sdk_p50"]
    lines = [
        "| metric | value | target | result |",
        "|---|---:|---|---|",
        f"| sequential job p50, SDK direct (ms) | {o['sdk_p50']:.1f} | | |",
        f"| sequential job p50, through the service (ms) | {o['service_p50']:.1f} | | |",
        f"| service overhead at p50 (ms) | {diff:+.1f} | ≤ +5 ms | "
        f"{'PASS' if diff <= 5 else 'FAIL'} |",
        f"| sequential job p95 SDK / service (ms) | {o['sdk_p95']:.1f} / "
        f"{o['service_p95']:.1f} | | |",
    ]
    for key, value in r.items():
        if key.startswith("status_reads_"):
            store = key.removeprefix("status_reads_")
            ok = "PASS" if value["rate"] >= 2000 else "FAIL"
            lines.append(f"| GET /api/v1/jobs/{{id}}, {store} store (req/s, {value['tool']}) | "
                         f"{value['rate']:,.0f} | ≥ 2,000 | {ok} |")  # fmt: skip
    b = r["burst"]
    ok = (
        b["completed"] == b["submitted"] == b["ran_on_comfyui"]
        and b["duplicated"] == 0
        and b["lost"] == 0
    )
    lines.append(
        f"| {b['submitted']} concurrent submissions: completed / failed / lost / ran on ComfyUI "
        f"/ duplicated | {b['completed']} / {b['failed']} / {b['lost']} / {b['ran_on_comfyui']}"
        f" / {b['duplicated']} | all, 0, 0, all, 0 | {'PASS' if ok else 'FAIL'} |"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200, help="sequential jobs per side")
    parser.add_argument("--seconds", type=float, default=10.0, help="status-read duration")
    parser.add_argument("--connections", type=int, default=16, help="status-read connections")
    parser.add_argument("--burst", type=int, default=1000, help="concurrent submissions")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--quick", action="store_true", help="small counts (a smoke run)")
    parser.add_argument("--json", dest="json_path", help="also write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.jobs, args.seconds, args.burst = 10, 2.0, 50
    results = asyncio.run(_run(args))
    print(_table(results))  # noqa: T201
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
