"""comfykit: the typed Python SDK for ComfyUI."""

from comfykit._version import __version__

__all__ = ["__version__"]
