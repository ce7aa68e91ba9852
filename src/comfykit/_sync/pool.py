# Generated from comfykit/_async by scripts/unasync.py. Do not edit: edit _async instead.
"""``ComfyPool``: several ComfyUI servers behind one client-shaped object.

Each server is an :class:`~comfykit.ComfyClient`; the pool picks one per job and
delegates. What can be decided without a socket (which servers can run a graph, which of them
takes it) is in :mod:`comfykit._balance`; the job handle that follows a job from a lost server
to another is :class:`~comfykit._sync.pool_jobs.PoolJob`. The blocking ``ComfyPool`` is
generated from these files by ``scripts/unasync.py``.
"""

from __future__ import annotations

import copy
import functools
import logging
import posixpath
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from email.utils import parsedate_to_datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx

from comfykit._backends import sync as backend
from comfykit._balance import (
    ServerState,
    ServerStatus,
    choose,
    file_literals,
    lacks,
    output_prefixes,
)
from comfykit._config import DEFAULT_TIMEOUT, Auth, normalize_base_url
from comfykit._exceptions import (
    ComfyConnectionError,
    ComfyError,
    InputError,
    NoServerAvailable,
    NotFoundError,
    ServerError,
)
from comfykit._protocol.prompt import PromptInput, prompt_to_api
from comfykit._sync.client import ComfyClient
from comfykit._sync.generate import GenerateMixin
from comfykit._sync.pool_jobs import Order, PoolJob
from comfykit._types import FileRef, UploadedFile
from comfykit._uploads import FileInput, file_ref, read_upload

if TYPE_CHECKING:
    from typing_extensions import Self

    from comfykit._protocol.tracker import JobTracker
    from comfykit._sync.jobs import Job
    from comfykit._sync.results import Result
    from comfykit.generation import GenerationRequest
    from comfykit.graph import NodeCatalog

__all__ = ["ComfyPool"]

log = logging.getLogger("comfykit")

#: How far a server's clock may be off, and how coarse HTTP dates are (whole seconds), when an
#: output file's time is compared with a job's submission.
_CLOCK_SLACK = 2.0
#: The highest file counter the search for a lost job's output files looks at.
_MAX_COUNTER = 1 << 20


class _Member:
    """One server of the pool: its client, its health and the pool's jobs on it."""

    def __init__(self, client: ComfyClient, *, owned: bool, probe_timeout: float) -> None:
        self.client = client
        self.url = client.base_url
        self.owned = owned
        #: The client's connection with a short timeout and one retry, for the health probe.
        self.probe = client.with_options(timeout=probe_timeout, max_retries=1)
        self.state = ServerState.UP
        self.since = time.time()
        self.last_error: str | None = None
        #: The pool's jobs placed here and not finished, by prompt id.
        self.active: dict[str, JobTracker] = {}
        #: Prompt ids on their way here (``POST /prompt`` not answered yet).
        self.placing: set[str] = set()
        #: Prompts of others (not the pool's) running or pending at the last probe, and all.
        self.foreign = 0
        self.queue: int | None = None
        #: Jobs sent to another server while this one was away: dequeued here when it is back.
        self.moved: set[str] = set()
        self.watcher: backend.Background | None = None
        self.probed = backend.Signal()

    def live_queue(self) -> int | None:
        """Prompts running or pending on the server, anybody's, as of the last ``status``
        frame its socket received (the server sends one on every queue change); ``None``
        while the socket is not open."""
        stream = self.client._shared.stream
        return stream.router.queue_remaining if stream.connected else None

    def load(self) -> int:
        """Jobs queued and running here: the pool's own (those finished are dropped now) and
        those on their way, plus anybody else's (from the live queue length when the socket is
        open, else from the last probe)."""
        for pid in [pid for pid, tracker in self.active.items() if tracker.done]:
            del self.active[pid]
        own = len(self.active) + len(self.placing)
        live = self.live_queue()
        return own + (self.foreign if live is None else max(0, live - own))

    def status(self) -> ServerStatus:
        live = self.live_queue()
        return ServerStatus(
            url=self.url,
            state=self.state,
            in_flight=len([t for t in self.active.values() if not t.done]) + len(self.placing),
            queue=self.queue if live is None else live,
            last_error=self.last_error,
            since=self.since,
        )

    def reason(self) -> str:
        when = time.strftime("%H:%M:%S", time.localtime(self.since))
        return f"down since {when}: {self.last_error or 'no answer'}"


class _Upload:
    """A file a job may name: uploaded through the pool (its bytes kept, so that it can be
    uploaded again to the server that runs the job), or found on a server (fetched from there
    when another server needs it)."""

    def __init__(
        self, key: str, ref: FileRef, content: bytes | None, *, mask_of: str | None = None
    ) -> None:
        self.key = key
        self.ref = ref
        self.content = content
        self.mask_of = mask_of
        #: Per server URL, the name the file has there (a server may rename on a clash).
        self.names: dict[str, str] = {}


class ComfyPool(GenerateMixin):
    """Several ComfyUI servers behind one client-shaped object.

    ``submit()`` returns a job with the interface of :class:`~comfykit.Job` (``result()``,
    ``events()``, ``wait()``, ``cancel()``); ``run()`` and the high-level calls (``generate``,
    ``img2img``, ``inpaint``, ``upscale``, ``generate_batch``, ...) work as on one client, so
    code written for a client runs on a pool.

    Routing: a job goes only to servers whose node catalog has every class it uses and lists
    the model files it names; among those, to the one with the fewest jobs queued and running
    (the pool's own count, corrected by the server's queue length: live from its WebSocket's
    ``status`` frames, else from the last ``/queue`` probe); ties go round robin. Files
    uploaded through the pool follow the job to the server that runs it.

    Health: every server is probed (``GET /queue``) every ``probe_interval`` seconds; one that
    fails (connection errors, 5xx, a WebSocket that will not reopen) is marked down and gets no
    new jobs until a probe gets an answer again. :attr:`servers` shows each one's state.

    Failover: a job whose server is lost is resubmitted to another server, under the same
    prompt id, only once the lost server says it does not know the job (it restarted) and no
    output file of it exists there, or once the server has stayed unreachable for
    ``failover_after`` seconds. A job whose end was seen, or that the lost server finished, is
    never run again. Every job ends with its result or a typed error.

    Args:
        urls: the servers' base URLs; a client is made for each with the options below.
        clients: clients made by the caller instead of ``urls`` (not closed by the pool).
        probe_interval: seconds between health probes of each server.
        probe_timeout: the probe's request timeout in seconds.
        failover_after: seconds a lost server may stay unreachable before its jobs are
            resubmitted elsewhere; ``None``: only once it answers (a job then waits as long as
            its own timeout allows).
        upload_cache_bytes: how many bytes of uploaded files the pool keeps to upload them
            again elsewhere; beyond that, the oldest are fetched back from a server that has
            them when needed.

    ``timeout``, ``max_retries``, ``headers``, ``auth``, ``ws``, ``validate`` and
    ``max_connections`` are the options of each :class:`~comfykit.ComfyClient` the pool
    makes.

    Use it as ``with ComfyPool([url_a, url_b]) as pool: ...`` or call :meth:`close`.
    """

    def __init__(
        self,
        urls: Sequence[str] | None = None,
        *,
        clients: Sequence[ComfyClient] | None = None,
        probe_interval: float = 2.0,
        probe_timeout: float = 5.0,
        failover_after: float | None = 30.0,
        upload_cache_bytes: int = 256 * 1024 * 1024,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        max_retries: int = 2,
        headers: Mapping[str, str] | None = None,
        auth: Auth | None = None,
        ws: bool = True,
        validate: bool = True,
        max_connections: int = 8,
    ) -> None:
        if isinstance(urls, str):
            raise InputError("urls: give a list of URLs, e.g. ComfyPool([url_a, url_b])")
        if (urls is None) == (clients is None):
            raise InputError("give either urls=[...] or clients=[...]")
        if probe_interval <= 0 or probe_timeout <= 0:
            raise InputError("probe_interval and probe_timeout must be > 0")
        if failover_after is not None and failover_after < 0:
            raise InputError(f"failover_after must be >= 0 or None, got {failover_after}")
        owned = clients is None
        wanted = [normalize_base_url(u) for u in urls] if urls is not None else None
        given = [c.base_url for c in clients] if clients is not None else []
        seen: set[str] = set()
        for url in wanted or given:
            if url in seen:
                raise InputError(f"{url} is in the pool twice")
            seen.add(url)
        if not seen:
            raise InputError("a pool needs at least one server")
        made = [
            ComfyClient(
                url,
                timeout=timeout,
                max_retries=max_retries,
                headers=headers,
                auth=auth,
                ws=ws,
                validate=validate,
                max_connections=max_connections,
            )  # fmt: skip
            for url in wanted or ()
        ]
        members = [
            _Member(c, owned=owned, probe_timeout=probe_timeout) for c in made or clients or ()
        ]
        self._members = members
        self._use_ws = all(m.client._use_ws for m in members)
        self._probe_interval = probe_interval
        self._probe_timeout = probe_timeout
        self._failover_after = failover_after
        self._upload_cache_bytes = upload_cache_bytes
        self._uploads: OrderedDict[str, _Upload] = OrderedDict()
        self._mutex = backend.Mutex()
        self._next = 0  # where the round robin among equally loaded servers goes on
        self._started = False
        self._closed = False
        self._closing = backend.Signal()
        # A pool dropped without close(): its probes end (its clients close themselves).
        weakref.finalize(self, self._closing.set).atexit = False

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def servers(self) -> list[ServerStatus]:
        """Each server's state, jobs in flight, queue and last error (a server is presumed up
        until the first probe or request says otherwise)."""
        with self._mutex:
            return [m.status() for m in self._members]

    @property
    def clients(self) -> list[ComfyClient]:
        """The client of each server, in the pool's order."""
        return [m.client for m in self._members]

    @property
    def failover_after(self) -> float | None:
        """Seconds a lost server may stay unreachable before its jobs move elsewhere."""
        return self._failover_after

    def _start(self) -> None:
        """Start the health probes (once) and wait for the first answer of each server."""
        with self._mutex:
            if self._started or self._closed:
                return
            self._started = True
        pool = weakref.ref(self)
        for member in self._members:
            member.watcher = backend.Background(
                functools.partial(_watch, pool, member, self._closing, self._probe_interval),
                name=f"comfykit-pool-probe {member.url}",
            )
        for member in self._members:
            member.probed.wait(2 * self._probe_timeout + 1.0)

    def close(self) -> None:
        """Stop the probes and close the clients the pool made (not those passed in)."""
        if self._closed:
            return
        self._closed = True
        self._closing.set()
        for member in self._members:
            if member.watcher is not None:
                member.watcher.join(5.0)
        for member in self._members:
            if member.owned:
                member.client.close()

    def __enter__(self) -> Self:
        self._start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        states = ", ".join(f"{m.url} {m.state.value}" for m in self._members)
        return f"<{type(self).__name__} {states}>"

    # -- health ---------------------------------------------------------------------------
    def _probe(self, member: _Member) -> None:
        try:
            queue = member.probe.queue()
        except ComfyError as exc:
            self._mark_down(member, exc)
            return
        with self._mutex:
            ids = queue.prompt_ids
            member.queue = len(ids)
            member.foreign = sum(
                1 for p in ids if p not in member.active and p not in member.placing
            )
        if member.state is ServerState.DOWN:
            self._forget_moved(member)
            with self._mutex:
                member.state = ServerState.UP
                member.since = time.time()
            log.warning("comfykit pool: %s is up again", member.url)

    def _mark_down(self, member: _Member, error: BaseException) -> None:
        """Take a server out: no new jobs until a probe gets an answer."""
        with self._mutex:
            member.last_error = f"{type(error).__name__}: {error}"
            if member.state is ServerState.UP:
                member.state = ServerState.DOWN
                member.since = time.time()
                log.warning("comfykit pool: %s is down (%s)", member.url, member.last_error)

    def _forget_moved(self, member: _Member) -> None:
        """A server back after its jobs went elsewhere: those still queued there are removed,
        one still running there is interrupted."""
        moved, member.moved = member.moved, set()
        if not moved:
            return
        try:
            queue = member.probe.queue()
            pending = [p for p in moved if p in queue]
            if pending:
                member.probe.delete_from_queue(pending)
            running = {q.prompt_id for q in queue.running}
            for pid in moved & running:
                member.probe.interrupt(pid)
        except ComfyError as exc:
            log.info("could not remove moved jobs from %s: %s", member.url, exc)

    # -- routing --------------------------------------------------------------------------
    def _ranked(self) -> list[_Member]:
        """The servers that are up, least loaded first (ties in round-robin order)."""
        with self._mutex:
            n = len(self._members)
            order = [self._members[(self._next + i) % n] for i in range(n)]
            return sorted((m for m in order if m.state is ServerState.UP), key=lambda m: m.load())

    def _place(
        self, api: dict[str, Any], pid: str, exclude: Sequence[_Member], uploads: Sequence[str]
    ) -> _Member:
        """Choose the server a job goes to, and count the job there at once (so that jobs
        submitted together spread)."""
        reasons: dict[str, list[str]] = {}
        for attempt in range(2):
            reasons = {}
            fit: list[_Member] = []
            for member in self._members:
                if member in exclude:
                    reasons[member.url] = ["the job was lost there"]
                    continue
                if member.state is not ServerState.UP:
                    reasons[member.url] = [member.reason()]
                    continue
                try:
                    catalog = member.client.catalog(refresh=attempt > 0)
                except (ComfyConnectionError, ServerError) as exc:
                    self._mark_down(member, exc)
                    reasons[member.url] = [member.reason()]
                    continue
                missing = lacks(catalog, api)
                if missing:
                    reasons[member.url] = ["lacks " + ", ".join(missing)]
                else:
                    fit.append(member)
            with self._mutex:
                loads = [m.load() if m in fit else None for m in self._members]
                prefer = {
                    i
                    for i, m in enumerate(self._members)
                    if all(m.url in self._uploads[k].names for k in uploads)
                }
                index = choose(loads, self._next, prefer)
                if index is not None:
                    self._next = index + 1
                    member = self._members[index]
                    member.placing.add(pid)
                    return member
            if not any(r[0].startswith("lacks ") for r in reasons.values()):
                break  # nothing a fresh catalog could change
        raise NoServerAvailable("no server of the pool can take the job", reasons)

    def _dispatch(self, order: Order, exclude: Sequence[_Member]) -> tuple[_Member, Job | None]:
        """Submit the job to the best server. A server that fails before the prompt can have
        reached it is marked down and the next one is tried. Returns the server and the job,
        or ``None`` for the job when the prompt may have arrived but the server went away (the
        job is then recovered from there)."""
        tried = list(exclude)
        failures: dict[str, list[str]] = {}
        uploads = file_literals(order.api, self._uploads)
        while True:
            try:
                member = self._place(order.api, order.prompt_id, tried, uploads)
            except NoServerAvailable as exc:
                raise NoServerAvailable(exc.message, {**exc.reasons, **failures}) from None
            posting = False  # True once the prompt is on its way
            job: Job | None = None
            try:
                api = self._with_uploads(member, order.api, uploads)
                client = member.client
                if client._validate if order.validate is None else order.validate:
                    client.validate(api)
                posting = True
                job = client.submit(
                    api, validate=False, extra_data=order.extra_data, front=order.front,
                    number=order.number, output_nodes=order.output_nodes,
                    prompt_id=order.prompt_id,
                )  # fmt: skip
            except (ComfyConnectionError, ServerError) as exc:
                self._mark_down(member, exc)
                if posting and isinstance(exc, ComfyConnectionError) and not exc._not_sent:
                    return member, None  # the prompt may be there: recovered from there
                failures[member.url] = [f"{type(exc).__name__}: {exc}"]
                tried.append(member)
                continue
            finally:
                self._adopt(member, order.prompt_id, job)
            return member, job

    def _adopt(self, member: _Member, prompt_id: str, job: Job | None) -> None:
        """A job placed on a server is counted there until it finishes (``None``: its
        placement failed)."""
        with self._mutex:
            member.placing.discard(prompt_id)
            if job is not None:
                member.active[prompt_id] = job._tracker

    def _locate(self, member: _Member, prompt_id: str) -> bool:
        """True when the server has the prompt (queued, running or in its history)."""
        if prompt_id in member.client.queue():
            return True
        return bool(member.client.history(prompt_id))

    def _follow(self, member: _Member, order: Order) -> Job:
        job = member.client._follow(order.prompt_id, order.api)
        self._adopt(member, order.prompt_id, job)
        return job

    def _ran_before(self, member: _Member, order: Order) -> str | None:
        """Evidence that a job the server no longer knows ran there anyway (it finished unseen,
        then the server restarted): the newest output file of one of its save nodes, written
        after the job was submitted by the server's clock. ``None`` when there is none (or
        its names cannot be predicted)."""
        for prefix, ext in output_prefixes(order.api):
            folder, name = posixpath.split(posixpath.normpath(prefix))
            newest = self._newest_output(member.client, folder, name, ext)
            if newest is None:
                continue
            filename, modified, offset = newest
            if modified >= order.submitted_at + offset - _CLOCK_SLACK:
                return posixpath.join(folder, filename)
        return None

    def _newest_output(
        self, client: ComfyClient, folder: str, name: str, ext: str
    ) -> tuple[str, float, float] | None:
        """The highest-numbered ``{name}_NNNNN_.{ext}`` in the output folder, with its time
        and the server's clock offset: ComfyUI numbers a prefix's files upwards, so the
        highest number is found by doubling then halving (a few ``HEAD /view`` requests)."""

        def probe(n: int) -> tuple[str, float, float] | None:
            filename = f"{name}_{n:05}_.{ext}"
            ref = FileRef(filename=filename, subfolder=folder, type="output")
            try:
                response = client._request("HEAD", "/view", params=ref.view_params())
            except NotFoundError:
                return None
            return filename, _http_time(response, "last-modified"), _clock_offset(response)

        found = probe(1)
        if found is None:
            return None
        low, high = 1, 2
        while high < _MAX_COUNTER:
            at = probe(high)
            if at is None:
                break
            low, found, high = high, at, high * 2
        while high - low > 1:
            middle = (low + high) // 2
            at = probe(middle)
            if at is None:
                high = middle
            else:
                low, found = middle, at
        return found

    # -- uploads --------------------------------------------------------------------------
    def _with_uploads(
        self, member: _Member, api: dict[str, Any], uploads: Sequence[str]
    ) -> dict[str, Any]:
        """``api`` with every file it names from the pool's uploads on ``member`` (uploaded
        there first when missing; renamed in the graph if the server named it otherwise)."""
        if not uploads:
            return api
        names = {key: self._ensure_file(member, key) for key in uploads}
        if all(key == name for key, name in names.items()):
            return api
        renamed = copy.deepcopy(api)
        for node in renamed.values():
            inputs = node.get("inputs") if isinstance(node, dict) else None
            if isinstance(inputs, dict):
                for input_name, value in inputs.items():
                    if isinstance(value, str) and value in names:
                        inputs[input_name] = names[value]
        return renamed

    def _ensure_file(self, member: _Member, key: str) -> str:
        """The name of upload ``key`` on ``member``, uploading it there first if needed."""
        upload = self._uploads[key]
        known = upload.names.get(member.url)
        if known is not None:
            return known
        content = upload.content
        if content is None:
            content = self._fetch(upload)
        ref = upload.ref
        if upload.mask_of is not None:
            original = self._ensure_file(member, upload.mask_of)
            uploaded = member.client.upload_mask(
                content, original_ref=file_ref(original, default_type="input"),
                filename=ref.filename,
                subfolder=ref.subfolder or None, type=ref.type,
            )  # fmt: skip
        else:
            uploaded = member.client.upload_image(
                content, filename=ref.filename, subfolder=ref.subfolder or None, type=ref.type
            )
        upload.names[member.url] = uploaded.ref
        return uploaded.ref

    def _fetch(self, upload: _Upload) -> bytes:
        """The bytes of an upload the pool does not hold: from a server that has it."""
        for member in self._ranked():
            name = upload.names.get(member.url)
            if name is None:
                continue
            try:
                data = member.client.download(file_ref(name, default_type="input"))
            except ComfyConnectionError as exc:
                self._mark_down(member, exc)
                continue
            assert isinstance(data, bytes)
            return data
        raise NoServerAvailable(
            f"file {upload.key!r} is needed on another server, but no server that has it answers",
            {url: ["has the file, but does not answer"] for url in upload.names},
        )

    def _remember(self, upload: _Upload) -> None:
        """Keep an upload; drop the bytes of the oldest beyond ``upload_cache_bytes``."""
        with self._mutex:
            self._uploads[upload.key] = upload
            self._uploads.move_to_end(upload.key)
            held = sum(len(u.content) for u in self._uploads.values() if u.content is not None)
            for old in self._uploads.values():
                if held <= self._upload_cache_bytes:
                    break
                if old.content is not None and old is not upload:
                    held -= len(old.content)
                    old.content = None

    def _on_a_server(self, prefer: Sequence[str] = ()) -> list[_Member]:
        """Servers to try for a one-off request, best first (those in ``prefer`` first)."""
        self._start()
        ranked = self._ranked()
        if not ranked:
            raise NoServerAvailable(
                "every server of the pool is down", {m.url: [m.reason()] for m in self._members}
            )
        return sorted(ranked, key=lambda m: m.url not in prefer)

    def upload_image(
        self,
        data_or_path: FileInput,
        *,
        filename: str | None = None,
        subfolder: str | None = None,
        overwrite: bool = False,
        type: str = "input",
    ) -> UploadedFile:
        """Upload an image to one server and remember it: a job that names its ``.ref`` gets
        it uploaded to whichever server runs it (under the same name where possible)."""
        return self._upload_image(
            data_or_path, filename=filename, subfolder=subfolder, overwrite=overwrite,
            type=type, argument="data_or_path",
        )  # fmt: skip

    def _upload_image(
        self,
        data_or_path: FileInput,
        *,
        filename: str | None,
        subfolder: str | None,
        overwrite: bool,
        type: str,
        argument: str,
    ) -> UploadedFile:
        content, name = read_upload(data_or_path, filename, argument=argument)
        last: ComfyConnectionError | None = None
        for member in self._on_a_server():
            try:
                uploaded = member.client.upload_image(
                    content, filename=name, subfolder=subfolder, overwrite=overwrite, type=type
                )
            except ComfyConnectionError as exc:
                self._mark_down(member, exc)
                last = exc
                continue
            upload = _Upload(uploaded.ref, _plain(uploaded), content)
            upload.names[member.url] = uploaded.ref
            self._remember(upload)
            return uploaded
        raise NoServerAvailable(
            "no server of the pool took the upload", {m.url: [m.reason()] for m in self._members}
        ) from last

    def upload_mask(
        self,
        data_or_path: FileInput,
        *,
        original_ref: FileRef | Mapping[str, Any] | str,
        filename: str | None = None,
        subfolder: str | None = None,
        overwrite: bool = False,
        type: str = "input",
    ) -> UploadedFile:
        """Upload a mask onto ``original_ref`` (an image uploaded through the pool, or one a
        server has) and remember it, as :meth:`upload_image`."""
        content, name = read_upload(data_or_path, filename)
        original = file_ref(original_ref, default_type="input")
        known = self._uploads.get(original.ref)
        holders = list(known.names) if known is not None else []
        last: ComfyConnectionError | None = None
        for member in self._on_a_server(prefer=holders):
            try:
                on_member = (
                    self._ensure_file(member, original.ref) if known is not None else original.ref
                )
                uploaded = member.client.upload_mask(
                    content, original_ref=file_ref(on_member, default_type="input"),
                    filename=name, subfolder=subfolder, overwrite=overwrite, type=type,
                )  # fmt: skip
            except ComfyConnectionError as exc:
                self._mark_down(member, exc)
                last = exc
                continue
            mask_of = original.ref if known is not None else None
            upload = _Upload(uploaded.ref, _plain(uploaded), content, mask_of=mask_of)
            upload.names[member.url] = uploaded.ref
            self._remember(upload)
            return uploaded
        raise NoServerAvailable(
            "no server of the pool took the upload", {m.url: [m.reason()] for m in self._members}
        ) from last

    def _image_ref(self, image: FileInput | FileRef, argument: str) -> str:
        """A file already on a server of the pool (a ``FileRef``, or a ``"sub/name.png"``
        string that is not a local file) is remembered where it is found; anything else is
        checked and uploaded through the pool. Either way the file follows the job."""
        if isinstance(image, FileRef) or (isinstance(image, str) and not Path(image).is_file()):
            ref = image if isinstance(image, FileRef) else file_ref(image, default_type="input")
            key = ref.ref
            if key in self._uploads:
                return key
            upload = _Upload(key, ref, None)
            for member in self._on_a_server():
                try:
                    if member.client._has_file(ref):
                        upload.names[member.url] = key
                except ComfyConnectionError as exc:
                    self._mark_down(member, exc)
            if not upload.names:
                raise InputError(
                    f"{argument}: {image!r} is neither a local file nor a file on a server of "
                    "the pool"
                )
            self._remember(upload)
            return key
        uploaded = self._upload_image(
            image, filename=None, subfolder="comfykit", overwrite=False, type="input",
            argument=argument,
        )  # fmt: skip
        return uploaded.ref

    # -- what the high-level calls need -----------------------------------------------------
    def catalog(self, *, refresh: bool = False) -> NodeCatalog:
        """The node catalog of the server the next job would go to (the least loaded one that
        is up); each server's own is ``pool.clients[i].catalog()``."""
        last: ComfyConnectionError | None = None
        for member in self._on_a_server():
            try:
                return member.client.catalog(refresh=refresh)
            except ComfyConnectionError as exc:
                self._mark_down(member, exc)
                last = exc
        raise NoServerAvailable(
            "no server of the pool answers", {m.url: [m.reason()] for m in self._members}
        ) from last

    def models(self, folder: str | None = None) -> list[str]:
        """Model folder names, or the files of one folder, on any server that is up (sorted;
        a job naming a model goes to a server that has it)."""
        found: set[str] = set()
        answered = False
        for member in self._on_a_server():
            try:
                found.update(member.client.models(folder))
                answered = True
            except ComfyConnectionError as exc:
                self._mark_down(member, exc)
        if not answered:
            raise NoServerAvailable(
                "no server of the pool answers", {m.url: [m.reason()] for m in self._members}
            )
        return sorted(found)

    def resolve_request(self, request: GenerationRequest) -> GenerationRequest:
        """Fill in the seed and map model, sampler and scheduler onto what a server has: the
        least loaded server that knows the model resolves it (the job then goes to a server
        with that model file)."""
        first: InputError | None = None
        for member in self._on_a_server():
            try:
                return member.client.resolve_request(request)
            except InputError as exc:
                first = first or exc
            except ComfyConnectionError as exc:
                self._mark_down(member, exc)
        if first is not None:
            raise first
        raise NoServerAvailable(
            "no server of the pool answers", {m.url: [m.reason()] for m in self._members}
        )

    # -- jobs -----------------------------------------------------------------------------
    def submit(
        self,
        prompt: PromptInput,
        *,
        params: Mapping[str, Any] | None = None,
        validate: bool | None = None,
        extra_data: Mapping[str, Any] | None = None,
        front: bool = False,
        number: float | None = None,
        output_nodes: Sequence[str] | None = None,
        prompt_id: str | None = None,
    ) -> PoolJob:
        """Queue a prompt on the best server and return its job (the arguments are
        :meth:`ComfyClient.submit`'s).

        Raises:
            NoServerAvailable: every server is down, or none that is up has the node classes
                and model files the graph uses (``err.reasons`` says why, per server).
            WorkflowError, PromptValidationError: as :meth:`ComfyClient.submit`.
        """
        self._start()
        if self._closed:
            raise ComfyConnectionError("the pool is closed")
        order = Order(
            api=prompt_to_api(prompt, params),
            prompt_id=prompt_id or str(uuid.uuid4()),
            validate=validate,
            extra_data=dict(extra_data) if extra_data else None,
            front=front,
            number=number,
            output_nodes=list(output_nodes) if output_nodes else None,
            submitted_at=time.time(),
        )
        job = PoolJob(self, order)
        job._place(())
        return job

    def run(
        self,
        prompt: PromptInput,
        *,
        timeout: float | None = None,
        cancel_on_timeout: bool = False,
        **submit_options: Any,
    ) -> Result:
        """Submit and wait: ``submit(prompt, **options)`` then ``result(timeout)``."""
        job = self.submit(prompt, **submit_options)
        return job.result(timeout=timeout, cancel_on_timeout=cancel_on_timeout)


def _watch(
    pool_ref: weakref.ref[ComfyPool],
    member: _Member,
    closing: backend.Signal,
    interval: float,
) -> None:
    """The background probe of one server, until the pool is closed or collected (it holds
    the pool only while it probes)."""
    while True:
        pool = pool_ref()
        if pool is None or pool._closed:
            return
        try:
            pool._probe(member)
        except Exception:  # noqa: BLE001 - a bug here must not stop the probes
            log.exception("health probe of %s failed", member.url)
        member.probed.set()
        del pool
        closing.wait(interval)


def _plain(ref: FileRef) -> FileRef:
    return FileRef(filename=ref.filename, subfolder=ref.subfolder, type=ref.type)


def _http_time(response: httpx.Response, header: str) -> float:
    value = response.headers.get(header)
    if value is None:
        return float("inf")  # no date: counts as written now (never run twice on a guess)
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return float("inf")


def _clock_offset(response: httpx.Response) -> float:
    """How far the server's clock is ahead of ours (0 when it sends no ``Date``)."""
    server_now = _http_time(response, "date")
    return 0.0 if server_now == float("inf") else server_now - time.time()
