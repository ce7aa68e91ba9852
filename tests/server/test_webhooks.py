"""Webhooks end to end: the service on the real ComfyUI, on SQLite and PostgreSQL, POSTing to a
real HTTP receiver on loopback that verifies every request with the shared secret and answers
as each job's URL tells it to (errors, a stall longer than the timeout, a redirect)."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import http.server
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from standardwebhooks import Webhook, WebhookVerificationError

from comfykit.server import Settings, create_app, create_router
from comfykit.server.errors import ServiceError
from comfykit.server.store import DeliveryRow, JobRow, Store, utcnow
from comfykit.server.webhooks import check_webhook_url
from tests import graphs
from tests.server.conftest import make_settings, wait_for_job
from tests.server.test_api import assert_envelope

SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()
TINY = {"width": 64, "height": 64, "steps": 1}
#: Longest a stalled or held answer waits (the receiver's threads always end).
_HOLD_LIMIT = 20.0


@dataclass
class Received:
    """One request the receiver got: its message id (``None`` when it failed verification),
    the verified payload and what it answered (0: nothing, it stalled)."""

    msg_id: str | None
    payload: Any
    answer: int
    headers: dict[str, str]


class Receiver:
    """A webhook endpoint on 127.0.0.1 (``http.server`` in a thread). Each request is verified
    with ``standardwebhooks``; the answer to attempt n of a message is the n-th word of the
    URL's ``script`` query (the last one repeats): ``ok`` (200), ``error`` (500), ``stall``
    (no answer at all; the connection is held longer than the service's timeout), ``redirect``
    (302 to ``/target``), ``hold`` (200 once :meth:`release` is called). ``force`` overrides
    every script. Requests are recorded as they arrive."""

    def __init__(self, secret: str) -> None:
        self.webhook = Webhook(secret)
        self.lock = threading.Lock()
        self.received: list[Received] = []
        self.redirect_hits = 0
        self.failures: list[str] = []
        self.force: str | None = None
        self.stall_seconds = 3.0
        self._release = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                receiver.handle(self)

            def do_GET(self) -> None:  # noqa: N802
                receiver.handle(self)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = False
        self.server.block_on_close = True  # server_close() joins every handler thread
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def url(self, script: str = "ok", path: str = "/hook", host: str = "127.0.0.1") -> str:
        """A webhook URL answered by ``script`` (comma-separated words)."""
        return f"http://{host}:{self.port}{path}?script={script}"

    def release(self) -> None:
        """End every held or stalled answer."""
        self._release.set()

    def handle(self, request: http.server.BaseHTTPRequestHandler) -> None:
        parts = urlsplit(request.path)
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        if parts.path == "/target":
            with self.lock:
                self.redirect_hits += 1
            self._answer(request, 200)
            return
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            payload = self.webhook.verify(body, headers)
        except WebhookVerificationError as exc:
            with self.lock:
                self.failures.append(str(exc))
                self.received.append(Received(None, None, 400, headers))
            self._answer(request, 400)
            return
        msg_id = headers["webhook-id"]
        script = parse_qs(parts.query).get("script", ["ok"])[0].split(",")
        with self.lock:
            attempt = sum(1 for r in self.received if r.msg_id == msg_id)
            word = self.force or script[min(attempt, len(script) - 1)]
            answer = {"ok": 200, "hold": 200, "stall": 0, "error": 500, "redirect": 302}[word]
            self.received.append(Received(msg_id, payload, answer, headers))
        if word == "stall":
            self._release.wait(self.stall_seconds)
            return  # no answer: the connection closes
        if word == "hold":
            self._release.wait(_HOLD_LIMIT)
        extra = {"Location": f"http://127.0.0.1:{self.port}/target"} if answer == 302 else {}
        self._answer(request, answer, extra)

    @staticmethod
    def _answer(
        request: http.server.BaseHTTPRequestHandler,
        status: int,
        headers: dict[str, str] | None = None,
    ) -> None:
        try:
            request.send_response(status)
            for name, value in (headers or {}).items():
                request.send_header(name, value)
            request.send_header("Content-Length", "0")
            request.end_headers()
        except OSError:
            pass  # the service gave up on this attempt (a stall) and closed the connection

    def successes(self, msg_id: str) -> list[Received]:
        """The verified requests of a message answered with a 2xx."""
        with self.lock:
            return [r for r in self.received if r.msg_id == msg_id and 200 <= r.answer < 300]

    def attempts(self, msg_id: str) -> list[int]:
        """What the receiver answered to each attempt of a message."""
        with self.lock:
            return [r.answer for r in self.received if r.msg_id == msg_id]

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def receiver() -> Any:
    with Receiver(SECRET) as r:
        yield r


def hook_settings(tmp_path: Path, comfyui_url: str, store_url: str, **overrides: Any) -> Settings:
    """Settings with a secret, loopback targets allowed and a tiny backoff."""
    values: dict[str, Any] = {
        "database_url": store_url,
        "webhook_secret": SECRET,
        "webhook_allow_private": True,
        "webhook_backoff_seconds": 0.05,
        "webhook_timeout_seconds": 0.5,
    }
    values.update(overrides)
    return make_settings(tmp_path, comfyui_url, **values)


@asynccontextmanager
async def service(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The standalone app with its lifespan running, and a client on it."""
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=60) as http:
            yield http


def settled(job: dict[str, Any]) -> bool:
    """The job has ended and each of its webhook messages is delivered or failed."""
    hooks = job["webhooks"]
    return bool(hooks) and all(h["status"] != "pending" for h in hooks)


async def wait_settled(
    http: httpx.AsyncClient,
    job_id: str,
    predicate: Callable[[dict[str, Any]], bool] = settled,
    prefix: str = "",
) -> dict[str, Any]:
    return await wait_for_job(http, job_id, predicate, timeout=120, prefix=prefix)


def assert_delivered_once(receiver: Receiver, job: dict[str, Any], event: str) -> dict[str, Any]:
    """One message for the job, delivered, seen exactly once as a success by the receiver,
    verified, carrying the job as GET returns it; the message's payload."""
    assert receiver.failures == [], receiver.failures
    (hook,) = job["webhooks"]
    assert hook["status"] == "delivered", hook
    assert hook["type"] == event and hook["id"].startswith("msg_"), hook
    assert hook["url"] == job["webhook_url"]
    assert hook["delivered_at"] is not None and hook["next_attempt_at"] is None
    assert hook["attempts"] == len(hook["attempts_log"]) == len(receiver.attempts(hook["id"]))
    (success,) = receiver.successes(hook["id"])
    payload = success.payload
    assert payload["type"] == event
    assert dt.datetime.fromisoformat(payload["timestamp"].replace("Z", "+00:00")).tzinfo
    assert payload["data"] == {k: v for k, v in job.items() if k != "webhooks"}
    assert success.headers["content-type"] == "application/json"
    assert success.headers["user-agent"].startswith("comfykit/")
    return dict(payload)


async def test_events_are_signed_retried_and_seen_once(
    tmp_path: Path, comfyui_url: str, store_url: str, receiver: Receiver
) -> None:
    """A completed, a failed and two batch jobs; the receiver answers 500 twice to each
    message: three attempts each, one success each, every request verified."""
    url = receiver.url("error,error,ok")
    async with service(hook_settings(tmp_path, comfyui_url, store_url)) as http:
        done = (
            await http.post("/api/v1/jobs", json={"workflow": graphs.invert(), "webhook_url": url})
        ).json()
        assert done["webhook_url"] == url and done["webhooks"] == []
        failed = (
            await http.post(
                "/api/v1/jobs", json={"workflow": graphs.sync_error(), "webhook_url": url}
            )
        ).json()
        batch = await http.post(
            "/api/v1/generate/batch",
            json={"request": {"prompt": "a cat", **TINY}, "seeds": [1, 2], "webhook_url": url},
        )
        assert batch.status_code == 201, batch.text
        batch_ids = [j["job_id"] for j in batch.json()["jobs"]]
        jobs = {i: await wait_settled(http, i) for i in [done["job_id"], *batch_ids]}
        jobs[failed["job_id"]] = await wait_settled(http, failed["job_id"])

        for job_id, job in jobs.items():
            event = "job.failed" if job_id == failed["job_id"] else "job.completed"
            payload = assert_delivered_once(receiver, job, event)
            hook = job["webhooks"][0]
            assert receiver.attempts(hook["id"]) == [500, 500, 200]
            assert hook["attempts"] == 3
            assert [a.get("status_code") for a in hook["attempts_log"]] == [500, 500, 200]
            assert all(a["duration_ms"] >= 0 and a["at"] for a in hook["attempts_log"])
            if job_id == failed["job_id"]:
                assert payload["data"]["error"]["code"] == "EXECUTION_ERROR"
            else:
                assert payload["data"]["image_url"] == f"/api/v1/generate/{job_id}/image"
        # the batch's webhook applies to each of its jobs; nothing else was sent
        assert all(jobs[i]["webhook_url"] == url for i in batch_ids)
        assert len({r.msg_id for r in receiver.received}) == 4
        assert "webhook_url" not in jobs[batch_ids[0]]["metadata"]["request"]
        metrics = (await http.get("/metrics")).text
        assert 'comfykit_webhook_deliveries_total{outcome="delivered"} 4.0' in metrics
        assert 'comfykit_webhook_deliveries_total{outcome="retry"} 8.0' in metrics
        assert 'comfykit_webhook_deliveries_total{outcome="failed"} 0.0' in metrics
        # a job without a webhook has none
        plain = (await http.post("/api/v1/jobs", json={"workflow": graphs.text("a", "b")})).json()
        plain = await wait_for_job(http, plain["job_id"])
        assert plain["webhook_url"] is None and plain["webhooks"] == []


async def test_cancelled_jobs_queued_and_running(
    tmp_path: Path, comfyui_url: str, store_url: str, receiver: Receiver
) -> None:
    """A job cancelled in the service's queue and one cancelled while running: one
    ``job.cancelled`` each."""
    url = receiver.url("error,ok")
    settings = hook_settings(tmp_path, comfyui_url, store_url, dispatch_concurrency=1)
    async with service(settings) as http:
        running = await http.post(
            "/api/v1/jobs", json={"workflow": graphs.sleep(30), "webhook_url": url}
        )
        waiting = await http.post(
            "/api/v1/jobs", json={"workflow": graphs.invert(), "webhook_url": url}
        )
        running_id, waiting_id = running.json()["job_id"], waiting.json()["job_id"]
        await wait_for_job(http, running_id, lambda j: j["status"] == "processing")
        assert (await http.delete(f"/api/v1/jobs/{waiting_id}")).json()["status"] == "cancelled"
        assert (await http.delete(f"/api/v1/jobs/{running_id}")).json()["status"] == "cancelled"
        for job_id in (waiting_id, running_id):
            job = await wait_settled(http, job_id)
            payload = assert_delivered_once(receiver, job, "job.cancelled")
            assert payload["data"]["status"] == "cancelled"
            assert receiver.attempts(job["webhooks"][0]["id"]) == [500, 200]


async def test_a_timeout_and_a_redirect_are_failed_attempts(
    tmp_path: Path, comfyui_url: str, store_url: str, receiver: Receiver
) -> None:
    """The first attempt stalls past the timeout, the second is answered with a 302 (not
    followed: its target is never asked), the third succeeds."""
    url = receiver.url("stall,redirect,ok")
    async with service(hook_settings(tmp_path, comfyui_url, store_url)) as http:
        job = await http.post(
            "/api/v1/jobs", json={"workflow": graphs.invert(), "webhook_url": url}
        )
        job_id = job.json()["job_id"]
        done = await wait_settled(http, job_id)
        assert_delivered_once(receiver, done, "job.completed")
        log = done["webhooks"][0]["attempts_log"]
        assert len(log) == 3, log
        assert log[0]["error"] == "timed out after 0.5 s" and log[0]["status_code"] is None, log
        assert 450 <= log[0]["duration_ms"] < 3000, log
        assert log[1]["status_code"] == 302 and log[2]["status_code"] == 200, log
        assert receiver.attempts(done["webhooks"][0]["id"]) == [0, 302, 200]
        assert receiver.redirect_hits == 0


async def test_exhausted_then_redelivered_by_an_admin(
    tmp_path: Path, comfyui_url: str, store_url: str, receiver: Receiver
) -> None:
    """Attempts spent: failed. A redelivery keeps the id, counts the attempts on and gives
    the whole limit again; 409 while pending; 404 for unknown ids."""
    settings = hook_settings(
        tmp_path, comfyui_url, store_url, webhook_max_attempts=3, webhook_timeout_seconds=5
    )
    async with service(settings) as http:
        job = await http.post(
            "/api/v1/jobs",
            json={"workflow": graphs.invert(), "webhook_url": receiver.url("error")},
        )
        job_id = job.json()["job_id"]
        exhausted = await wait_settled(http, job_id)
        (hook,) = exhausted["webhooks"]
        assert hook["status"] == "failed" and hook["attempts"] == 3, hook
        assert hook["delivered_at"] is None and hook["next_attempt_at"] is None
        route = f"/api/v1/jobs/{job_id}/webhooks/{hook['id']}/redeliver"

        again = await http.post(route)  # the receiver still fails: three more, then failed
        assert again.status_code == 202, again.text
        assert again.json()["id"] == hook["id"] and again.json()["status"] == "pending"
        assert again.json()["attempts"] == 3 and again.json()["next_attempt_at"] is not None
        failed_again = await wait_settled(
            http, job_id, lambda j: j["webhooks"][0]["attempts"] == 6 and settled(j)
        )
        assert failed_again["webhooks"][0]["status"] == "failed", failed_again["webhooks"]

        receiver.force = "hold"  # the next attempt waits for release(): it stays pending
        assert (await http.post(route)).status_code == 202
        assert_envelope(await http.post(route), 409, "CONFLICT")
        receiver.release()
        delivered = await wait_settled(http, job_id)
        (hook,) = delivered["webhooks"]
        assert hook["status"] == "delivered" and hook["attempts"] == 7, hook
        assert receiver.attempts(hook["id"]) == [500] * 6 + [200]
        assert len(receiver.successes(hook["id"])) == 1
        metrics = (await http.get("/metrics")).text
        assert 'comfykit_webhook_deliveries_total{outcome="failed"} 2.0' in metrics
        assert 'comfykit_webhook_deliveries_total{outcome="delivered"} 1.0' in metrics

        assert_envelope(await http.post(f"/api/v1/jobs/{job_id}/webhooks/msg_x/redeliver"), 404,
                        "NOT_FOUND")  # fmt: skip
        assert_envelope(await http.post(f"/api/v1/jobs/nope/webhooks/{hook['id']}/redeliver"),
                        404, "NOT_FOUND")  # fmt: skip


async def test_a_restart_between_attempts_loses_no_delivery(
    tmp_path: Path, comfyui_url: str, store_url: str, receiver: Receiver
) -> None:
    """The service stops while a delivery is pending (its receiver failing); a new service on
    the same data dir and database delivers it, once, under the same id."""
    settings = hook_settings(tmp_path, comfyui_url, store_url, webhook_backoff_seconds=0.2)
    async with service(settings) as http:
        job = await http.post(
            "/api/v1/jobs",
            json={"workflow": graphs.invert(), "webhook_url": receiver.url("error")},
        )
        job_id = job.json()["job_id"]
        before = await wait_for_job(
            http, job_id, lambda j: bool(j["webhooks"]) and j["webhooks"][0]["attempts"] >= 1
        )
    (hook,) = before["webhooks"]
    assert hook["status"] == "pending", hook
    sent_before = len(receiver.attempts(hook["id"]))
    assert receiver.successes(hook["id"]) == []
    receiver.force = "ok"
    async with service(settings) as http:
        after = await wait_settled(http, job_id)
    (hook,) = after["webhooks"]
    assert hook["status"] == "delivered", hook
    assert hook["attempts"] == sent_before + 1 == len(receiver.attempts(hook["id"]))
    assert len(receiver.successes(hook["id"])) == 1
    assert receiver.failures == []


async def test_template_default_and_a_mounted_prefix(
    tmp_path: Path, comfyui_url: str, receiver: Receiver
) -> None:
    """A template's webhook is its runs' default (an execute body's own wins), and the
    payload's URLs carry the prefix the router is mounted under. The own URL names
    ``localhost``: the request goes to a checked address of it (the receiver listens on
    127.0.0.1 only), with the name in ``Host``."""
    settings = hook_settings(tmp_path, comfyui_url, "")
    host = FastAPI()
    host.include_router(create_router(settings), prefix="/comfy")
    template_url, own_url = (
        receiver.url("ok", "/template"),
        receiver.url("ok", "/own", host="localhost"),
    )
    async with LifespanManager(host, startup_timeout=60, shutdown_timeout=30) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://h", timeout=60) as http:
            created = await http.post(
                "/comfy/api/v1/workflows",
                json={
                    "name": "inv",
                    "workflow": graphs.invert(),
                    "parameters": {"color": {"node": "1", "input": "color"}},
                    "webhook_url": template_url,
                },
            )
            assert created.status_code == 201, created.text
            template = created.json()
            assert template["webhook_url"] == template_url
            fetched = await http.get(f"/comfy/api/v1/workflows/{template['id']}")
            assert fetched.json()["webhook_url"] == template_url
            execute = f"/comfy/api/v1/workflows/{template['id']}/execute"
            default = (await http.post(execute, json={"parameters": {"color": 1}})).json()
            own = await http.post(
                execute, json={"parameters": {"color": 2}, "webhook_url": own_url}
            )
            assert default["webhook_url"] == template_url
            assert own.json()["webhook_url"] == own_url
            for job_id, url in ((default["job_id"], template_url), (own.json()["job_id"], own_url)):
                job = await wait_settled(http, job_id, prefix="/comfy")
                assert job["webhooks"][0]["url"] == url
                payload = assert_delivered_once(receiver, job, "job.completed")
                data = payload["data"]
                assert data["image_url"] == f"/comfy/api/v1/generate/{job_id}/image"
                assert data["images"][0]["url"].startswith(f"/comfy/api/v1/jobs/{job_id}/")
                assert data["metadata"]["base_path"] == "/comfy"
                assert (await http.get(data["image_url"])).status_code == 200
                (success,) = receiver.successes(job["webhooks"][0]["id"])
                assert success.headers["host"] == urlsplit(url).netloc


REFUSED = [
    ("http://127.0.0.1:9/hook", "127.0.0.1 is a loopback address"),
    ("http://localhost:9/hook", "localhost resolves to"),
    ("http://[::1]:9/hook", "::1 is a loopback address"),
    ("http://[::ffff:127.0.0.1]/hook", "loopback"),
    ("http://10.0.0.1/hook", "10.0.0.1 is a private address"),
    ("http://169.254.169.254/latest/meta-data", "169.254.169.254 is a link-local address"),
    ("http://0.0.0.0/hook", "unspecified"),
    ("ftp://example.com/hook", "must be an http or https URL"),
    ("http://user:pw@example.com/hook", "must not contain a user name or password"),
    ("http:///hook", "must name a host"),
    ("hook", "must be an http or https URL"),
]


async def test_ssrf_targets_are_refused(tmp_path: Path, comfyui_url: str, store_url: str) -> None:
    """With ``webhook_allow_private`` off (the default), every non-public or malformed
    target is a 400 naming ``webhook_url``, on every route that takes one; no job is made."""
    settings = hook_settings(tmp_path, comfyui_url, store_url, webhook_allow_private=False)
    async with service(settings) as client:
        for url, reason in REFUSED:
            response = await client.post(
                "/api/v1/jobs", json={"workflow": graphs.invert(), "webhook_url": url}
            )
            error = assert_envelope(response, 400, "VALIDATION_ERROR")
            assert error["message"].startswith("webhook_url "), (url, error)
            assert reason in error["message"], (url, error)
            assert error["details"][0]["field"] == "webhook_url", error
        loopback = "http://127.0.0.1:9/hook"
        hook = {"webhook_url": loopback}
        bodies = [
            ("/api/v1/generate", {"prompt": "x", **TINY, **hook}),
            ("/api/v1/generate/batch", {"request": {"prompt": "x"}, **hook}),
            ("/api/v1/generate/batch", {"requests": [{"prompt": "x", **hook}]}),
            ("/api/v1/workflows/txt2img/execute", {"parameters": {"prompt": "x"}, **hook}),
            ("/api/v1/workflows", {"name": "n", "workflow": graphs.invert(), **hook}),
        ]
        for path, body in bodies:
            error = assert_envelope(await client.post(path, json=body), 400, "VALIDATION_ERROR")
            assert "webhook_url must point to a public address" in error["message"], (path, error)
        assert (await client.get("/api/v1/jobs")).json()["jobs"] == []
        too_long = "http://example.com/" + "a" * 2100
        response = await client.post(
            "/api/v1/jobs", json={"workflow": graphs.invert(), "webhook_url": too_long}
        )
        error = assert_envelope(response, 400, "VALIDATION_ERROR")
        assert "webhook_url must be at most 2048 characters" in error["message"]


async def test_a_webhook_needs_the_secret(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/jobs", json={"workflow": graphs.invert(), "webhook_url": "http://127.0.0.1/"}
    )
    error = assert_envelope(response, 400, "VALIDATION_ERROR")
    assert error["message"].startswith("webhook_url "), error
    assert "COMFYKIT_WEBHOOK_SECRET" in error["message"], error
    assert error["details"][0]["field"] == "webhook_url"


async def test_the_check_without_a_service() -> None:
    """Public addresses pass (nothing is connected to); mapped and 6to4 IPv6 forms of
    private ones do not; with allow_private loopback passes."""
    target = await check_webhook_url("https://8.8.8.8:8443/x?y=1#f", allow_private=False)
    assert target.addresses == ("8.8.8.8",)
    assert str(target.url_for("8.8.8.8")) == "https://8.8.8.8:8443/x?y=1"
    assert target.host_header == "8.8.8.8:8443"
    mapped = await check_webhook_url("http://[::ffff:8.8.8.8]/", allow_private=False)
    assert mapped.host_header == "[::ffff:8.8.8.8]"
    for url in ("http://[::ffff:10.1.2.3]/", "http://[2002:7f00:1::]/", "http://[fe80::1]/",
                "http://100.64.0.1/", "http://224.0.0.1/", "http://a:99999/"):  # fmt: skip
        with pytest.raises(ServiceError) as info:
            await check_webhook_url(url, allow_private=False)
        assert info.value.status_code == 400 and info.value.details[0]["field"] == "webhook_url"
    allowed = await check_webhook_url("http://localhost:8000/x", allow_private=True)
    assert "127.0.0.1" in allowed.addresses and allowed.host_header == "localhost:8000"


async def test_replicas_never_claim_the_same_delivery(tmp_path: Path, store_url: str) -> None:
    """Two stores on one database (two replicas) claim at once: each due delivery goes to
    exactly one of them, a leased one to nobody until its lease ends, and only the lease's
    holder can record its attempt."""
    url = store_url or f"sqlite+aiosqlite:///{tmp_path / 'replicas.db'}"
    first, second = Store(url), Store(url)
    await first.open()
    await second.open()
    try:
        now = utcnow()
        job = JobRow(
            id="job-1", prompt_id="p-1", kind="workflow", status="queued", workflow={},
            uploads={}, meta={}, outputs=[], attempts=0, cancel_requested=False,
            created_at=now, webhook_url="http://127.0.0.1/",
        )  # fmt: skip
        await first.add_jobs([job], [])

        def messages(row: JobRow) -> list[DeliveryRow]:
            return [
                DeliveryRow(
                    id=f"msg_{i:02d}",
                    job_id=row.id,
                    url="http://127.0.0.1/",
                    event="job.completed",
                    payload={},
                    status="pending",
                    attempts=0,
                    attempts_log=[],
                    next_attempt_at=now,
                    created_at=now,
                    attempt_base=0,
                )  # fmt: skip
                for i in range(20)
            ]

        ended, _ = await first.update_job("job-1", {"status": "completed"}, deliveries=messages)
        assert ended is not None and len(await first.deliveries_of(["job-1"])) == 20
        lease = utcnow() + dt.timedelta(seconds=60)
        claims: list[list[DeliveryRow]] = []
        for _ in range(10):
            got = await asyncio.gather(
                *(s.claim_deliveries(now=utcnow(), lease_until=lease, limit=3)
                  for s in (first, second, first, second))
            )  # fmt: skip
            claims.extend(got)
            if not any(got):
                break
        ids = [d.id for batch in claims for d in batch]
        assert sorted(ids) == [f"msg_{i:02d}" for i in range(20)], ids
        assert await second.claim_deliveries(now=utcnow(), lease_until=lease, limit=50) == []
        later = lease + dt.timedelta(seconds=1)
        assert not await second.settle_delivery("msg_00", later, {"attempts": 1})
        assert await first.settle_delivery("msg_00", lease, {"attempts": 1, "status": "delivered"})
        # once the lease has ended, another replica may retry the rest
        retry = await second.claim_deliveries(now=later, lease_until=later, limit=50)
        assert len(retry) == 19 and "msg_00" not in {d.id for d in retry}
    finally:
        await first.close()
        await second.close()


@pytest.mark.slow
def test_a_killed_service_leaves_no_delivery_behind(
    serve_factory: Any, store_url: str, receiver: Receiver
) -> None:
    """``comfykit serve`` is SIGKILLed while an attempt is in flight (its lease held in the
    store); once the lease ends, the restarted service delivers the message, once."""
    extra = {"COMFYKIT_DATABASE_URL": store_url} if store_url else {}
    serve = serve_factory(
        COMFYKIT_WEBHOOK_SECRET=SECRET,
        COMFYKIT_WEBHOOK_ALLOW_PRIVATE="true",
        COMFYKIT_WEBHOOK_TIMEOUT_SECONDS="3",
        COMFYKIT_WEBHOOK_BACKOFF_SECONDS="0.2",
        **extra,
    )
    receiver.stall_seconds = _HOLD_LIMIT
    serve.start()
    job = httpx.post(
        f"{serve.url}/api/v1/jobs",
        json={"workflow": graphs.invert(), "webhook_url": receiver.url("stall,ok")},
    ).json()
    deadline = time.monotonic() + 60
    while not receiver.received:
        assert time.monotonic() < deadline, "the first attempt never arrived"
        time.sleep(0.02)
    serve.kill()  # the first attempt is stalled at the receiver: it is never recorded
    killed = time.monotonic()
    serve.start()
    hooks: list[dict[str, Any]] = []
    while time.monotonic() < killed + 60:
        hooks = httpx.get(f"{serve.url}/api/v1/jobs/{job['job_id']}").json()["webhooks"]
        if hooks and hooks[0]["status"] != "pending":
            break
        time.sleep(0.1)
    (hook,) = hooks
    assert hook["status"] == "delivered", hook
    assert hook["attempts"] == 1 and hook["attempts_log"][0]["status_code"] == 200, hook
    assert receiver.attempts(hook["id"]) == [0, 200]
    assert len(receiver.successes(hook["id"])) == 1 and receiver.failures == []
