"""Hand-written I/O backends, one per client tree (the way httpcore keeps ``_backends/``).

``_async`` imports :mod:`comfykit._backends.asyncio` as ``backend``; ``scripts/unasync.py`` maps
that one import to :mod:`comfykit._backends.sync` when it generates ``_sync``. Both modules offer
the same names (:data:`INTERFACE`). :mod:`~comfykit._backends.blocking_ws` (the sync client's
WebSocket) and :mod:`~comfykit._backends.guarded_pool` (its thread-safe HTTP pool) serve the sync
backend.
"""

#: What each backend module offers the client code (``tests/unit/test_backend.py`` checks both).
INTERFACE = (
    "READER_IDLE",
    "READER_POLL",
    "READER_STEPS_ASIDE",
    "Background",
    "Cancelled",
    "Lock",
    "Mutex",
    "Signal",
    "WebSocket",
    "blocking_fetch",
    "deadline_scope",
    "event_loop",
    "guard_http_pool",
    "loop_is_running",
    "per_call_timeout",
    "run_detached",
    "monotonic",
    "open_websocket",
    "prefetch",
    "sleep",
)
