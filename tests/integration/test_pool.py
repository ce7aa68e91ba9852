"""AsyncComfyPool / ComfyPool against real ComfyUI processes: routing, uploads, the high-level
calls, health, and the fault tests (R1: a server killed and restarted under 50 jobs, R2: the
connections cut ten times under 100 jobs, R3: one of two servers killed mid-run).

Each fault test prints its figures and writes them to ``build/fault-figures/<test>.json``.
"""

from __future__ import annotations

import asyncio
import collections
import io
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from comfykit import (
    AsyncComfyClient,
    AsyncComfyPool,
    AsyncPoolJob,
    ComfyConnectionError,
    ComfyPool,
    JobLost,
    JobStatus,
    NoServerAvailable,
    ServerState,
)
from comfykit.testing import ComfyUIEnv, ComfyUIServer, TcpProxy
from tests import graphs
from tests.faults import Figures, Outcome, count_runs

#: The errors a job may end with when its server is lost (anything else is a failure).
TYPED = (JobLost, ComfyConnectionError, NoServerAvailable)


# -- servers ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def env(comfyui_server: ComfyUIServer | None) -> ComfyUIEnv:
    if comfyui_server is None:
        pytest.skip("needs the harness (these tests start, kill and restart their own servers)")
    return comfyui_server.env


def _start_all(servers: list[ComfyUIServer]) -> list[ComfyUIServer]:
    """Start servers from this thread: the harness has Linux stop a server when the thread
    that started it ends, so none is started from a short-lived thread."""
    for server in servers:
        server.start()
    return servers


@pytest.fixture(scope="module")
def second(env: ComfyUIEnv) -> Iterator[ComfyUIServer]:
    """A second server with the test nodes and no checkpoint."""
    with ComfyUIServer(env=env, checkpoint=False) as server:
        yield server


@pytest.fixture(scope="module")
def plain(env: ComfyUIEnv) -> Iterator[ComfyUIServer]:
    """A server without the test node pack (no TestSleep) and without a checkpoint."""
    with ComfyUIServer(env=env, test_nodes=False, checkpoint=False) as server:
        yield server


@pytest.fixture
def doomed(env: ComfyUIEnv) -> Iterator[list[ComfyUIServer]]:
    """Two servers of this test's own, which it may kill and restart."""
    servers = _start_all([ComfyUIServer(env=env, checkpoint=False) for _ in range(2)])
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()


def _png(color: tuple[int, int, int], size: tuple[int, int] = (16, 12)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


async def _until(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def _state(pool: AsyncComfyPool | ComfyPool, url: str) -> ServerState:
    return next(s.state for s in pool.servers if s.url == url)


# -- routing ----------------------------------------------------------------------------------


async def test_jobs_go_only_where_their_node_classes_and_models_are(
    comfyui_url: str, second: ComfyUIServer, plain: ComfyUIServer
) -> None:
    urls = [comfyui_url, second.url, plain.url]
    async with AsyncComfyPool(urls, probe_interval=0.5) as pool:
        sleeps = await asyncio.gather(*(pool.submit(graphs.sleep(0.1)) for _ in range(6)))
        assert {j.server for j in sleeps} == {comfyui_url, second.url}  # plain has no TestSleep
        inverts = await asyncio.gather(*(pool.submit(graphs.invert()) for _ in range(6)))
        assert collections.Counter(j.server for j in inverts)[plain.url] >= 1
        t2i = await pool.submit(graphs.txt2img())  # only the session server has the checkpoint
        assert t2i.server == comfyui_url
        for job in [*sleeps, *inverts, t2i]:
            await job.result(timeout=120)
        with pytest.raises(NoServerAvailable) as info:
            await pool.submit({"1": {"class_type": "NoSuchNode", "inputs": {}}})
        assert set(info.value.reasons) == set(urls)
        assert all("node class 'NoSuchNode'" in r[0] for r in info.value.reasons.values())
        graph = graphs.txt2img()
        graph["1"]["inputs"]["ckpt_name"] = "absent.safetensors"
        with pytest.raises(NoServerAvailable, match="model 'absent.safetensors'"):
            await pool.submit(graph)


async def test_least_loaded_takes_the_job_and_ties_go_round_robin(
    comfyui_url: str, second: ComfyUIServer
) -> None:
    async with AsyncComfyPool([comfyui_url, second.url], probe_interval=0.2) as pool:
        jobs = await asyncio.gather(*(pool.submit(graphs.sleep(0.2)) for _ in range(12)))
        assert collections.Counter(j.server for j in jobs) == {comfyui_url: 6, second.url: 6}
        assert sum(s.in_flight for s in pool.servers) == 12
        await asyncio.gather(*(j.result(timeout=120) for j in jobs))
        await _until(lambda: sum(s.in_flight for s in pool.servers) == 0, 10, "jobs to finish")
        # Somebody else's jobs on the second server count as its load (from the probe).
        async with AsyncComfyClient(second.url) as other:
            theirs = [await other.submit(graphs.sleep(1.0)) for _ in range(3)]
            await _until(
                lambda: next(s.queue for s in pool.servers if s.url == second.url) == 3,
                10,
                "the probe to see the other client's jobs",
            )
            ours = [await pool.submit(graphs.sleep(0.1)) for _ in range(3)]
            assert [j.server for j in ours] == [comfyui_url] * 3
            for mine in ours:
                await mine.result(timeout=120)
            for job in theirs:
                await job.result(timeout=120)


async def test_uploads_follow_the_job_to_the_server_that_runs_it(
    comfyui_server: ComfyUIServer, second: ComfyUIServer
) -> None:
    async with AsyncComfyPool([comfyui_server.url, second.url]) as pool:
        color = (200, 40, 10)
        uploaded = await pool.upload_image(_png(color), filename=f"pool-{random.random()}.png")
        jobs = await asyncio.gather(
            *(pool.submit(graphs.load_invert(uploaded.ref)) for _ in range(4))
        )
        assert {j.server for j in jobs} == {comfyui_server.url, second.url}
        for job in jobs:
            result = await job.result(timeout=120)
            image = await result.images[0].to_pil()
            graphs.assert_rgb_close(image.convert("RGB").getpixel((0, 0)), (55, 215, 245))
        for server in (comfyui_server, second):
            assert (server.input_dir / uploaded.filename).is_file(), server
        mask = await pool.upload_mask(_png((0, 0, 0)), original_ref=uploaded.ref)
        masked = await asyncio.gather(
            *(pool.submit(graphs.load_invert(mask.ref)) for _ in range(2))
        )
        assert {j.server for j in masked} == {comfyui_server.url, second.url}
        for job in masked:
            assert (await job.result(timeout=120)).images


async def test_high_level_calls_on_a_pool(
    comfyui_server: ComfyUIServer, plain: ComfyUIServer
) -> None:
    # The plain server has no checkpoint: generate() resolves and runs on the other one, and
    # an image uploaded for img2img follows the job there.
    async with AsyncComfyPool([plain.url, comfyui_server.url]) as pool:
        result = await pool.generate("a lighthouse", steps=1, width=64, height=64, timeout=300)
        assert len(result.images) == 1 and result.metadata["kind"] == "txt2img"
        image = Image.new("RGB", (64, 64), (10, 120, 200))
        i2i = await pool.img2img("a boat", image, steps=1, timeout=300)
        assert len(i2i.images) == 1 and i2i.metadata["kind"] == "img2img"
        loaded = [
            node["inputs"]["image"]
            for node in i2i.metadata["workflow"].values()
            if node["class_type"] == "LoadImage"
        ]
        assert len(loaded) == 1 and (comfyui_server.input_dir / loaded[0]).is_file()
        up = await pool.upscale(_png((1, 2, 3), (8, 6)), scale_by=2, timeout=120)
        assert up.images[0].size == (16, 12)
        batch = await pool.generate_batch("a cat", seeds=[1, 2], steps=1, width=64, height=64)
        assert [item.ok for item in batch] == [True, True], [item.error for item in batch]


def test_sync_pool_in_threads(comfyui_url: str, second: ComfyUIServer) -> None:
    with ComfyPool([comfyui_url, second.url]) as pool:
        results: list[Any] = []

        def run() -> None:
            results.append(pool.run(graphs.sleep(0.1), timeout=120).text["3"])

        threads = [threading.Thread(target=run) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert len(results) == 6
        jobs = [pool.submit(graphs.sleep(0.1)) for _ in range(4)]
        assert {j.server for j in jobs} == {comfyui_url, second.url}
        for job in jobs:
            assert job.result(timeout=120).text["3"]


async def test_sync_pool_inside_a_running_event_loop(
    comfyui_url: str, second: ComfyUIServer
) -> None:
    asyncio.get_running_loop()  # as in a notebook cell
    with ComfyPool([comfyui_url, second.url]) as pool:
        result = pool.run(graphs.text("pool", str(random.random())), timeout=60)
        assert result.text["2"][0].startswith("pool-")
        assert all(s.state is ServerState.UP for s in pool.servers)


def test_a_sync_pool_nobody_closed_stops_probing_once_collected(comfyui_url: str) -> None:
    import gc

    pool = ComfyPool([comfyui_url], probe_interval=0.1)
    pool.run(graphs.text("dropped", str(random.random())), timeout=60)
    watchers = [m.watcher for m in pool._members]
    assert all(w is not None and w.alive for w in watchers)
    del pool
    gc.collect()
    deadline = time.monotonic() + 10
    while any(w is not None and w.alive for w in watchers):
        assert time.monotonic() < deadline, "the probe threads of a dropped pool kept running"
        time.sleep(0.05)


# -- health -----------------------------------------------------------------------------------


async def test_a_killed_server_is_taken_out_and_readmitted_once_it_answers(
    doomed: list[ComfyUIServer],
) -> None:
    one, two = doomed
    async with AsyncComfyPool([one.url, two.url], probe_interval=0.3) as pool:
        assert [s.state for s in pool.servers] == [ServerState.UP, ServerState.UP]
        one.kill()
        await _until(lambda: _state(pool, one.url) is ServerState.DOWN, 10, "the probe")
        status = next(s for s in pool.servers if s.url == one.url)
        assert status.last_error and "ComfyConnectionError" in status.last_error
        jobs = [await pool.submit(graphs.sleep(0.1)) for _ in range(4)]
        assert {j.server for j in jobs} == {two.url}
        await asyncio.to_thread(one.start)  # the loop's executor thread outlives the test's use
        await _until(lambda: _state(pool, one.url) is ServerState.UP, 30, "re-admission")
        more = await asyncio.gather(*(pool.submit(graphs.sleep(0.1)) for _ in range(4)))
        assert one.url in {j.server for j in more}
        for job in [*jobs, *more]:
            await job.result(timeout=120)


async def test_a_job_that_ran_unseen_before_a_restart_is_not_run_again(
    doomed: list[ComfyUIServer],
) -> None:
    """The pool loses sight of its server (the proxy stalls) while a job finishes there; the
    server is then killed and restarted with an empty history. The finished job's output file
    says it ran: it ends with JobLost naming the file, and is not run again. A job that was
    still queued there has no such file: it is resubmitted and completes."""
    server = doomed[0]
    with TcpProxy(server.url) as proxy:
        async with AsyncComfyPool(
            [proxy.url], probe_interval=0.3, probe_timeout=1, failover_after=None
        ) as pool:
            ran_prefix, queued_prefix = graphs.unique("unseen"), graphs.unique("queued")
            ran = await pool.submit(graphs.sleep_save(1.5, ran_prefix))
            queued = await pool.submit(graphs.sleep_save(0.1, queued_prefix))
            await _until(lambda: ran.status is JobStatus.RUNNING, 30, "the first job to run")
            proxy.stall(120)
            folder, _, name = ran_prefix.rpartition("/")
            await _until(
                lambda: any((server.output_dir / folder).glob(f"{name}_*")), 30, "its file"
            )
            server.kill()  # before the queued one could start (it waits behind 1.5 s)
            await asyncio.to_thread(server.start)
            proxy.cut()
            proxy.resume()
            with pytest.raises(JobLost, match="it ran there"):
                await ran.result(timeout=120)
            assert (await queued.result(timeout=120)).images
            assert ran.servers == [proxy.url] and queued.servers == [proxy.url, proxy.url]
    runs = count_runs({"ran": ran_prefix, "queued": queued_prefix}, [server.output_dir])
    assert runs == {"ran": 1, "queued": 1}


async def test_a_pool_of_one_waits_out_a_long_restart(doomed: list[ComfyUIServer]) -> None:
    """The only server is killed and comes back only after its clients' sockets gave up
    reconnecting (~16 s): once it answers, its jobs (forgotten, no output file) are resubmitted
    there, and all complete."""
    server = doomed[0]
    async with AsyncComfyPool([server.url], probe_interval=0.3, failover_after=120) as pool:
        jobs = [await pool.submit(graphs.sleep_save(1.0)) for _ in range(3)]
        await _until(lambda: jobs[0].status is JobStatus.RUNNING, 30, "the first job to run")
        server.kill()
        await asyncio.sleep(20)
        assert _state(pool, server.url) is ServerState.DOWN
        await asyncio.to_thread(server.start)
        for job in jobs:
            assert (await job.result(timeout=120)).images
            assert job.servers == [server.url, server.url]


async def test_a_stalled_server_keeps_its_jobs(doomed: list[ComfyUIServer]) -> None:
    """A server that stops answering for a while (shorter than failover_after) is taken out;
    when it answers again its jobs are followed there, not run elsewhere."""
    one, two = doomed
    with TcpProxy(one.url) as proxy:
        async with AsyncComfyPool(
            [proxy.url, two.url], probe_interval=0.3, probe_timeout=1, failover_after=60
        ) as pool:
            jobs = await asyncio.gather(*(pool.submit(graphs.sleep_save(0.3)) for _ in range(6)))
            assert {j.server for j in jobs} == {proxy.url, two.url}
            proxy.stall(4)
            await _until(lambda: _state(pool, proxy.url) is ServerState.DOWN, 10, "down")
            await _until(lambda: _state(pool, proxy.url) is ServerState.UP, 30, "back up")
            for job in jobs:
                await job.result(timeout=120)
            assert all(len(j.servers) == 1 for j in jobs)


# -- fault tests ------------------------------------------------------------------------------


async def _outcome(job: Any, timeout: float, started: float) -> Outcome:
    """Wait for one job (bounded: a job that outlives its timeout by far is counted hung)."""
    out = Outcome(job.prompt_id)
    try:
        await asyncio.wait_for(job.result(timeout=timeout), timeout + 30)
        out.ended = "completed"
    except asyncio.TimeoutError:
        out.ended = None  # hung
    except Exception as exc:  # noqa: BLE001 - every outcome is counted, the test judges them
        out.ended = type(exc).__name__
        out.error = str(exc)
        assert isinstance(exc, TYPED), repr(exc)
    out.seconds = time.monotonic() - started
    out.servers = list(getattr(job, "servers", []))
    return out


async def test_r3_one_of_two_pooled_servers_killed_mid_run(doomed: list[ComfyUIServer]) -> None:
    """R3: 24 jobs over two servers; once five have finished, one server is SIGKILLed (and
    stays dead). Every job completes, the lost ones on the other server; none runs twice
    (counted from the output files in both servers' folders)."""
    one, two = doomed
    async with AsyncComfyPool([one.url, two.url], probe_interval=0.3, failover_after=3) as pool:
        prefixes = {}
        jobs: list[AsyncPoolJob] = []
        for _ in range(24):
            prefix = graphs.unique("r3")
            job = await pool.submit(graphs.sleep_save(0.4, prefix))
            prefixes[job.prompt_id] = prefix
            jobs.append(job)
        started = time.monotonic()
        await _until(lambda: sum(j.status is JobStatus.SUCCEEDED for j in jobs) >= 5, 60, "5 done")
        one.kill()
        on_one = [j for j in jobs if j.server == one.url and not j.done]
        outcomes = await asyncio.gather(*(_outcome(j, 120, started) for j in jobs))
    runs = count_runs(prefixes, [one.output_dir, two.output_dir])
    async with AsyncComfyClient(two.url) as check:
        history = await check.history()
    figures = Figures(
        "r3_pool_one_of_two_killed",
        list(outcomes),
        runs,
        notes={
            "servers": 2,
            "unfinished_on_killed_server": len(on_one),
            "moved_to_survivor": sum(1 for j in jobs if j.servers == [one.url, two.url]),
            "survivor_history_entries_of_these_jobs": sum(
                1 for j in jobs if j.prompt_id in history
            ),
        },
    )
    data = figures.record()
    assert data["completed"] == 24 and data["hung"] == 0 and data["duplicated"] == 0
    moved = [j for j in jobs if len(j.servers) > 1]
    assert moved and all(j.servers == [one.url, two.url] for j in moved)
    assert all(runs[j.prompt_id] == 1 for j in jobs)


def test_sync_pool_moves_the_jobs_of_a_killed_server(doomed: list[ComfyUIServer]) -> None:
    """The blocking pool (generated from the async one) fails over too: 12 jobs over two
    servers, one killed once three have finished; all complete, each ran once."""
    one, two = doomed
    with ComfyPool([one.url, two.url], probe_interval=0.3, failover_after=2) as pool:
        prefixes = {}
        jobs = []
        for _ in range(12):
            prefix = graphs.unique("sync-r3")
            job = pool.submit(graphs.sleep_save(0.4, prefix))
            prefixes[job.prompt_id] = prefix
            jobs.append(job)
        deadline = time.monotonic() + 60
        while sum(j.status is JobStatus.SUCCEEDED for j in jobs) < 3:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        one.kill()
        for job in jobs:
            assert job.result(timeout=120)
    runs = count_runs(prefixes, [one.output_dir, two.output_dir])
    assert all(n == 1 for n in runs.values()), runs
    assert any(j.servers == [one.url, two.url] for j in jobs)


async def test_r1_pool_server_killed_and_restarted_under_50_jobs(
    doomed: list[ComfyUIServer],
) -> None:
    """R1 (pool): 50 jobs over two servers; after ten have finished one server is SIGKILLed
    and restarted (empty history). Every job ends completed or with a typed error within its
    timeout; none hangs; no completed result is lost; none runs twice."""
    one, two = doomed
    async with AsyncComfyPool([one.url, two.url], probe_interval=0.3, failover_after=30) as pool:
        prefixes = {}
        jobs: list[AsyncPoolJob] = []
        for _ in range(50):
            prefix = graphs.unique("r1p")
            job = await pool.submit(graphs.sleep_save(0.2, prefix))
            prefixes[job.prompt_id] = prefix
            jobs.append(job)
        started = time.monotonic()
        await _until(lambda: sum(j.status is JobStatus.SUCCEEDED for j in jobs) >= 10, 60, "10")
        one.kill()
        restart = asyncio.create_task(asyncio.to_thread(one.start))
        outcomes = await asyncio.gather(*(_outcome(j, 120, started) for j in jobs))
        await restart
    runs = count_runs(prefixes, [one.output_dir, two.output_dir])
    data = Figures("r1_pool_killed_and_restarted", list(outcomes), runs, {"servers": 2}).record()
    assert data["hung"] == 0 and data["completed_results_lost"] == 0 and data["duplicated"] == 0
    assert data["completed"] + sum(data["failed"].values()) == 50


async def test_r1_single_client_server_killed_and_restarted_under_50_jobs(
    env: ComfyUIEnv,
) -> None:
    """R1 (one client): 50 jobs on one server, SIGKILLed and restarted after ten finished.
    Jobs the restarted server forgot end with JobLost (or ComfyConnectionError while it was
    away); none hangs, and no job that ran to the end loses its result."""
    with ComfyUIServer(env=env, checkpoint=False) as server:
        async with AsyncComfyClient(server.url) as comfy:
            prefixes = {}
            jobs = []
            for _ in range(50):
                prefix = graphs.unique("r1c")
                job = await comfy.submit(graphs.sleep_save(0.2, prefix))
                prefixes[job.prompt_id] = prefix
                jobs.append(job)
            started = time.monotonic()
            await _until(lambda: sum(j.status is JobStatus.SUCCEEDED for j in jobs) >= 10, 60, "10")
            server.kill()
            restart = asyncio.create_task(asyncio.to_thread(server.start))
            outcomes = await asyncio.gather(*(_outcome(j, 120, started) for j in jobs))
            await restart
        runs = count_runs(prefixes, [server.output_dir])
    data = Figures("r1_single_client_killed_and_restarted", list(outcomes), runs).record()
    assert data["hung"] == 0 and data["completed_results_lost"] == 0 and data["duplicated"] == 0


async def _cut_during(proxy: TcpProxy, jobs: list[Any], cuts: int, every: float) -> int:
    done = 0
    while done < cuts and not all(j.done for j in jobs):
        await asyncio.sleep(every)
        proxy.cut()
        done += 1
    return done


async def test_r2_connections_cut_ten_times_during_100_jobs(
    comfyui_server: ComfyUIServer,
) -> None:
    """R2 (one client): the client talks to ComfyUI through a proxy that resets every
    connection (the WebSocket and the HTTP ones) ten times during 100 jobs: 100 results."""
    with TcpProxy(comfyui_server.url) as proxy:
        async with AsyncComfyClient(proxy.url) as comfy:
            prefixes = {}
            jobs = []
            for _ in range(100):
                prefix = graphs.unique("r2c")
                job = await comfy.submit(graphs.sleep_save(0.1, prefix))
                prefixes[job.prompt_id] = prefix
                jobs.append(job)
            started = time.monotonic()
            cutter = asyncio.create_task(_cut_during(proxy, jobs, 10, 1.0))
            outcomes = await asyncio.gather(*(_outcome(j, 180, started) for j in jobs))
            cuts = await cutter
            reconnects = comfy._shared.stream.connects - 1
    runs = count_runs(prefixes, [comfyui_server.output_dir])
    notes = {"cuts": cuts, "websocket_reconnects": reconnects}
    data = Figures("r2_single_client_ws_cut", list(outcomes), runs, notes).record()
    assert cuts == 10 and data["completed"] == 100 and data["duplicated"] == 0


async def test_r2_pool_connections_cut_ten_times_during_100_jobs(
    comfyui_server: ComfyUIServer, second: ComfyUIServer
) -> None:
    """R2 (pool): one of two servers is behind the cutting proxy; 100 jobs, ten cuts: 100
    results, none run twice (a cut may take the server out for a moment: its jobs are
    followed there again, not resubmitted)."""
    with TcpProxy(comfyui_server.url) as proxy:
        async with AsyncComfyPool([proxy.url, second.url], probe_interval=0.3) as pool:
            prefixes = {}
            jobs: list[AsyncPoolJob] = []
            for _ in range(100):
                prefix = graphs.unique("r2p")
                job = await pool.submit(graphs.sleep_save(0.1, prefix))
                prefixes[job.prompt_id] = prefix
                jobs.append(job)
            started = time.monotonic()
            cutter = asyncio.create_task(_cut_during(proxy, jobs, 10, 0.5))
            outcomes = await asyncio.gather(*(_outcome(j, 180, started) for j in jobs))
            cuts = await cutter
            reconnects = pool.clients[0]._shared.stream.connects - 1
    runs = count_runs(prefixes, [comfyui_server.output_dir, second.output_dir])
    notes = {"cuts": cuts, "servers": 2, "websocket_reconnects": reconnects}
    data = Figures("r2_pool_ws_cut", list(outcomes), runs, notes).record()
    assert cuts == 10 and data["completed"] == 100 and data["duplicated"] == 0
