"""The comfykit REST service (extra ``comfykit[server]``): a FastAPI app in front of ComfyUI,
with a durable job store, built on the SDK.

* :func:`create_app` — the standalone app (``comfykit serve`` runs it with uvicorn);
* :func:`create_router` — the same routes for an existing FastAPI app, with a lifespan of
  their own (:func:`lifespan` runs it by hand);
* :class:`Settings` — every option, also read from ``COMFYKIT_*`` environment variables.
"""

from comfykit.server.app import create_app, create_router, lifespan, state_of
from comfykit.server.settings import Settings

__all__ = ["Settings", "create_app", "create_router", "lifespan", "state_of"]
