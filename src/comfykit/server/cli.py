"""``comfykit serve``: run the standalone service with uvicorn (its flags are declared in
:mod:`comfykit.cli`, which imports this module only when ``serve`` runs).

Flags win over ``COMFYKIT_*`` environment variables, which win over the defaults.
``--local`` first starts the local CPU ComfyUI of :mod:`comfykit.testing` (built once and
cached), so the service can be tried with nothing else installed.
"""

from __future__ import annotations

import argparse
import copy
import sys
from typing import Any

__all__ = ["keys", "log_config", "serve", "worker"]


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if getattr(args, "comfyui_url", None):
        values["comfyui_urls"] = list(args.comfyui_url)
    names = (
        "host", "port", "database_url", "storage_dir", "data_dir", "retention_days", "auth",
        "insecure_no_auth",
    )  # fmt: skip
    for name in names:
        value = getattr(args, name, None)
        if value is not None:
            values[name] = value
    return values


def log_config() -> dict[str, Any]:
    """The logging of ``comfykit serve`` (a ``dictConfig``): uvicorn's own, plus the service's
    loggers as one line per message on stderr (the access log's lines are JSON); every
    handler redacts keys, tokens and secrets (:class:`~comfykit.server.redact.RedactingFilter`).
    """
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"redact": {"()": "comfykit.server.redact.RedactingFilter"}}
    config["formatters"]["comfykit"] = {"format": "%(message)s"}
    config["handlers"]["comfykit"] = {
        "class": "logging.StreamHandler",
        "formatter": "comfykit",
        "stream": "ext://sys.stderr",
    }
    for handler in config["handlers"].values():
        handler["filters"] = ["redact"]
    config["loggers"]["comfykit.server"] = {"handlers": ["comfykit"], "level": "INFO"}
    config["disable_existing_loggers"] = False
    return config


def serve(args: argparse.Namespace) -> int:
    """Run the service until interrupted; the exit code."""
    import uvicorn

    from comfykit.server import Settings, create_app

    overrides = _overrides(args)
    local = None
    if args.local:
        from comfykit.testing import ComfyUIServer

        local = ComfyUIServer()
        sys.stderr.write("starting the local CPU ComfyUI (the first time builds it) ...\n")
        local.start()
        overrides["comfyui_urls"] = [local.url]
    try:
        settings = Settings(**overrides)
        problem = settings.exposure_problem()
        if problem is not None:
            sys.stderr.write(f"comfykit serve: {problem}\n")
            return 2
        app = create_app(settings)
        uvicorn.run(
            app, host=settings.host, port=settings.port, log_level="info", access_log=False,
            log_config=log_config(),
            # longer than a proxy keeps idle connections to us (nginx: 60 s), so that the
            # proxy never sends a request on a connection we are closing (a 502 for a POST)
            timeout_keep_alive=75,
        )  # fmt: skip
    finally:
        if local is not None:
            local.stop()
    return 0


def worker(args: argparse.Namespace) -> int:
    """``comfykit worker``: run jobs (the dispatcher and the webhook sender) without HTTP, for
    deployments whose API replicas run with ``COMFYKIT_DISPATCH=false``. Stops on SIGTERM or
    SIGINT (its jobs stay leased; another worker takes them over when the lease lapses)."""
    import asyncio
    import logging.config
    import signal

    from comfykit.server import Settings
    from comfykit.server.state import ServiceState

    logging.config.dictConfig(log_config())
    settings = Settings(**_overrides(args), dispatch=True)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with ServiceState(settings).running() as state:
            sys.stderr.write(
                f"comfykit worker {state.dispatcher.replica_id}: running jobs on "
                f"{', '.join(settings.comfyui_urls)}\n"
            )
            await stop.wait()

    asyncio.run(run())
    return 0


def keys(args: argparse.Namespace) -> int:
    """``comfykit keys create|list|revoke``: the exit code."""
    import asyncio
    import json

    from comfykit.server import Settings
    from comfykit.server.errors import ServiceError
    from comfykit.server.services.keys import KeyService
    from comfykit.server.store import Store

    settings = Settings(**_overrides(args))

    async def run() -> int:
        store = Store(settings.database_url)
        await store.open()
        try:
            service = KeyService(store)
            if args.keys_command == "create":
                created = await service.create(args.name, args.role, args.owner)
                if args.json:
                    sys.stdout.write(created.model_dump_json(indent=2) + "\n")
                else:
                    sys.stdout.write(created.key + "\n")
                    sys.stderr.write(
                        f"created key {created.key_id} ({created.name}, role {created.role}, "
                        f"owner {created.owner}); it is shown this once: keep it now\n"
                    )
            elif args.keys_command == "list":
                listed = await service.list()
                if args.json:
                    rows = [k.model_dump(mode="json") for k in listed]
                    sys.stdout.write(json.dumps(rows, indent=2) + "\n")
                for k in [] if args.json else listed:
                    state = "revoked" if k.revoked_at else "active"
                    used = k.last_used_at.isoformat(timespec="seconds") if k.last_used_at else "-"
                    sys.stdout.write(
                        f"{k.key_id}  {k.prefix}...  {k.role:<5}  {state:<7}  owner={k.owner}  "
                        f"name={k.name}  last used {used}\n"
                    )
            else:
                revoked = await service.revoke(args.key_id)
                sys.stderr.write(f"revoked key {revoked.key_id} ({revoked.name})\n")
            return 0
        except ServiceError as exc:
            sys.stderr.write(f"comfykit keys: {exc.message}\n")
            return 2
        finally:
            await store.close()

    return asyncio.run(run())
