"""Benchmark AsyncComfyPool: jobs/s with K = 1, 2, 3, 4 ComfyUI servers behind one pool.

Each server is its own ComfyUI process (``comfykit.testing.ComfyUIServer``, the test node pack,
no checkpoint). Every job is ``StubInt -> TestSleep(seconds) -> PreviewAny`` with a new value,
so the server's cache never answers it: ``TestSleep`` sleeps (it does not burn CPU), so one
server runs about ``1 / seconds`` jobs per second whatever the machine, and a pool of K
servers can run K times as many only if it spreads the jobs evenly and dispatches them
without getting in the way. That is what this measures: the pool's routing and dispatch, not
ComfyUI.

A round submits ``jobs_per_server * K`` jobs at once (all in flight) and awaits every result.
The rounds run in cycles: each cycle runs one round of every K, in an order that rotates from
cycle to cycle, so that the machine's drift (other processes on the same cores) falls on every
K alike. The ratio of a cycle is jobs/s(K) / (K x jobs/s(1)) of that cycle; the verdict uses the
median over the cycles (target: at least 0.9). A diagnostic runs the same rounds without the
pool (one plain client per server, the jobs dealt out in turn): what the machine itself allows
for K servers.

    .venv/bin/python bench/bench_pool.py                 # K = 1..4, 6 cycles, 20 jobs/server
    .venv/bin/python bench/bench_pool.py --quick         # a smoke run
    .venv/bin/python bench/bench_pool.py --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from comfykit import AsyncComfyClient, AsyncComfyPool
from comfykit._async.jobs import AsyncJobHandle

TARGET = 0.9

Submit = Callable[[int, dict[str, Any]], Awaitable[AsyncJobHandle]]


def sleep_graph(seconds: float) -> dict[str, Any]:
    """StubInt -> TestSleep -> PreviewAny with a fresh value (never served from the cache)."""
    value = uuid.uuid4().int % 10**9
    return {
        "1": {"class_type": "StubInt", "inputs": {"value": value}},
        "2": {"class_type": "TestSleep", "inputs": {"value": ["1", 0], "seconds": seconds}},
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}},
    }


async def one_round(submit: Submit, jobs: int, seconds: float) -> dict[str, Any]:
    """Submit ``jobs`` at once and await every result: jobs/s, the servers' own execution time
    per job (from their events) and the benchmark's CPU time per job."""
    cpu = time.process_time()
    started = time.perf_counter()
    submitted = await asyncio.gather(*(submit(n, sleep_graph(seconds)) for n in range(jobs)))
    await asyncio.gather(*(job.result(timeout=600) for job in submitted))
    elapsed = time.perf_counter() - started
    executed = [job.execution_ms for job in submitted if job.execution_ms is not None]
    return {
        "jobs_per_s": jobs / elapsed,
        "execution_ms": statistics.median(executed) if executed else float("nan"),
        "cpu_ms_per_job": 1000 * (time.process_time() - cpu) / jobs,
        "spread": sorted(
            collections.Counter(getattr(job, "server", "?") for job in submitted).values()
        ),
    }


async def measure(
    urls: list[str], *, jobs_per_server: int, seconds: float, cycles: int
) -> list[dict[str, Any]]:
    """Every K's pool and plain clients, measured in interleaved cycles."""
    ks = list(range(1, len(urls) + 1))
    async with contextlib.AsyncExitStack() as stack:
        pools = {k: await stack.enter_async_context(AsyncComfyPool(urls[:k])) for k in ks}
        plain = [await stack.enter_async_context(AsyncComfyClient(url)) for url in urls]

        def by_pool(k: int) -> Submit:
            return lambda _n, graph: pools[k].submit(graph)

        def by_hand(k: int) -> Submit:
            return lambda n, graph: plain[n % k].submit(graph)

        for k in ks:  # warm-up: catalogs, sockets, connection pools
            await one_round(by_pool(k), 2 * k, seconds)
            await one_round(by_hand(k), 2 * k, seconds)
        runs: dict[int, list[dict[str, Any]]] = {k: [] for k in ks}
        hand: dict[int, list[dict[str, Any]]] = {k: [] for k in ks}
        for cycle in range(cycles):
            order = ks[cycle % len(ks) :] + ks[: cycle % len(ks)]
            for k in order:
                jobs = jobs_per_server * k
                pair = [(runs, by_pool(k)), (hand, by_hand(k))]
                for sink, submit in pair if cycle % 2 == 0 else pair[::-1]:
                    sink[k].append(await one_round(submit, jobs, seconds))
            print(f"cycle {cycle + 1}/{cycles} done", file=sys.stderr)
    results = []
    for k in ks:
        ratios = [
            run["jobs_per_s"] / (k * base["jobs_per_s"])
            for run, base in zip(runs[k], runs[1], strict=True)
        ]
        results.append(
            {
                "servers": k,
                "jobs_per_round": jobs_per_server * k,
                "cycles": cycles,
                "jobs_per_s": statistics.median(r["jobs_per_s"] for r in runs[k]),
                "jobs_per_s_rounds": [round(r["jobs_per_s"], 2) for r in runs[k]],
                "ratio": statistics.median(ratios),
                "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
                "jobs_per_server": [r["spread"] for r in runs[k]],
                "server_execution_ms": statistics.median(r["execution_ms"] for r in runs[k]),
                "client_cpu_ms_per_job": statistics.median(r["cpu_ms_per_job"] for r in runs[k]),
                "by_hand_jobs_per_s": statistics.median(r["jobs_per_s"] for r in hand[k]),
            }
        )
    return results


def table(results: list[dict[str, Any]], seconds: float) -> str:
    lines = [
        "| servers (K) | jobs per round | pool jobs/s (median) | ratio to K x one server "
        "(median of cycles, range) | target | result | jobs per server (each round) "
        "| K plain clients, jobs dealt by hand (jobs/s) | pool / by hand "
        "| server's execution per job (ms) | benchmark CPU per job (ms) | ideal (K / seconds) |",
        "|---:|---:|---:|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in results:
        k = row["servers"]
        verdict = "PASS" if row["ratio"] >= TARGET else "FAIL"
        low, high = row["ratio_range"]
        spreads = {"/".join(str(n) for n in s) for s in row["jobs_per_server"]}
        lines.append(
            f"| {k} | {row['jobs_per_round']} | {row['jobs_per_s']:.2f} "
            f"| {row['ratio']:.3f} ({low:.2f}–{high:.2f}) | >= {TARGET} | {verdict} "
            f"| {', '.join(sorted(spreads))} | {row['by_hand_jobs_per_s']:.2f} "
            f"| {row['jobs_per_s'] / row['by_hand_jobs_per_s']:.3f} "
            f"| {row['server_execution_ms']:.0f} | {row['client_cpu_ms_per_job']:.2f} "
            f"| {k / seconds:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--max-servers", type=int, default=4, help="K goes 1..this")
    parser.add_argument("--jobs-per-server", type=int, default=20, help="jobs per server per round")
    parser.add_argument("--seconds", type=float, default=0.2, help="TestSleep per job")
    parser.add_argument("--cycles", type=int, default=6, help="timed cycles (a round of each K)")
    parser.add_argument("--quick", action="store_true", help="K = 1, 2 with small counts")
    parser.add_argument("--json", dest="json_path", help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.max_servers, args.jobs_per_server, args.cycles = 2, 5, 1

    from comfykit.testing import ComfyUIServer

    servers = [ComfyUIServer(checkpoint=False) for _ in range(args.max_servers)]
    try:
        for server in servers:  # from this thread: a server stops when its starter thread ends
            server.start()
        results = asyncio.run(
            measure(
                [s.url for s in servers],
                jobs_per_server=args.jobs_per_server,
                seconds=args.seconds,
                cycles=args.cycles,
            )
        )
    finally:
        for server in servers:
            server.stop()
    print(
        f"Python {platform.python_version()}, {platform.machine()}, TestSleep {args.seconds} s "
        f"per job, {args.jobs_per_server} jobs per server per round, {args.cycles} cycles\n"
    )
    print(table(results, args.seconds))
    if args.json_path:
        with open(args.json_path, "w") as fh:
            json.dump({"seconds": args.seconds, "target": TARGET, "results": results}, fh, indent=2)
    return 0 if all(row["ratio"] >= TARGET for row in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
