"""Where downloaded files land: one rule for every ``save()`` and ``download()``.

- A destination that ends with a path separator, that is an existing folder, or that has no
  file extension and does not exist, is a folder (created with its parents); the file keeps its
  own name inside it.
- Any other destination (``cat.png``) is the file's path (its folder is created).
- A name that exists is never overwritten unless asked (``overwrite=True``): the file is written
  under the next free ``name-1.ext``, ``name-2.ext``, ... — except when the existing file already
  holds the same bytes, which is then the answer (a re-run of a fully cached job adds nothing).
- Bytes are written to a hidden temporary file beside the target and moved into place only when
  complete, so a broken download never leaves a half-written file under the real name.
- Every file-system failure is a :class:`~comfykit.FileSaveError` naming the destination the
  caller gave, never the temporary file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO

from comfykit._exceptions import FileSaveError

__all__ = ["FileWriter", "check_writable_dir", "is_folder", "save_bytes", "target_path"]

# mkstemp makes 0600 files; saved files get the mode any new file would (0666 less the umask).
_UMASK = os.umask(0)
os.umask(_UMASK)


def is_folder(dest: str | os.PathLike[str]) -> bool:
    """True when ``dest`` names a folder: a trailing separator, an existing directory, or a
    name with no extension that does not exist yet (nobody means an image called ``out``)."""
    text = os.fspath(dest)
    seps = tuple(s for s in ("/", os.sep, os.altsep) if s)
    path = Path(text)
    return text.endswith(seps) or path.is_dir() or (not path.suffix and not path.exists())


def target_path(dest: str | os.PathLike[str], filename: str) -> Path:
    """The path a file called ``filename`` is written to for the destination ``dest``."""
    if is_folder(dest):
        name = Path(filename).name or "output"
        return Path(dest) / name
    return Path(dest)


def check_writable_dir(directory: str | os.PathLike[str], *, create: bool = True) -> Path:
    """Prove a file can be written in ``directory`` before work that would otherwise be lost
    (the CLI checks ``-o`` before it submits). ``create=False`` only looks: the folder, or the
    nearest part of it that exists, must be a writable folder."""
    path = Path(directory)
    if not create:
        existing = path
        while not existing.exists() and existing.parent != existing:
            existing = existing.parent
        if not existing.is_dir():
            raise FileSaveError(
                f"cannot save to {os.fspath(directory)!r}: Not a directory ({existing} is a file)",
                path=path,
            )
        if not os.access(existing, os.W_OK | os.X_OK):
            raise FileSaveError(
                f"cannot save to {os.fspath(directory)!r}: Permission denied", path=path
            )
        return path
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise _error(path, exc) from exc
    return path


class FileWriter:
    """Writes one file under the save rule: ``write()`` chunks, then ``commit()`` or ``abort()``.

    Args:
        dest: what the caller gave (a folder or a file path); named in every error.
        filename: the file's own name, used when ``dest`` is a folder.
        overwrite: replace an existing file instead of picking a free name.
    """

    def __init__(
        self, dest: str | os.PathLike[str], filename: str, *, overwrite: bool = False
    ) -> None:
        self.dest = dest
        self.path = target_path(dest, filename)
        self.overwrite = overwrite
        self._fh: IO[bytes] | None = None
        self._tmp: Path | None = None

    def open(self) -> FileWriter:
        """Create the folder and the temporary file."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(
                dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".part"
            )
        except OSError as exc:
            raise _error(self.dest, exc) from exc
        self._tmp = Path(tmp)
        self._fh = os.fdopen(fd, "wb")
        with contextlib.suppress(OSError):
            os.chmod(fd, 0o666 & ~_UMASK)
        return self

    def write(self, chunk: bytes) -> None:
        """Append bytes to the temporary file."""
        if self._fh is None:
            self.open()
        assert self._fh is not None
        try:
            self._fh.write(chunk)
        except OSError as exc:
            self.abort()
            raise _error(self.dest, exc) from exc

    def commit(self) -> Path:
        """Move the complete file into place and return where it is."""
        if self._fh is None:
            self.open()
        assert self._fh is not None and self._tmp is not None
        tmp = self._tmp
        try:
            self._fh.close()
            self._fh = None
            if self.overwrite:
                tmp.replace(self.path)
                return self.path
            return _place(tmp, self.path)
        except OSError as exc:
            raise _error(self.dest, exc) from exc
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            self._tmp = None

    def abort(self) -> None:
        """Drop the temporary file (the target is left as it was)."""
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.close()
            self._fh = None
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                self._tmp.unlink(missing_ok=True)
            self._tmp = None


def save_bytes(
    data: bytes, dest: str | os.PathLike[str], filename: str, *, overwrite: bool = False
) -> Path:
    """Write ``data`` under the save rule and return the path written (or found identical)."""
    writer = FileWriter(dest, filename, overwrite=overwrite).open()
    try:
        writer.write(data)
    except BaseException:
        writer.abort()
        raise
    return writer.commit()


def _place(tmp: Path, path: Path) -> Path:
    """Link ``tmp`` to the first free name from ``path`` on (no-clobber, race-free), unless a
    candidate already holds the same bytes."""
    stem, suffix = path.stem, path.suffix
    candidate, n = path, 0
    while True:
        if candidate.exists():
            if _same_content(tmp, candidate):
                return candidate
        else:
            try:
                os.link(tmp, candidate)
                return candidate
            except FileExistsError:
                continue  # another writer took it between the check and the link
            except OSError:
                # No hard links on this file system: a rename after the check is the best left.
                if not candidate.exists():
                    tmp.replace(candidate)
                    return candidate
        n += 1
        candidate = path.with_name(f"{stem}-{n}{suffix}")


def _same_content(a: Path, b: Path) -> bool:
    if not b.is_file() or a.stat().st_size != b.stat().st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            ca, cb = fa.read(1 << 16), fb.read(1 << 16)
            if ca != cb:
                return False
            if not ca:
                return True


def _error(dest: str | os.PathLike[str], exc: OSError) -> FileSaveError:
    reason = exc.strerror or type(exc).__name__
    return FileSaveError(f"cannot save to {os.fspath(dest)!r}: {reason}", path=Path(dest))
