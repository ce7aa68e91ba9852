"""Turning what users pass to ``upload_image`` into bytes and a file name (no I/O to the server)."""

from __future__ import annotations

import io
import json
import mimetypes
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Union

from comfykit._exceptions import InputError
from comfykit._types import FileRef

__all__ = [
    "UPLOAD_TYPES",
    "FileInput",
    "check_image",
    "file_ref",
    "read_file_input",
    "read_upload",
    "upload_form",
]

UPLOAD_TYPES = ("input", "temp", "output")

#: bytes, a path, a binary file object, or a PIL image.
FileInput = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]", IO[bytes], Any]


def read_upload(
    data: FileInput, filename: str | None, *, argument: str = "data_or_path"
) -> tuple[bytes, str]:
    """Return the bytes to upload and the file name to store them under.

    The content must be an image Pillow can read (its header is decoded here, so a text file
    named ``.png`` is refused before anything is sent); errors name ``argument``.
    """
    content, name, what = read_file_input(data, filename, argument=argument)
    check_image(content, f"{argument}: {what}")
    return content, name


def read_file_input(
    data: FileInput, filename: str | None, *, argument: str = "data_or_path"
) -> tuple[bytes, str, str]:
    """The bytes of any file (bytes, a path, a binary file object or a PIL image), the plain
    file name to store them under, and how errors should speak of it; errors name
    ``argument``. Empty content is refused."""
    what = "the bytes given"
    if isinstance(data, (bytes, bytearray, memoryview)):
        content = bytes(data)
        name = filename or f"comfykit-{uuid.uuid4().hex[:12]}{_sniff_ext(content)}"
    elif isinstance(data, (str, os.PathLike)):
        path = Path(data)
        if not path.is_file():
            raise InputError(f"{argument}: no such file: {path}")
        try:
            content = path.read_bytes()
        except OSError as exc:
            raise InputError(f"{argument}: cannot read {path}: {exc.strerror or exc}") from exc
        name = filename or path.name
        what = str(path)
    elif hasattr(data, "save") and hasattr(data, "mode") and hasattr(data, "size"):
        buf = io.BytesIO()
        data.save(buf, format="PNG")
        content = buf.getvalue()
        name = filename or f"comfykit-{uuid.uuid4().hex[:12]}.png"
    elif hasattr(data, "read"):
        raw = data.read()
        if not isinstance(raw, (bytes, bytearray)):
            raise InputError(f"{argument}: file objects must be opened in binary mode")
        content = bytes(raw)
        fallback = Path(str(getattr(data, "name", ""))).name or None
        name = filename or fallback or f"comfykit-{uuid.uuid4().hex[:12]}{_sniff_ext(content)}"
        what = fallback or "the file object given"
    else:
        raise InputError(
            f"{argument}: expected bytes, a path, a binary file or a PIL image, "
            f"not {type(data).__name__}"
        )
    if not content:
        raise InputError(f"{argument}: {what} is empty")
    if "/" in name or "\\" in name or name in ("", ".", ".."):
        raise InputError(f"filename must be a plain name (use subfolder=), got {name!r}")
    return content, name, what


def check_image(content: bytes, what: str) -> None:
    """Raise :class:`~comfykit.InputError` unless Pillow can read ``content``'s image header."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(content)) as img:
            img.size  # noqa: B018 - the header is parsed by open(); size proves it
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        kind = (
            "not an image Pillow can read"
            if isinstance(exc, UnidentifiedImageError)
            else (f"not a readable image ({exc})")
        )
        raise InputError(f"{what} is {kind}") from None


def _sniff_ext(content: bytes) -> str:
    if content.startswith(b"\x89PNG"):
        return ".png"
    if content.startswith(b"\xff\xd8"):
        return ".jpg"
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return ".webp"
    if content[:6] in (b"GIF87a", b"GIF89a"):
        return ".gif"
    return ".png"


def upload_form(
    name: str,
    content: bytes,
    *,
    subfolder: str | None,
    overwrite: bool,
    type: str,
    original_ref: FileRef | Mapping[str, Any] | str | None = None,
) -> tuple[dict[str, tuple[str, bytes, str]], dict[str, str]]:
    """The multipart ``files`` and ``data`` for ``/upload/image`` and ``/upload/mask``."""
    if type not in UPLOAD_TYPES:
        raise InputError(f"upload: type must be one of {', '.join(UPLOAD_TYPES)}, got {type!r}")
    if subfolder and (subfolder.startswith("/") or ".." in Path(subfolder).parts):
        raise InputError(f"upload: subfolder must be relative and stay inside, got {subfolder!r}")
    mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
    files = {"image": (name, content, mime)}
    data = {"type": type, "overwrite": "true" if overwrite else "false"}
    if subfolder:
        data["subfolder"] = subfolder
    if original_ref is not None:
        ref = file_ref(original_ref, default_type="output")
        data["original_ref"] = json.dumps(
            {"filename": ref.filename, "subfolder": ref.subfolder, "type": ref.type}
        )
    return files, data


def file_ref(ref: FileRef | Mapping[str, Any] | str, *, default_type: str = "output") -> FileRef:
    """Normalise a file reference: a :class:`FileRef`, a ``{filename, subfolder, type}`` dict, or
    a string ``"sub/name.png"`` / ``"name.png [input]"``."""
    if isinstance(ref, FileRef):
        return ref
    if isinstance(ref, Mapping):
        if "filename" not in ref and "name" in ref:
            ref = {**ref, "filename": ref["name"]}
        if not ref.get("filename"):
            raise InputError(f"file reference without a filename: {dict(ref)!r}")
        return FileRef.model_validate({"type": default_type, **ref})
    if isinstance(ref, str):
        text = ref.strip()
        type_ = default_type
        for candidate in UPLOAD_TYPES:
            suffix = f" [{candidate}]"
            if text.endswith(suffix):
                text, type_ = text[: -len(suffix)], candidate
        sub, _, name = text.rpartition("/")
        if not name:
            raise InputError(f"file reference without a filename: {ref!r}")
        return FileRef(filename=name, subfolder=sub, type=type_)
    raise InputError(f"expected a file reference, got {type(ref).__name__}")
