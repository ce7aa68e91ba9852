"""The version of comfykit."""

__version__ = "0.1.0.dev0"
