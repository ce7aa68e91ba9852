"""pytest plugin: a session-wide real ComfyUI server and per-test helpers.

Enable it with ``pytest_plugins = ["comfykit.testing.pytest_plugin"]`` in ``conftest.py``.

Fixtures:
    comfyui_server: the session's :class:`ComfyUIServer` (``None`` with ``--comfyui-url``).
    comfyui_url: the base URL of the server the integration tests talk to.
    comfyui_client_id: a fresh client id for each test.

Options: ``--comfyui-url URL`` (or ``$COMFYUI_URL``) runs against an existing server instead of
starting one. When the harness cannot start a server the integration tests are skipped, except
under ``CI=true`` (or ``--comfyui-required``), where that is an error.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Generator, Iterator

import pytest

from comfykit.testing._server import ComfyUIServer

_SERVER_KEY = pytest.StashKey["ComfyUIServer | None"]()
_LOG_MARK = pytest.StashKey[int]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("comfykit")
    group.addoption(
        "--comfyui-url",
        default=os.environ.get("COMFYUI_URL") or None,
        help="run integration tests against this ComfyUI instead of starting one "
        "(default: $COMFYUI_URL)",
    )
    group.addoption(
        "--comfyui-required",
        action="store_true",
        default=os.environ.get("CI", "").lower() in ("1", "true", "yes"),
        help="fail (instead of skip) when no ComfyUI server can be started (default under CI)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "integration: needs a real ComfyUI server")


@pytest.fixture(scope="session")
def comfyui_server(request: pytest.FixtureRequest) -> Iterator[ComfyUIServer | None]:
    """The session's real ComfyUI server (``None`` when ``--comfyui-url`` is given)."""
    config = request.config
    if config.getoption("--comfyui-url"):
        yield None
        return
    server = ComfyUIServer(preview_method="latent2rgb")
    try:
        server.start()
    except Exception as exc:  # the harness could not start: skip locally, fail in CI
        if config.getoption("--comfyui-required"):
            pytest.fail(f"could not start the ComfyUI test server: {exc}", pytrace=False)
        pytest.skip(f"could not start the ComfyUI test server: {exc}")
    config.stash[_SERVER_KEY] = server
    try:
        yield server
    finally:
        config.stash[_SERVER_KEY] = None
        server.stop()


@pytest.fixture(scope="session")
def comfyui_url(request: pytest.FixtureRequest, comfyui_server: ComfyUIServer | None) -> str:
    """Base URL of the ComfyUI the integration tests use."""
    if comfyui_server is not None:
        return comfyui_server.url
    return str(request.config.getoption("--comfyui-url")).rstrip("/")


@pytest.fixture
def comfyui_client_id() -> str:
    """A fresh WebSocket client id for one test."""
    return f"comfykit-test-{uuid.uuid4().hex}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    server = item.config.stash.get(_SERVER_KEY, None)
    if server is not None:
        item.stash[_LOG_MARK] = server.log_size()
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if not report.failed:
        return
    server = item.config.stash.get(_SERVER_KEY, None)
    if server is None:
        return
    mark = item.stash.get(_LOG_MARK, 0)
    text = server.log_text(mark)
    if text.strip():
        lines = text.splitlines()[-200:]
        report.sections.append((f"ComfyUI server log ({call.when})", "\n".join(lines)))
