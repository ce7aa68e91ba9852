"""comfykit: the typed Python SDK for ComfyUI.

``AsyncComfyClient`` and ``ComfyClient`` (its blocking twin) cover every ComfyUI route and
WebSocket event; ``submit()`` returns a job whose ``result()`` holds the outputs.
``AsyncComfyPool`` / ``ComfyPool`` put several servers behind the same calls.

Public names are loaded on first use (PEP 562), so ``import comfykit`` stays cheap; importing a
name loads what it needs. FastAPI, PIL and torch are never imported by either.

Public classes show as ``comfykit.Name`` (in reprs, tracebacks and pickles, as httpx's do): each
first use of a public name gives every public class loaded by then ``__module__ = "comfykit"``.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any

from comfykit._version import __version__

if TYPE_CHECKING:
    from comfykit._async.client import AsyncComfyClient
    from comfykit._async.jobs import AsyncJob
    from comfykit._async.pool import AsyncComfyPool
    from comfykit._async.pool_jobs import AsyncPoolJob
    from comfykit._async.results import AsyncOutputFile, AsyncResult
    from comfykit._balance import ServerState, ServerStatus
    from comfykit._config import DEFAULT_TIMEOUT, DEFAULT_URL, NOT_GIVEN, NotGiven
    from comfykit._exceptions import (
        APIStatusError,
        AssetsUnavailableError,
        ComfyConnectionError,
        ComfyError,
        ComfyTimeoutError,
        EventLoopError,
        ExecutionError,
        FileSaveError,
        InputError,
        JobError,
        JobInterrupted,
        JobLost,
        JobTimeoutError,
        NodeProblem,
        NodeValidationError,
        NoServerAvailable,
        NotFoundError,
        PromptValidationError,
        ServerError,
        UnsupportedOperationError,
        WorkflowError,
        WorkflowProblem,
    )
    from comfykit._protocol.events import (
        Event,
        Executed,
        Executing,
        ExecutionCached,
        ExecutionErrorEvent,
        ExecutionInterrupted,
        ExecutionStart,
        ExecutionSuccess,
        FeatureFlags,
        Logs,
        NodeProgress,
        PreviewImage,
        Progress,
        ProgressState,
        ProgressText,
        Status,
        UnknownBinary,
        UnknownEvent,
    )
    from comfykit._protocol.tracker import JobStatus
    from comfykit._sync.client import ComfyClient
    from comfykit._sync.jobs import Job
    from comfykit._sync.pool import ComfyPool
    from comfykit._sync.pool_jobs import PoolJob
    from comfykit._sync.results import OutputFile, Result
    from comfykit._types import (
        Asset,
        AssetCreated,
        AssetList,
        AssetTag,
        AssetTagList,
        AssetTagsAdded,
        AssetTagsRemoved,
        DeviceInfo,
        Features,
        FileRef,
        HistoryEntry,
        HistoryStatus,
        JobInfo,
        JobList,
        JobPagination,
        JobState,
        JobWorkflow,
        PromptResponse,
        QueueItem,
        QueueState,
        ServerCapabilities,
        SystemInfo,
        SystemStats,
        UploadedFile,
    )
    from comfykit.generation import (
        BatchItem,
        BatchResult,
        GenerationRequest,
        GenerationResult,
    )
    from comfykit.graph import NodeCatalog, NodeOutput, Param, Workflow

_LAZY: dict[str, str] = {
    "BatchItem": "comfykit._images",
    "BatchResult": "comfykit._images",
    "GenerationRequest": "comfykit.generation",
    "GenerationResult": "comfykit._images",
    "NodeCatalog": "comfykit.graph",
    "NodeOutput": "comfykit.graph",
    "Param": "comfykit.graph",
    "Workflow": "comfykit.graph",
    "APIStatusError": "comfykit._exceptions",
    "Asset": "comfykit._types",
    "AssetCreated": "comfykit._types",
    "AssetList": "comfykit._types",
    "AssetTag": "comfykit._types",
    "AssetTagList": "comfykit._types",
    "AssetTagsAdded": "comfykit._types",
    "AssetTagsRemoved": "comfykit._types",
    "AssetsUnavailableError": "comfykit._exceptions",
    "AsyncComfyClient": "comfykit._async.client",
    "AsyncComfyPool": "comfykit._async.pool",
    "AsyncJob": "comfykit._async.jobs",
    "AsyncPoolJob": "comfykit._async.pool_jobs",
    "AsyncOutputFile": "comfykit._async.results",
    "AsyncResult": "comfykit._async.results",
    "ComfyClient": "comfykit._sync.client",
    "ComfyConnectionError": "comfykit._exceptions",
    "ComfyPool": "comfykit._sync.pool",
    "ComfyError": "comfykit._exceptions",
    "ComfyTimeoutError": "comfykit._exceptions",
    "DEFAULT_TIMEOUT": "comfykit._config",
    "DEFAULT_URL": "comfykit._config",
    "DeviceInfo": "comfykit._types",
    "Event": "comfykit._protocol.events",
    "EventLoopError": "comfykit._exceptions",
    "Executed": "comfykit._protocol.events",
    "Executing": "comfykit._protocol.events",
    "ExecutionCached": "comfykit._protocol.events",
    "ExecutionError": "comfykit._exceptions",
    "FileSaveError": "comfykit._exceptions",
    "ExecutionErrorEvent": "comfykit._protocol.events",
    "ExecutionInterrupted": "comfykit._protocol.events",
    "ExecutionStart": "comfykit._protocol.events",
    "ExecutionSuccess": "comfykit._protocol.events",
    "FeatureFlags": "comfykit._protocol.events",
    "Features": "comfykit._types",
    "FileRef": "comfykit._types",
    "HistoryEntry": "comfykit._types",
    "HistoryStatus": "comfykit._types",
    "InputError": "comfykit._exceptions",
    "Job": "comfykit._sync.jobs",
    "JobError": "comfykit._exceptions",
    "JobInfo": "comfykit._types",
    "JobList": "comfykit._types",
    "JobPagination": "comfykit._types",
    "JobState": "comfykit._types",
    "JobWorkflow": "comfykit._types",
    "JobInterrupted": "comfykit._exceptions",
    "JobLost": "comfykit._exceptions",
    "JobStatus": "comfykit._protocol.tracker",
    "Logs": "comfykit._protocol.events",
    "NOT_GIVEN": "comfykit._config",
    "NodeProgress": "comfykit._protocol.events",
    "JobTimeoutError": "comfykit._exceptions",
    "NoServerAvailable": "comfykit._exceptions",
    "NodeProblem": "comfykit._exceptions",
    "PoolJob": "comfykit._sync.pool_jobs",
    "ServerState": "comfykit._balance",
    "ServerStatus": "comfykit._balance",
    "NodeValidationError": "comfykit._exceptions",
    "NotFoundError": "comfykit._exceptions",
    "NotGiven": "comfykit._config",
    "OutputFile": "comfykit._sync.results",
    "PreviewImage": "comfykit._protocol.events",
    "Progress": "comfykit._protocol.events",
    "ProgressState": "comfykit._protocol.events",
    "ProgressText": "comfykit._protocol.events",
    "PromptResponse": "comfykit._types",
    "PromptValidationError": "comfykit._exceptions",
    "QueueItem": "comfykit._types",
    "QueueState": "comfykit._types",
    "Result": "comfykit._sync.results",
    "ServerCapabilities": "comfykit._types",
    "ServerError": "comfykit._exceptions",
    "Status": "comfykit._protocol.events",
    "SystemInfo": "comfykit._types",
    "SystemStats": "comfykit._types",
    "UnknownBinary": "comfykit._protocol.events",
    "UnknownEvent": "comfykit._protocol.events",
    "UnsupportedOperationError": "comfykit._exceptions",
    "UploadedFile": "comfykit._types",
    "WorkflowError": "comfykit._exceptions",
    "WorkflowProblem": "comfykit._exceptions",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'comfykit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    _show_public_paths()
    return value


def _show_public_paths() -> None:
    """``__module__ = "comfykit"`` for every public class whose module is loaded.

    Not only ``name``'s: loading one name loads others (the client loads the exceptions), and a
    traceback should say ``comfykit.JobLost`` before anybody spelled that name. Pickles then name
    ``comfykit.X``, which this module resolves; pydantic and dataclasses keep the namespace they
    were defined in.
    """
    for public, module in _LAZY.items():
        loaded = sys.modules.get(module)
        value = getattr(loaded, public, None)
        if isinstance(value, type) and value.__module__.startswith("comfykit."):
            value.__module__ = "comfykit"


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "DEFAULT_TIMEOUT",
    "DEFAULT_URL",
    "NOT_GIVEN",
    "APIStatusError",
    "Asset",
    "AssetCreated",
    "AssetList",
    "AssetTag",
    "AssetTagList",
    "AssetTagsAdded",
    "AssetTagsRemoved",
    "AssetsUnavailableError",
    "AsyncComfyClient",
    "AsyncComfyPool",
    "AsyncJob",
    "AsyncOutputFile",
    "AsyncPoolJob",
    "AsyncResult",
    "BatchItem",
    "BatchResult",
    "ComfyClient",
    "ComfyConnectionError",
    "ComfyError",
    "ComfyPool",
    "ComfyTimeoutError",
    "DeviceInfo",
    "Event",
    "EventLoopError",
    "Executed",
    "Executing",
    "ExecutionCached",
    "ExecutionError",
    "ExecutionErrorEvent",
    "ExecutionInterrupted",
    "ExecutionStart",
    "ExecutionSuccess",
    "FeatureFlags",
    "Features",
    "FileRef",
    "FileSaveError",
    "GenerationRequest",
    "GenerationResult",
    "HistoryEntry",
    "HistoryStatus",
    "InputError",
    "Job",
    "JobError",
    "JobInfo",
    "JobInterrupted",
    "JobList",
    "JobLost",
    "JobPagination",
    "JobState",
    "JobStatus",
    "JobTimeoutError",
    "JobWorkflow",
    "Logs",
    "NoServerAvailable",
    "NodeCatalog",
    "NodeOutput",
    "NodeProblem",
    "NodeProgress",
    "NodeValidationError",
    "NotFoundError",
    "NotGiven",
    "OutputFile",
    "Param",
    "PoolJob",
    "PreviewImage",
    "Progress",
    "ProgressState",
    "ProgressText",
    "PromptResponse",
    "PromptValidationError",
    "QueueItem",
    "QueueState",
    "Result",
    "ServerCapabilities",
    "ServerError",
    "ServerState",
    "ServerStatus",
    "Status",
    "SystemInfo",
    "SystemStats",
    "UnknownBinary",
    "UnknownEvent",
    "UnsupportedOperationError",
    "UploadedFile",
    "Workflow",
    "WorkflowError",
    "WorkflowProblem",
    "__version__",
]
