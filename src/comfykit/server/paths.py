"""The one traversal check: every file name and subfolder that comes from outside (clients,
ComfyUI's history and outputs) is checked here before it becomes a path in the storage dir or
is sent to ComfyUI, and every path in the storage dir is resolved (symlinks followed) and must
stay inside it. Also the cleaned display name kept of a client's file name.

Pure standard library: no web framework, no imaging library.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path, PurePath, PurePosixPath

__all__ = [
    "UnsafePathError",
    "check_segment",
    "display_name",
    "resolve_inside",
    "safe_relative_path",
    "scrub_paths",
]

#: Longest path segment most file systems accept (bytes of UTF-8).
MAX_SEGMENT_BYTES = 255
_DRIVE = re.compile(r"^[A-Za-z]:")
#: Characters no file name of ours ever holds: C0/C1 controls, DEL, and the format characters
#: that reorder or hide text (bidi overrides and isolates, zero-width joiners, BOM).
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
_SEG = r"[^\s/\\'\"`:,;()<>\[\]]"
#: An absolute POSIX path of two or more segments (not the path of a URL: no word character,
#: dot, colon or slash right before it), and a Windows path with a drive letter.
_POSIX_PATH = re.compile(rf"(?<![\w.~:/-])/(?:{_SEG}+/)+({_SEG}*)")
_WINDOWS_PATH = re.compile(r"(?<![\w])[A-Za-z]:\\(?:[^\s\\'\"]+\\)*([^\s\\'\"]*)")


class UnsafePathError(ValueError):
    """A name that cannot become a path: ``name`` as given, ``reason`` in words."""

    def __init__(self, name: str, reason: str, *, what: str = "file name") -> None:
        self.name = name
        self.reason = reason
        self.what = what
        super().__init__(f"{what} {name!r} {reason}")


def _hidden(char: str) -> bool:
    return unicodedata.category(char) in _HIDDEN_CATEGORIES


def check_segment(segment: str, *, what: str = "file name") -> str:
    """``segment`` when it is one safe path segment: not empty, not ``.`` or ``..``, no ``/``
    or ``\\``, no drive letter, no NUL or other control or bidi character, at most 255 bytes;
    else :class:`UnsafePathError`."""
    if not isinstance(segment, str) or not segment:
        raise UnsafePathError(str(segment), "is empty", what=what)
    if "\x00" in segment:
        raise UnsafePathError(segment, "holds a NUL character", what=what)
    if "\\" in segment:
        raise UnsafePathError(segment, "holds a backslash", what=what)
    if "/" in segment:
        raise UnsafePathError(segment, "holds a path separator", what=what)
    if segment in (".", ".."):
        raise UnsafePathError(segment, f"is a {segment!r} segment", what=what)
    if _DRIVE.match(segment):
        raise UnsafePathError(segment, "starts with a drive letter", what=what)
    if any(_hidden(c) for c in segment):
        raise UnsafePathError(segment, "holds a control or formatting character", what=what)
    if len(segment.encode("utf-8", "surrogatepass")) > MAX_SEGMENT_BYTES:
        raise UnsafePathError(
            segment[:40] + "...", f"is longer than {MAX_SEGMENT_BYTES} bytes", what=what
        )
    return segment


def safe_relative_path(name: str, subfolder: str = "") -> PurePosixPath:
    """``subfolder/name`` as a relative path, once every part is checked: ``name`` is one
    segment; ``subfolder`` is empty or ``/``-separated segments, not absolute (see
    :func:`check_segment` for what a segment may not hold). :class:`UnsafePathError` names
    the offending part."""
    check_segment(name)
    if not isinstance(subfolder, str):
        raise UnsafePathError(str(subfolder), "is not text", what="subfolder")
    parts: list[str] = []
    if subfolder:
        if subfolder.startswith("/"):
            raise UnsafePathError(subfolder, "is an absolute path", what="subfolder")
        if "\\" in subfolder:
            raise UnsafePathError(subfolder, "holds a backslash", what="subfolder")
        for part in subfolder.split("/"):
            if part == "..":
                raise UnsafePathError(subfolder, "has a '..' segment", what="subfolder")
            check_segment(part, what="subfolder segment")
            parts.append(part)
    return PurePosixPath(*parts, name)


def resolve_inside(
    root: Path, relative: str | PurePath, *, resolved_root: Path | None = None
) -> Path:
    """``root / relative`` resolved (symlinks followed); :class:`UnsafePathError` when the
    result is not inside ``root`` (also resolved; ``resolved_root`` when the caller has it
    already): a ``..``, an absolute part, or a symlink that points out of it."""
    base = resolved_root if resolved_root is not None else root.resolve()
    rel = PurePosixPath(relative) if isinstance(relative, str) else relative
    if rel.is_absolute() or _DRIVE.match(str(rel)):
        raise UnsafePathError(str(relative), "is an absolute path", what="path")
    target = (base / rel).resolve()
    if not target.is_relative_to(base):
        raise UnsafePathError(
            str(relative), "leads out of the storage dir (a '..' or a symlink)", what="path"
        )
    return target


def display_name(name: str, *, default: str = "upload", limit: int = 120) -> str:
    """A client's file name as a harmless label: its last part only (``/`` and ``\\`` both
    separate), NFC-normalised, without NUL, controls, bidi overrides or other invisible
    characters, without leading dots and spaces, at most ``limit`` characters; ``default``
    when nothing is left. Never used as a path."""
    text = unicodedata.normalize("NFC", str(name))
    text = text.replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(c for c in text if not _hidden(c) and not 0xD800 <= ord(c) <= 0xDFFF)
    text = text.strip().lstrip(". ").strip()
    if len(text) > limit:
        stem, dot, ext = text.rpartition(".")
        if dot and 0 < len(ext) <= 10 and stem:
            text = stem[: limit - len(ext) - 1] + "." + ext
        else:
            text = text[:limit]
    return text or default


def scrub_paths(text: str) -> str:
    """``text`` (a message from elsewhere: ComfyUI, the file system) with every absolute file
    path cut down to its last part (``/root/models/x.ckpt`` → ``.../x.ckpt``), so that no
    server path reaches a response."""
    text = _POSIX_PATH.sub(lambda m: ".../" + m.group(1), text)
    return _WINDOWS_PATH.sub(lambda m: "...\\" + m.group(1), text)
