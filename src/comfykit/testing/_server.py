"""Start and stop a real ComfyUI server on the CPU, for tests, demos and benchmarks."""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from comfykit.testing._env import CHECKPOINT_NAME, ComfyUIEnv, ensure_comfyui_env
from comfykit.testing._managed import Managed

__all__ = ["ComfyUIServer", "ComfyUIStartError", "comfyui_url_or_local", "free_port"]

_LIVE: weakref.WeakSet[ComfyUIServer] = weakref.WeakSet()


class ComfyUIStartError(RuntimeError):
    """The ComfyUI process exited or did not answer within the start-up timeout."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _check_cpus(cpus: Iterable[int] | None) -> frozenset[int] | None:
    """The CPU set for the server's affinity, or a ``ValueError`` naming what is wrong with it."""
    if cpus is None:
        return None
    chosen = frozenset(cpus)
    if not chosen:
        raise ValueError("cpus: give at least one CPU number, or None for no pinning")
    if not hasattr(os, "sched_getaffinity"):
        raise ValueError(f"cpus={sorted(chosen)}: pinning needs Linux (os.sched_setaffinity)")
    available = os.sched_getaffinity(0)
    missing = chosen - available
    if missing:
        raise ValueError(
            f"cpus: {sorted(missing)} not available to this process"
            f" (available: {sorted(available)})"
        )
    return chosen


def _child_setup(cpus: frozenset[int] | None) -> None:  # pragma: no cover - runs in the child
    """Between fork and exec: pin the server to ``cpus`` (its threads inherit it), and ask
    Linux to SIGTERM it if the process that started it dies (no orphans)."""
    os.setsid()
    if cpus is not None:
        os.sched_setaffinity(0, cpus)
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class ComfyUIServer(Managed):
    """A ComfyUI process with a private base directory.

    ``with ComfyUIServer() as server: ...`` builds the environment if needed, starts
    ``main.py --cpu`` on a free loopback port, links ComfyUI's test node pack and the
    random-weight checkpoint into a fresh base directory, waits until ``/system_stats``
    answers, and stops the process (and removes the temporary directory) on exit.

    Args:
        env: the installation to run; built or reused by :func:`ensure_comfyui_env` when omitted.
        base_dir: the ``--base-directory``; a temporary one (removed on stop) when omitted.
        port: the port; a free one when omitted.
        preview_method: ``--preview-method`` (``"latent2rgb"`` gives preview frames on the CPU).
        test_nodes: link ComfyUI's ``testing-pack`` custom nodes (TestSleep, TestSyncError, ...).
        checkpoint: link the random-weight SD1.5 checkpoint into ``models/checkpoints``.
        extra_args: more command-line flags for ``main.py``.
        startup_timeout: seconds to wait for the server to answer.
        cpus: pin the server (every thread of it) to these CPU numbers (Linux), e.g. ``{0}``
            to keep it off the cores a benchmark's client runs on; ``None`` (the default)
            leaves placement to the OS. ``ValueError`` if a CPU is not available.
    """

    def __init__(
        self,
        env: ComfyUIEnv | None = None,
        *,
        base_dir: Path | str | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        preview_method: str | None = None,
        test_nodes: bool = True,
        checkpoint: bool = True,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 180.0,
        cpus: Iterable[int] | None = None,
    ) -> None:
        self.cpus = _check_cpus(cpus)
        self._env = env
        self._own_base = base_dir is None
        self.base_dir = Path(base_dir) if base_dir is not None else None
        self.host = host
        self.port = port or free_port(host)
        self.preview_method = preview_method
        self.test_nodes = test_nodes
        self.checkpoint = checkpoint
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None
        self._log_file: object = None

    @property
    def env(self) -> ComfyUIEnv:
        """The installation this server runs from."""
        if self._env is None:
            self._env = ensure_comfyui_env()
        return self._env

    @property
    def url(self) -> str:
        """The server's base URL, e.g. ``http://127.0.0.1:41234``."""
        return f"http://{self.host}:{self.port}"

    @property
    def input_dir(self) -> Path:
        """ComfyUI's input folder (uploads land here)."""
        return self._base / "input"

    @property
    def output_dir(self) -> Path:
        """ComfyUI's output folder (SaveImage writes here)."""
        return self._base / "output"

    @property
    def _base(self) -> Path:
        if self.base_dir is None:
            raise RuntimeError("the server has not been started")
        return self.base_dir

    def is_running(self) -> bool:
        """True while the process is alive."""
        return self.process is not None and self.process.poll() is None

    def _prepare_base(self) -> Path:
        if self.base_dir is None:
            self.base_dir = Path(tempfile.mkdtemp(prefix="comfykit-comfyui-"))
        base = self.base_dir
        for sub in ("input", "output", "temp", "user", "custom_nodes", "models/checkpoints"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        if self.test_nodes:
            link = base / "custom_nodes" / "testing-pack"
            if not link.exists():
                link.symlink_to(self.env.test_nodes, target_is_directory=True)
        if self.checkpoint:
            link = base / "models" / "checkpoints" / CHECKPOINT_NAME
            if not link.exists():
                link.symlink_to(self.env.checkpoint)
        return base

    def command(self) -> list[str]:
        """The command line that starts the server."""
        cmd = [
            str(self.env.python),
            "main.py",
            "--cpu",
            "--listen",
            self.host,
            "--port",
            str(self.port),
            "--base-directory",
            str(self._base),
            "--disable-auto-launch",
            "--database-url",
            f"sqlite:///{self._base / 'user' / 'comfyui.db'}",
        ]
        if self.preview_method:
            cmd += ["--preview-method", self.preview_method]
        return cmd + self.extra_args

    def start(self) -> ComfyUIServer:
        """Start the process and wait until it answers; raise :class:`ComfyUIStartError` if not."""
        if self.is_running():
            return self
        base = self._prepare_base()
        self.log_path = base / "comfyui.log"
        if self._log_file is not None:  # started again after kill(): one log file handle
            self._log_file.close()  # type: ignore[attr-defined]
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log_file = log
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        env["PYTHONUNBUFFERED"] = "1"
        self.process = subprocess.Popen(
            self.command(),
            cwd=str(self.env.source_dir),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            preexec_fn=(  # noqa: PLW1509
                functools.partial(_child_setup, self.cpus)
                if sys.platform.startswith("linux")
                else None
            ),
            start_new_session=not sys.platform.startswith("linux"),
        )
        _LIVE.add(self)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        probe = f"{self.url}/system_stats"
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise ComfyUIStartError(
                    f"ComfyUI exited with code {self.process.returncode} during start-up:\n"
                    f"{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(probe, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                raise ComfyUIStartError(
                    f"ComfyUI did not answer on {probe} within {self.startup_timeout:.0f} s:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.2)

    def log_text(self, offset: int = 0) -> str:
        """The server's log from byte ``offset`` on."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as fh:
            fh.seek(offset)
            return fh.read().decode("utf-8", "replace")

    def log_size(self) -> int:
        """The current size of the log in bytes (a mark for :meth:`log_text`)."""
        if self.log_path is None or not self.log_path.exists():
            return 0
        return self.log_path.stat().st_size

    def log_tail(self, lines: int = 60) -> str:
        """The last ``lines`` lines of the server's log."""
        return "\n".join(self.log_text().splitlines()[-lines:])

    def kill(self) -> None:
        """Kill the process at once (SIGKILL), as a crash would; the base directory is kept."""
        if self.process is not None and self.process.poll() is None:
            self._signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the process (SIGTERM, then SIGKILL) and remove a temporary base directory."""
        proc = self.process
        if proc is not None and proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                proc.wait(timeout=30)
        if self._log_file is not None:
            self._log_file.close()  # type: ignore[attr-defined]
            self._log_file = None
        _LIVE.discard(self)
        if self._own_base and self.base_dir is not None and proc is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None

    def restart(self) -> None:
        """Stop the process and start a new one on the same port and base directory."""
        own = self._own_base
        self._own_base = False
        try:
            self.stop()
        finally:
            self._own_base = own
        self.start()

    def _signal(self, sig: int) -> None:
        assert self.process is not None
        try:
            os.killpg(self.process.pid, sig)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<ComfyUIServer {self.url} {state}>"


@contextlib.contextmanager
def comfyui_url_or_local(**server_options: Any) -> Iterator[str]:
    """``$COMFYUI_URL`` when it is set; otherwise a local CPU ComfyUI, started for the duration.

    The local server's checkpoint has random weights (its pictures are noise); it exists so that
    examples and demos run anywhere. ``server_options`` go to :class:`ComfyUIServer`.
    """
    url = os.environ.get("COMFYUI_URL")
    if url:
        yield url
        return
    sys.stderr.write(
        "COMFYUI_URL is not set: starting a local CPU ComfyUI (random-weight checkpoint)...\n"
    )
    with ComfyUIServer(**server_options) as server:
        yield server.url


@atexit.register
def _stop_all() -> None:
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.stop(timeout=5)
