"""Comfy API v2 (``/api/v2``): the HTTP contract of Comfy Cloud and of Comfy Org's ``comfy-sdk``,
served over the service's own store, jobs, dispatcher and auth.

* :mod:`~comfykit.server.v2.models` — the contract's schemas;
* :mod:`~comfykit.server.v2.errors` — its error envelope and codes;
* :mod:`~comfykit.server.v2.assets` — assets over the service's blobs;
* :mod:`~comfykit.server.v2.jobs` — submission, the job view, cancel, the event stream;
* :mod:`~comfykit.server.v2.routes` — the thin routes.
"""
