# Generated from comfykit/_async by scripts/unasync.py. Do not edit: edit _async instead.
"""The client, async first: ``comfykit._sync`` is generated from this package."""
