"""The client, async first: ``comfykit._sync`` is generated from this package."""
