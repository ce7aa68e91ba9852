"""ComfyUI's native jobs routes: which servers have them, and the same answers without them.

Releases after 0.3.75 serve ``GET /api/jobs``, ``GET /api/jobs/{id}`` and later
``POST /api/jobs/{id}/cancel`` and ``POST /api/jobs/cancel``; ``/features`` says whether
``/api/assets`` is served. The clients detect them once (:class:`NativeState`, shared by a client
and its copies) and use them; this module holds the rules (pure, shared by both clients): what
the version in ``/system_stats`` means, how a missing route answers, and how ``/queue`` plus
``/history`` make the same :class:`~comfykit.JobInfo` on a server without the routes.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from comfykit._exceptions import InputError
from comfykit._types import (
    JOB_STATES,
    HistoryEntry,
    JobInfo,
    JobList,
    JobPagination,
    JobWorkflow,
    QueueItem,
    QueueState,
    ServerCapabilities,
)

__all__ = [
    "JOBS_API_SINCE",
    "NativeState",
    "SortBy",
    "SortOrder",
    "canonical_ids",
    "history_entry_of",
    "job_from_history",
    "job_from_queue",
    "jobs_from_queue_and_history",
    "jobs_params",
    "parse_version",
    "route_missing",
    "statuses",
]

SortBy = Literal["created_at", "execution_duration"]
SortOrder = Literal["asc", "desc"]

#: The first release with ``GET /api/jobs`` and ``GET /api/jobs/{id}``. The cancel routes came
#: later; a server of this version or newer gets them tried, and one that answers them as a
#: missing route (404 without ComfyUI's JSON error, or 405) is not asked again.
JOBS_API_SINCE: tuple[int, int, int] = (0, 4, 0)

_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")
_FINISHED = ("completed", "failed", "cancelled")
_END_EVENTS = ("execution_success", "execution_error", "execution_interrupted")


@dataclass
class NativeState:
    """What a client found of the server's native routes (shared with its copies).

    ``None``: not looked up yet. A failed look-up leaves it ``None``, to be tried again."""

    comfyui_version: str | None = None
    jobs_api: bool | None = None
    job_cancel_api: bool | None = None
    assets: bool | None = None

    def apply_version(self, version: str | None) -> None:
        """Decide from ``system.comfyui_version``: the jobs routes exist from
        :data:`JOBS_API_SINCE` on."""
        self.comfyui_version = version
        parsed = parse_version(version)
        has = parsed is not None and parsed >= JOBS_API_SINCE
        self.jobs_api = has
        self.job_cancel_api = has

    def capabilities(self) -> ServerCapabilities:
        """The public view (what is not known yet counts as absent)."""
        return ServerCapabilities(
            comfyui_version=self.comfyui_version,
            jobs_api=bool(self.jobs_api),
            job_cancel_api=bool(self.job_cancel_api),
            assets=bool(self.assets),
        )


def parse_version(version: str | None) -> tuple[int, int, int] | None:
    """``"0.38.1"`` -> ``(0, 38, 1)``; ``"v0.4"`` -> ``(0, 4, 0)``; ``None`` when there is no
    version in it."""
    if not version:
        return None
    match = _VERSION.search(version)
    if match is None:
        return None
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def route_missing(status_code: int, body: Any) -> bool:
    """True when an answer says the route does not exist, not that the job does not: ComfyUI's
    own 404s carry ``{"error": ...}``, a path no route matches gets aiohttp's plain-text 404,
    or a 405 (the static files' route takes every GET path, not a POST)."""
    if status_code == 405:
        return True
    return status_code == 404 and not (isinstance(body, dict) and "error" in body)


def canonical_ids(prompt_ids: str | Iterable[str]) -> tuple[list[str], list[str]]:
    """The ids (checked to be strings) split into canonical UUIDs and the rest.

    A server with the cancel routes mints and accepts only canonical lowercase UUIDs, and
    rejects a whole batch holding anything else; any other id cannot be one of its jobs."""
    ids = [prompt_ids] if isinstance(prompt_ids, str) else list(prompt_ids)
    canonical: list[str] = []
    other: list[str] = []
    for pid in ids:
        if not isinstance(pid, str) or not pid:
            raise InputError(f"prompt ids must be non-empty strings, got {pid!r}")
        try:
            ok = str(uuid.UUID(pid)) == pid
        except ValueError:
            ok = False
        (canonical if ok else other).append(pid)
    return canonical, other


def statuses(status: str | Iterable[str] | None) -> list[str] | None:
    """The ``status`` filter checked: each one of ``JOB_STATES``, or an ``InputError``."""
    if status is None:
        return None
    wanted = [status] if isinstance(status, str) else list(status)
    if not wanted:
        raise InputError("status: give at least one state, or None for every state")
    bad = [s for s in wanted if s not in JOB_STATES]
    if bad:
        raise InputError(f"status: unknown state(s) {bad!r}; known: {', '.join(JOB_STATES)}")
    return wanted


def jobs_params(
    *,
    status: list[str] | None,
    workflow_id: str | None,
    sort_by: str,
    sort_order: str,
    limit: int | None,
    offset: int,
) -> dict[str, str]:
    """The query of ``GET /api/jobs``, each argument checked first (``InputError``)."""
    if sort_by not in ("created_at", "execution_duration"):
        raise InputError(f"sort_by must be 'created_at' or 'execution_duration', got {sort_by!r}")
    if sort_order not in ("asc", "desc"):
        raise InputError(f"sort_order must be 'asc' or 'desc', got {sort_order!r}")
    if limit is not None and (isinstance(limit, bool) or limit < 1):
        raise InputError(f"limit must be >= 1, got {limit!r}")
    if isinstance(offset, bool) or offset < 0:
        raise InputError(f"offset must be >= 0, got {offset!r}")
    params = {"sort_by": sort_by, "sort_order": sort_order}
    if status is not None:
        params["status"] = ",".join(status)
    if workflow_id:
        params["workflow_id"] = workflow_id
    if limit is not None:
        params["limit"] = str(limit)
    if offset:
        params["offset"] = str(offset)
    return params


# -- the same jobs from /queue and /history --------------------------------------------------


def _workflow_id(extra_data: Mapping[str, Any]) -> str | None:
    pnginfo = extra_data.get("extra_pnginfo")
    workflow = pnginfo.get("workflow") if isinstance(pnginfo, Mapping) else None
    wid = workflow.get("id") if isinstance(workflow, Mapping) else None
    return str(wid) if wid is not None else None


def _create_time(extra_data: Mapping[str, Any]) -> int | None:
    value = extra_data.get("create_time")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def job_from_queue(item: QueueItem, *, running: bool, detail: bool = False) -> JobInfo:
    """A queued (``running``: executing) prompt as a job; ``detail`` adds its workflow."""
    return JobInfo(
        id=item.prompt_id,
        status="in_progress" if running else "pending",
        priority=item.number,
        create_time=_create_time(item.extra_data),
        outputs_count=0,
        workflow_id=_workflow_id(item.extra_data),
        workflow=JobWorkflow(prompt=item.prompt, extra_data=item.extra_data) if detail else None,
    )


def _output_items(outputs: Mapping[str, Any]) -> Iterable[tuple[str, str, dict[str, Any]]]:
    for node_id, node_outputs in outputs.items():
        if not isinstance(node_outputs, Mapping):
            continue
        for media_type, items in node_outputs.items():
            if media_type == "animated" or not isinstance(items, list):
                continue
            for item in items:
                if isinstance(item, dict):
                    yield str(node_id), str(media_type), item


def _preview(outputs: Mapping[str, Any]) -> dict[str, Any] | None:
    """A saved image, video or audio first, else any of them (what the jobs API prefers)."""
    fallback: dict[str, Any] | None = None
    for node_id, media_type, item in _output_items(outputs):
        if media_type not in ("images", "video", "audio"):
            continue
        enriched = {**item, "nodeId": node_id, "mediaType": media_type}
        if item.get("type") == "output":
            return enriched
        fallback = fallback or enriched
    return fallback


def job_from_history(prompt_id: str, entry: HistoryEntry, *, detail: bool = False) -> JobInfo:
    """A finished prompt's history entry as a job (``detail`` adds outputs and workflow).

    ``success`` is ``completed``; ``error`` is ``cancelled`` when it was interrupted, else
    ``failed`` (as servers with the cancel routes report it)."""
    start: int | None = None
    end: int | None = None
    error: dict[str, Any] | None = None
    interrupted = False
    status = entry.status
    for name, data in status.messages if status is not None else []:
        if name == "execution_start":
            start = data.get("timestamp")
        elif name in _END_EVENTS:
            end = data.get("timestamp")
            if name == "execution_error":
                error = data
            elif name == "execution_interrupted":
                interrupted = True
    state = "completed"
    if status is not None and status.status_str == "error":
        state = "cancelled" if interrupted else "failed"
    extra_data = (
        entry.prompt[3] if len(entry.prompt) > 3 and isinstance(entry.prompt[3], dict) else {}
    )
    number = entry.prompt[0] if entry.prompt and isinstance(entry.prompt[0], (int, float)) else None
    return JobInfo(
        id=prompt_id,
        status=state,
        priority=number,
        create_time=_create_time(extra_data),
        execution_start_time=start,
        execution_end_time=end,
        execution_error=error,
        outputs_count=sum(1 for _ in _output_items(entry.outputs)),
        preview_output=_preview(entry.outputs),
        workflow_id=_workflow_id(extra_data),
        outputs=dict(entry.outputs) if detail else None,
        execution_status=status if detail else None,
        workflow=JobWorkflow(prompt=entry.api_prompt, extra_data=extra_data) if detail else None,
    )


def jobs_from_queue_and_history(
    queue: QueueState,
    history: Mapping[str, HistoryEntry],
    *,
    status: list[str] | None,
    workflow_id: str | None,
    sort_by: str,
    sort_order: str,
    limit: int | None,
    offset: int,
) -> JobList:
    """``GET /api/jobs`` answered from ``/queue`` and ``/history``.

    Servers before the jobs API record no ``create_time``: then ``created_at`` order is the
    order the prompts were queued in (history oldest first, then the running prompt, then the
    pending ones in execution order)."""
    wanted = set(status if status is not None else JOB_STATES)
    chronological: list[JobInfo] = [job_from_history(pid, e) for pid, e in history.items()]
    chronological += [job_from_queue(q, running=True) for q in queue.running]
    chronological += [job_from_queue(q, running=False) for q in queue.pending]
    jobs = [j for j in chronological if j.status in wanted]
    if workflow_id:
        jobs = [j for j in jobs if j.workflow_id == workflow_id]
    if sort_by == "execution_duration":
        jobs.sort(key=lambda j: j.execution_ms or 0)
    elif all(j.create_time is not None for j in jobs):
        jobs.sort(key=lambda j: j.create_time or 0)
    if sort_order == "desc":
        jobs.reverse()
    total = len(jobs)
    page = jobs[offset:]
    if limit is not None:
        page = page[:limit]
    return JobList(
        jobs=page,
        pagination=JobPagination(
            offset=offset, limit=limit, total=total, has_more=offset + len(page) < total
        ),
    )


def history_entry_of(job: JobInfo) -> HistoryEntry | None:
    """The history entry a finished job's detail stands for (``None`` while it is queued or
    running): what the job handles read, whichever route it came from."""
    if job.status not in _FINISHED:
        return None
    workflow = job.workflow or JobWorkflow()
    return HistoryEntry(
        prompt=[job.priority, job.id, workflow.prompt, workflow.extra_data, []],
        outputs=job.outputs or {},
        status=job.execution_status,
    )
