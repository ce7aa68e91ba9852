"""Shared fixtures: the real ComfyUI harness comes from comfykit's own pytest plugin."""

from __future__ import annotations

import pytest

pytest_plugins = ["comfykit.testing.pytest_plugin"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests under tests/integration are marked ``integration``, the rest ``unit``."""
    for item in items:
        path = str(item.path)
        if "/integration/" in path:
            item.add_marker(pytest.mark.integration)
        elif "/unit/" in path:
            item.add_marker(pytest.mark.unit)
