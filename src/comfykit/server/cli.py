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

__all__ = ["serve"]


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if args.comfyui_url:
        values["comfyui_urls"] = list(args.comfyui_url)
    for name in ("host", "port", "database_url", "storage_dir", "data_dir", "retention_days"):
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
        app = create_app(settings)
        uvicorn.run(
            app, host=settings.host, port=settings.port, log_level="info", access_log=False,
            log_config=log_config(),
        )  # fmt: skip
    finally:
        if local is not None:
            local.stop()
    return 0
