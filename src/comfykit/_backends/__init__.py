"""Hand-written I/O backends, one per client tree (the way httpcore keeps ``_backends/``).

``_async`` imports :mod:`comfykit._backends.asyncio` as ``backend``; ``scripts/unasync.py`` maps
that one import to :mod:`comfykit._backends.sync` when it generates ``_sync``. Both modules offer
the same names. :mod:`~comfykit._backends.blocking_ws` (the sync client's WebSocket) and
:mod:`~comfykit._backends.guarded_pool` (its thread-safe HTTP pool) serve the sync backend.
"""
