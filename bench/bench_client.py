"""Benchmark comfykit against a minimal raw client on the same ComfyUI server, in the same run.

The raw client is what a careful hand-written integration does: ``httpx.AsyncClient`` plus ONE
WebSocket whose reader task resolves a future per ``prompt_id`` when ``executing{node: null}``
arrives, then ``GET /history/{id}``. comfykit does the same work (submit with ``client_id``,
wait for the completion frame, read the history). The graph is EmptyImage -> ImageInvert ->
SaveImage with a different colour every job, so the server's cache never skips it.

Measured in rounds in which only the client being measured is open (an idle client's socket
still receives the server's broadcast frames, and reading them would cost the measured client),
the clients' order rotating from round to round to cancel drift:

* sequential latency p50/p95 per job: raw, comfykit async, comfykit sync, and a raw *sync*
  client (``httpx.Client`` + ``websockets.sync``, reading its socket in the waiting thread): the
  price of websockets' threaded sync API on its own, apart from comfykit's;
* throughput (jobs/s) with 1, 8, 32 and 64 jobs in flight: raw, comfykit async, comfykit sync
  (threads sharing one ``ComfyClient``);
* ``import comfykit`` time in a fresh interpreter, and that FastAPI, PIL and torch stay unloaded.

Placement: by default (``--placement split``, Linux with 2+ CPUs, the benchmark's own server) the
server is pinned to one CPU and the benchmark to the others, as if the server ran on a machine of
its own. Sharing the cores (``--placement shared``) makes the server's own speed depend on how
busy the client keeps its CPU, which is not the client's cost; both are reported in README.md.

    .venv/bin/python bench/bench_client.py                  # starts a ComfyUIServer
    .venv/bin/python bench/bench_client.py --url http://127.0.0.1:8188 --json out.json
    .venv/bin/python bench/bench_client.py --quick          # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.sync.client import connect as connect_sync

from comfykit import AsyncComfyClient, ComfyClient

Graph = dict[str, dict[str, Any]]

SEQ_P50_TARGET = 1.10
THROUGHPUT_TARGET = 1.0
IMPORT_TARGET_MS = 150.0
HEAVY_MODULES = ("fastapi", "PIL", "torch")
JOB_TIMEOUT = 300.0
#: Sequential jobs per client per block: small blocks, many rotations, to cancel drift.
SEQUENTIAL_BLOCK = 25

_colours = itertools.count(1)


def graph() -> Graph:
    """A fresh invert graph: a new colour each call, so nothing is served from the cache."""
    colour = next(_colours) % 0xFFFFFF
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": colour},
        },
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {
            "class_type": "SaveImage",
            # SaveImage lists its folder to number the file: spreading the files over 256
            # folders keeps that cost small and the same for every client all run long.
            "inputs": {"images": ["2", 0], "filename_prefix": f"bench/{colour % 256}/invert"},
        },
    }


# -- the raw client ----------------------------------------------------------------------------


class RawClient:
    """httpx + one WebSocket with a reader task; futures keyed by prompt id."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client_id = uuid.uuid4().hex
        self.http = httpx.AsyncClient(
            base_url=url,
            timeout=60,
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        )
        self.waiters: dict[str, asyncio.Future[None]] = {}
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        ws_url = "ws://" + self.url.split("://", 1)[1] + f"/ws?clientId={self.client_id}"
        ws = await connect(ws_url, max_size=None, compression=None, ping_interval=None)
        while True:  # registered once the first status frame (with our sid) arrives
            first = json.loads(await ws.recv())
            if first.get("type") == "status" and first["data"].get("sid"):
                break
        self._ws = ws
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._ws is not None
        async for frame in self._ws:
            if isinstance(frame, bytes):
                continue
            message = json.loads(frame)
            if message.get("type") != "executing":
                continue
            data = message["data"]
            if data.get("node") is None:
                future = self.waiters.pop(data.get("prompt_id"), None)
                if future is not None and not future.done():
                    future.set_result(None)

    async def run(self, prompt: Graph) -> dict[str, Any]:
        """Submit, wait for ``executing{node: null}``, return the history entry."""
        prompt_id = str(uuid.uuid4())
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters[prompt_id] = future
        body = {"prompt": prompt, "client_id": self.client_id, "prompt_id": prompt_id}
        response = await self.http.post("/prompt", json=body)
        response.raise_for_status()
        await asyncio.wait_for(future, JOB_TIMEOUT)
        history = (await self.http.get(f"/history/{prompt_id}")).json()
        entry: dict[str, Any] = history[prompt_id]
        if entry["status"]["status_str"] != "success":
            raise RuntimeError(f"raw job {prompt_id} failed")
        return entry

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - shutting down
                pass
        if self._ws is not None:
            await self._ws.close()
        await self.http.aclose()


class RawSyncClient:
    """``httpx.Client`` + one ``websockets.sync`` connection, read by the thread that waits."""

    def __init__(self, url: str) -> None:
        self.client_id = uuid.uuid4().hex
        self.http = httpx.Client(base_url=url, timeout=60)
        ws_url = "ws://" + url.split("://", 1)[1] + f"/ws?clientId={self.client_id}"
        self._ws = connect_sync(ws_url, max_size=None, compression=None, ping_interval=None)
        self._ws.__enter__()  # managed: leaving it closes the socket
        while True:  # registered once the first status frame (with our sid) arrives
            first = json.loads(self._ws.recv())
            if first.get("type") == "status" and first["data"].get("sid"):
                break

    def run(self, prompt: Graph) -> dict[str, Any]:
        """Submit, read frames until ``executing{node: null}`` for it, return the history entry."""
        prompt_id = str(uuid.uuid4())
        body = {"prompt": prompt, "client_id": self.client_id, "prompt_id": prompt_id}
        self.http.post("/prompt", json=body).raise_for_status()
        deadline = time.monotonic() + JOB_TIMEOUT
        while True:
            frame = self._ws.recv(timeout=max(deadline - time.monotonic(), 0))
            if isinstance(frame, bytes):
                continue
            message = json.loads(frame)
            data = message["data"]
            if message.get("type") == "executing" and data.get("node") is None:
                if data.get("prompt_id") == prompt_id:
                    break
        entry: dict[str, Any] = self.http.get(f"/history/{prompt_id}").json()[prompt_id]
        if entry["status"]["status_str"] != "success":
            raise RuntimeError(f"raw sync job {prompt_id} failed")
        return entry

    def close(self) -> None:
        self._ws.__exit__(None, None, None)
        self.http.close()


# -- one job per client kind ---------------------------------------------------------------


def server_execution_ms(messages: Sequence[Sequence[Any]]) -> float:
    """How long the server took to execute a prompt, from its history entry's status messages
    (``execution_start`` to ``execution_success``; the server stamps them in whole ms)."""
    stamps = {kind: data["timestamp"] for kind, data in messages}
    return float(stamps["execution_success"] - stamps["execution_start"])


async def comfykit_async_job(client: AsyncComfyClient) -> float:
    job = await client.submit(graph())
    result = await job.result(timeout=JOB_TIMEOUT)
    assert result.outputs, "no outputs"
    assert result.history is not None and result.history.status is not None
    return server_execution_ms(result.history.status.messages)


def comfykit_sync_job(client: ComfyClient) -> float:
    job = client.submit(graph())
    result = job.result(timeout=JOB_TIMEOUT)
    assert result.outputs, "no outputs"
    assert result.history is not None and result.history.status is not None
    return server_execution_ms(result.history.status.messages)


# -- measurements ------------------------------------------------------------------------------


def trimmed_mean(values: Sequence[float], cut: float = 0.05) -> float:
    """The mean of the values left after dropping the lowest and highest ``cut`` of them: the
    server's timestamps are whole milliseconds (a mean undoes that), and a few stalled jobs
    would otherwise move a plain mean."""
    ordered = sorted(values)
    drop = int(len(ordered) * cut)
    return statistics.fmean(ordered[drop : len(ordered) - drop])


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) with linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


async def timed_async(fn: Callable[[], Awaitable[float]]) -> tuple[float, float]:
    """(seconds the job took, the server's execution time in ms)."""
    start = time.perf_counter()
    executed = await fn()
    return time.perf_counter() - start, executed


def timed_sync(fn: Callable[[], float]) -> tuple[float, float]:
    start = time.perf_counter()
    executed = fn()
    return time.perf_counter() - start, executed


async def run_in_flight_async(fn: Callable[[], Awaitable[Any]], jobs: int, in_flight: int) -> float:
    """Seconds to finish ``jobs`` jobs keeping ``in_flight`` of them submitted at a time."""
    remaining = jobs

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await fn()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(in_flight, jobs))))
    return time.perf_counter() - start


def run_in_flight_sync(fn: Callable[[], Any], jobs: int, in_flight: int) -> float:
    """Threads sharing one sync client; ``in_flight == 1`` runs on this thread."""
    start = time.perf_counter()
    if in_flight == 1:
        for _ in range(jobs):
            fn()
    else:
        with ThreadPoolExecutor(max_workers=in_flight) as pool:
            for future in [pool.submit(fn) for _ in range(jobs)]:
                future.result()
    return time.perf_counter() - start


class Session:
    """One open client of one kind: ``run(jobs, in_flight)`` -> (seconds, per-job latencies)."""

    def __init__(
        self,
        async_job: Callable[[], Awaitable[Any]] | None = None,
        sync_job: Callable[[], Any] | None = None,
    ) -> None:
        self.async_job = async_job
        self.sync_job = sync_job

    async def one(self) -> tuple[float, float]:
        """Run one job: (seconds it took, the server's execution time in ms)."""
        if self.async_job is not None:
            return await timed_async(self.async_job)
        assert self.sync_job is not None
        return timed_sync(self.sync_job)

    async def run(self, jobs: int, in_flight: int) -> float:
        if self.async_job is not None:
            return await run_in_flight_async(self.async_job, jobs, in_flight)
        assert self.sync_job is not None
        return run_in_flight_sync(self.sync_job, jobs, in_flight)


CLIENTS = ("raw", "async", "sync")
#: The sequential measurement also times the raw sync client (a baseline for the sync column).
SEQUENTIAL_CLIENTS = ("raw", "async", "sync", "raw_sync")


@contextlib.asynccontextmanager
async def session(name: str, url: str, warmup: int, in_flight: int = 1) -> AsyncIterator[Session]:
    """Open a client of kind ``name``, run ``warmup`` jobs on it with ``in_flight`` of them at a
    time (untimed: this opens the connections the measurement will use), close it after.

    Only the client being measured is open: an idle client's WebSocket still receives the
    server's broadcast ``status`` frames, and whoever reads them (a raw reader task, the sync
    client's socket thread) would spend CPU inside another client's measurement.
    """
    if name == "raw":
        raw = RawClient(url)
        await raw.start()

        async def raw_job() -> float:
            return server_execution_ms((await raw.run(graph()))["status"]["messages"])

        try:
            opened = Session(async_job=raw_job)
            await opened.run(warmup, in_flight)
            yield opened
        finally:
            await raw.close()
    elif name == "async":
        async with AsyncComfyClient(url) as ck_async:

            async def async_job() -> float:
                return await comfykit_async_job(ck_async)

            opened = Session(async_job=async_job)
            await opened.run(warmup, in_flight)
            yield opened
    elif name == "raw_sync":
        raw_sync = RawSyncClient(url)
        try:
            opened = Session(
                sync_job=lambda: server_execution_ms(raw_sync.run(graph())["status"]["messages"])
            )
            await opened.run(warmup, in_flight)
            yield opened
        finally:
            raw_sync.close()
    else:
        with ComfyClient(url) as ck_sync:
            opened = Session(sync_job=lambda: comfykit_sync_job(ck_sync))
            await opened.run(warmup, in_flight)
            yield opened


def rotation(r: int, names: Sequence[str] = CLIENTS) -> list[str]:
    """The clients' order in round ``r``: every client goes first, in the middle and last in
    turn, in both directions (for three: ABC, CBA, BCA, ACB, CAB, BAC)."""
    shift = r // 2 % len(names)
    order = list(names[shift:]) + list(names[:shift])
    return order if r % 2 == 0 else order[::-1]


async def bench(url: str, args: argparse.Namespace) -> dict[str, Any]:
    log(f"warm-up: {args.warmup} jobs per client (the catalog, the server's caches)")
    for name in SEQUENTIAL_CLIENTS:
        async with session(name, url, args.warmup):
            pass

    # Sequential latency: blocks of jobs, one client at a time, the order rotating per block.
    latencies: dict[str, list[float]] = {name: [] for name in SEQUENTIAL_CLIENTS}
    # The server's own execution time of each of those jobs (from its history timestamps).
    executions: dict[str, list[float]] = {name: [] for name in SEQUENTIAL_CLIENTS}
    # Client CPU (this process) per job: robust to the server's and other load's noise.
    seq_cpu: dict[str, float] = dict.fromkeys(SEQUENTIAL_CLIENTS, 0.0)
    per_block = min(SEQUENTIAL_BLOCK, args.sequential)
    blocks = max(1, -(-args.sequential // per_block))
    log(f"sequential: {blocks} blocks of {per_block} jobs per client")
    for b in range(blocks):
        for name in rotation(b, SEQUENTIAL_CLIENTS):
            async with session(name, url, 2) as client:
                cpu = time.process_time()
                for _ in range(per_block):
                    seconds, executed_ms = await client.one()
                    latencies[name].append(seconds)
                    executions[name].append(executed_ms)
                seq_cpu[name] += time.process_time() - cpu

    # Throughput: per level, rounds in which each client runs alone, the order rotating. The
    # ratio is the median of the per-round ratios, which cancels slow drift of the machine
    # (other processes share the cores); jobs/s are totals over all rounds.
    throughput: dict[str, dict[str, float]] = {name: {} for name in CLIENTS}
    ratios: dict[str, dict[str, float]] = {"async": {}, "sync": {}}
    round_ratios: dict[str, dict[str, list[float]]] = {"async": {}, "sync": {}}
    cpu_ms: dict[str, dict[str, float]] = {
        name: {"sequential": seq_cpu[name] / (blocks * per_block) * 1000}
        for name in SEQUENTIAL_CLIENTS
    }
    for level in args.levels:
        per_round = max(32, 2 * level)
        rounds = max(args.rounds, -(-args.jobs // per_round))
        log(f"throughput: {rounds} rounds of {per_round} jobs per client, {level} in flight")
        spent: dict[str, list[float]] = {name: [] for name in CLIENTS}
        level_cpu: dict[str, float] = dict.fromkeys(CLIENTS, 0.0)
        for r in range(rounds):
            for name in rotation(r):
                async with session(name, url, max(2, level), level) as client:
                    cpu = time.process_time()
                    spent[name].append(await client.run(per_round, level))
                    level_cpu[name] += time.process_time() - cpu
        for name, times in spent.items():
            throughput[name][str(level)] = per_round * rounds / sum(times)
            cpu_ms[name][f"{level} in flight"] = level_cpu[name] / (per_round * rounds) * 1000
        for name in ("async", "sync"):
            # jobs/s ratio of one round = raw time / comfykit time
            per_round_ratios = [
                raw_s / ck_s for raw_s, ck_s in zip(spent["raw"], spent[name], strict=True)
            ]
            ratios[name][str(level)] = statistics.median(per_round_ratios)
            round_ratios[name][str(level)] = per_round_ratios

    return {
        "sequential_ms": {
            name: {
                "p50": percentile(values, 0.50) * 1000,
                "p95": percentile(values, 0.95) * 1000,
                "mean": statistics.fmean(values) * 1000,
                "server_execution_mean": trimmed_mean(executions[name]),
                "outside_execution_mean": trimmed_mean(
                    [t * 1000 - e for t, e in zip(values, executions[name], strict=True)]
                ),
                "n": len(values),
            }
            for name, values in latencies.items()
        },
        "throughput_jobs_per_s": throughput,
        "throughput_ratio_median": ratios,
        "throughput_ratio_per_round": round_ratios,
        "client_cpu_ms_per_job": cpu_ms,
    }


def _time_import(statement: str, runs: int) -> tuple[list[float], set[str]]:
    code = (
        "import sys, time, json\n"
        "t = time.perf_counter()\n"
        f"{statement}\n"
        "dt = time.perf_counter() - t\n"
        f"print(json.dumps([dt, [m for m in {HEAVY_MODULES!r} if m in sys.modules]]))\n"
    )
    times: list[float] = []
    loaded: set[str] = set()
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
        seconds, heavy = json.loads(out)
        times.append(float(seconds))
        loaded.update(heavy)
    return times, loaded


def measure_import(runs: int = 7) -> dict[str, Any]:
    """Median ``import comfykit`` time in fresh interpreters, and which heavy modules loaded;
    also the time to import both clients (public names load on first use)."""
    times, loaded = _time_import("import comfykit", runs)
    client_times, client_loaded = _time_import(
        "from comfykit import AsyncComfyClient, ComfyClient", runs
    )
    loaded |= client_loaded
    floor_code = (
        "import time\n"
        "t = time.perf_counter()\n"
        "import httpx, pydantic, tenacity, websockets.asyncio.client, websockets.sync.client\n"
        "print(time.perf_counter() - t)\n"
    )
    floor = [
        float(
            subprocess.run(
                [sys.executable, "-c", floor_code], capture_output=True, text=True, check=True
            ).stdout
        )
        for _ in range(runs)
    ]
    return {
        "median_ms": statistics.median(times) * 1000,
        "clients_median_ms": statistics.median(client_times) * 1000,
        "dependencies_median_ms": statistics.median(floor) * 1000,
        "runs_ms": [t * 1000 for t in times],
        "heavy_modules_loaded": sorted(loaded),
    }


# -- report ------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _range(values: Sequence[float]) -> str:
    """The spread of per-round ratios, shown next to their median."""
    return f"({min(values):.2f}–{max(values):.2f})"


def table(results: dict[str, Any]) -> str:
    seq = results["sequential_ms"]
    thr = results["throughput_jobs_per_s"]
    imp = results["import"]
    lines = [
        "| metric | raw | comfykit async | comfykit sync | async / raw | sync / raw | target |"
        " result |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for q in ("p50", "p95"):
        raw, a, s = seq["raw"][q], seq["async"][q], seq["sync"][q]
        target, result = "", ""
        if q == "p50":
            target = f"≤ {SEQ_P50_TARGET:.2f}× raw"
            result = (
                f"async {verdict(a / raw <= SEQ_P50_TARGET)}, "
                f"sync {verdict(s / raw <= SEQ_P50_TARGET)}"
            )
        lines.append(
            f"| sequential latency {q} (ms) | {raw:.1f} | {a:.1f} | {s:.1f} | "
            f"{a / raw:.3f} | {s / raw:.3f} | {target} | {result} |"
        )
    for q in ("p50", "p95"):
        raw_sync, s = seq["raw_sync"][q], seq["sync"][q]
        lines.append(
            f"| sequential latency {q}, raw *sync* client (ms) | {raw_sync:.1f} | | | |"
            f" sync / raw sync: {s / raw_sync:.3f} | (diagnostic) | |"
        )
    # Where the time goes, per job: the server's execution (from its own timestamps) and the
    # rest (HTTP, frames, the client's code), as trimmed means. The server's part depends on
    # the client too: it runs slower while a blocking client waits.
    names = ("raw", "async", "sync", "raw_sync")
    execution = [seq[n]["server_execution_mean"] for n in names]
    outside = [seq[n]["outside_execution_mean"] for n in names]
    for label, values in (
        ("server's execution per job, sequential (ms, trimmed mean)", execution),
        ("sequential latency outside the server's execution (ms, trimmed mean)", outside),
    ):
        raw, a, s, rs = values
        lines.append(
            f"| {label} | {raw:.2f} | {a:.2f} | {s:.2f} | {a / raw:.3f} | {s / raw:.3f} |"
            f" (diagnostic; raw *sync* client: {rs:.2f}) | |"
        )
    ratio = results["throughput_ratio_median"]
    for level in thr["raw"]:
        raw, a, s = thr["raw"][level], thr["async"][level], thr["sync"][level]
        ra, rs = ratio["async"][level], ratio["sync"][level]
        target, result = "", ""
        if level == "64":
            target = f"≥ {THROUGHPUT_TARGET:.2f}× raw"
            result = (
                f"async {verdict(ra >= THROUGHPUT_TARGET)}, sync {verdict(rs >= THROUGHPUT_TARGET)}"
            )
        spread = results["throughput_ratio_per_round"]
        lines.append(
            f"| throughput, {level} in flight (jobs/s) | {raw:.1f} | {a:.1f} | {s:.1f} | "
            f"{ra:.3f} {_range(spread['async'][level])} | {rs:.3f} {_range(spread['sync'][level])}"
            f" | {target} | {result} |"
        )
    cpu = results["client_cpu_ms_per_job"]
    for phase in cpu["raw"]:
        raw, a, s = cpu["raw"][phase], cpu["async"][phase], cpu["sync"][phase]
        lines.append(
            f"| client CPU per job, {phase} (ms) | {raw:.2f} | {a:.2f} | {s:.2f} | "
            f"{a / raw:.3f} | {s / raw:.3f} | (diagnostic) | |"
        )
    raw_sync_cpu, s = cpu["raw_sync"]["sequential"], cpu["sync"]["sequential"]
    lines.append(
        f"| client CPU per job, sequential, raw *sync* client (ms) | {raw_sync_cpu:.2f} | | | |"
        f" sync / raw sync: {s / raw_sync_cpu:.3f} | (diagnostic) | |"
    )
    heavy = ", ".join(imp["heavy_modules_loaded"]) or "none"
    ok = imp["median_ms"] < IMPORT_TARGET_MS and not imp["heavy_modules_loaded"]
    lines.append(
        f"| `import comfykit` (ms, median of {len(imp['runs_ms'])}) | | {imp['median_ms']:.0f} | |"
        f" | | < {IMPORT_TARGET_MS:.0f} ms; no {', '.join(HEAVY_MODULES)} (loaded: {heavy}) |"
        f" {verdict(ok)} |"
    )
    lines.append(
        f"| `from comfykit import AsyncComfyClient, ComfyClient` (ms) | |"
        f" {imp['clients_median_ms']:.0f} | | | | (diagnostic: loads both clients) | |"
    )
    lines.append(
        f"| import of the dependencies alone (httpx, pydantic, websockets, tenacity; ms) | |"
        f" {imp['dependencies_median_ms']:.0f} | | | | (floor, for reference) | |"
    )
    return "\n".join(lines)


def machine() -> str:
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}"
    )


def placement(mode: str | None, own_server: bool) -> dict[str, Any]:
    """Where the server and the benchmark run: ``split`` pins the server to the first CPU this
    process may use and the benchmark to the rest; ``shared`` pins nothing; ``None`` is split
    where it can be (the benchmark's own server, Linux, 2+ CPUs), else shared."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if mode is None:
        mode = "split" if own_server and len(cpus) >= 2 else "shared"
    if mode == "shared":
        return {"mode": "shared", "server_cpus": None, "client_cpus": None}
    if not own_server:
        raise SystemExit(
            "--placement split needs the benchmark's own server; pin a server given with --url"
            " yourself (e.g. taskset -c 0 ...) and pass --placement shared"
        )
    if len(cpus) < 2:
        raise SystemExit("--placement split needs Linux and 2+ CPUs; use --placement shared")
    return {"mode": "split", "server_cpus": cpus[:1], "client_cpus": cpus[1:]}


def describe_placement(where: dict[str, Any]) -> str:
    if where["mode"] == "shared":
        return "shared (server and benchmark on any CPU)"
    return f"split (server on CPU {where['server_cpus']}, benchmark on CPUs {where['client_cpus']})"


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--url", help="benchmark this server instead of starting one")
    parser.add_argument("--sequential", type=int, default=600, help="sequential jobs per client")
    parser.add_argument("--warmup", type=int, default=20, help="warm-up jobs per client")
    parser.add_argument(
        "--jobs", type=int, default=256, help="jobs per client per level (at least)"
    )
    parser.add_argument(
        "--rounds", type=int, default=8, help="interleaved rounds per level (at least)"
    )
    parser.add_argument(
        "--levels",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 8, 32, 64],
        help="jobs in flight, comma separated",
    )
    parser.add_argument(
        "--placement",
        choices=("split", "shared"),
        default=None,
        help=(
            "split: the server on one CPU, the benchmark on the others (default with the"
            " benchmark's own server on Linux with 2+ CPUs); shared: no pinning (default"
            " with --url)"
        ),
    )
    parser.add_argument("--quick", action="store_true", help="small counts (a smoke run)")
    parser.add_argument("--json", dest="json_path", help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.sequential, args.warmup, args.jobs, args.rounds = 20, 3, 32, 1

    where = placement(args.placement, own_server=not args.url)
    server = None
    if not args.url:
        from comfykit.testing import ComfyUIServer

        # made (its CPUs checked) while this process may still use every CPU
        server = ComfyUIServer(test_nodes=False, checkpoint=False, cpus=where["server_cpus"])
    if where["client_cpus"] is not None:
        # before any thread starts, so that every thread of the benchmark inherits it
        os.sched_setaffinity(0, where["client_cpus"])
    imports = measure_import()
    if server is None:
        results = asyncio.run(bench(args.url.rstrip("/"), args))
    else:
        log(f"starting a ComfyUI server (placement: {describe_placement(where)})")
        with server:
            results = asyncio.run(bench(server.url, args))
    results["import"] = imports
    results["machine"] = machine()
    results["placement"] = where
    results["config"] = {
        "sequential": args.sequential,
        "warmup": args.warmup,
        "jobs_per_level_at_least": args.jobs,
        "rounds_at_least": args.rounds,
        "levels": args.levels,
        "graph": "EmptyImage 64x64 -> ImageInvert -> SaveImage (colour varies per job)",
    }
    print(f"\nMachine: {results['machine']}; placement: {describe_placement(where)}\n")
    print(table(results))
    if args.json_path:
        with open(args.json_path, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
