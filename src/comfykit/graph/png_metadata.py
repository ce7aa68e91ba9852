"""Read the workflows ComfyUI embeds in the PNG files it saves.

``SaveImage`` writes the API prompt into a text chunk called ``prompt`` and each
``extra_pnginfo`` entry (the editor sends the UI workflow as ``workflow``) into a chunk of that
name, as JSON. Pillow writes ``tEXt`` chunks, or ``iTXt`` when the text is not Latin-1; other tools
re-save with ``zTXt`` or compressed ``iTXt``. The chunks are parsed here with ``struct`` and
``zlib`` so that no imaging library is needed.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from comfykit._exceptions import WorkflowError, WorkflowProblem

__all__ = ["PngWorkflows", "read_png_workflows"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CODE = "png_metadata"
_KEYS = ("prompt", "workflow")
#: Largest text a compressed chunk may inflate to (guards against decompression bombs).
_MAX_TEXT = 256 * 1024 * 1024


@dataclass(frozen=True)
class PngWorkflows:
    """The workflows found in a PNG.

    Attributes:
        prompt: the API-format prompt the image was generated from (``prompt`` chunk).
        workflow: the editor's UI-format workflow (``workflow`` chunk), when the image was
            queued from the editor or with ``extra_pnginfo.workflow``.
    """

    prompt: dict[str, Any] | None
    workflow: dict[str, Any] | None


def read_png_workflows(
    source: str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes],
    *,
    max_text_bytes: int = _MAX_TEXT,
) -> PngWorkflows:
    """Read the ``prompt`` and ``workflow`` JSON that ComfyUI stored in a PNG.

    Args:
        source: a path, the file's bytes, or a binary file object.
        max_text_bytes: the largest a ``prompt``/``workflow`` chunk may be (compressed
            chunks are inflated only that far): a guard against decompression bombs.

    Raises:
        WorkflowError: (code ``"png_metadata"``) the data is not a PNG, is truncated or
            corrupt, a chunk does not hold a JSON object, or neither chunk is present.
        OSError: the path cannot be read.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        data = Path(source).read_bytes()
    else:
        data = source.read()
    texts = _text_chunks(data, max_text_bytes)
    found = {key: _json_object(key, texts[key]) for key in _KEYS if key in texts}
    if not found:
        raise _error("the PNG holds no ComfyUI 'prompt' or 'workflow' metadata")
    return PngWorkflows(prompt=found.get("prompt"), workflow=found.get("workflow"))


def _error(reason: str) -> WorkflowError:
    return WorkflowError([WorkflowProblem(None, None, reason, code=_CODE)])


def _text_chunks(data: bytes, max_text: int) -> dict[str, str]:
    """The ``prompt``/``workflow`` texts of a PNG (the first chunk of each name wins)."""
    if not data.startswith(PNG_SIGNATURE):
        raise _error("not a PNG file (bad signature)")
    texts: dict[str, str] = {}
    pos = len(PNG_SIGNATURE)
    while True:
        if pos + 8 > len(data):
            raise _error("truncated PNG (no IEND chunk)")
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        end = pos + 8 + length
        if end + 4 > len(data):
            raise _error(f"truncated PNG (chunk {kind!r} runs past the end)")
        body = data[pos + 8 : end]
        if kind == b"IEND":
            return texts
        if kind in (b"tEXt", b"zTXt", b"iTXt"):
            (crc,) = struct.unpack(">I", data[end : end + 4])
            decoded = _decode_text(kind, body, crc, max_text)
            if decoded is not None and decoded[0] not in texts:
                texts[decoded[0]] = decoded[1]
        pos = end + 4


def _decode_text(kind: bytes, body: bytes, crc: int, max_text: int) -> tuple[str, str] | None:
    keyword, sep, rest = body.partition(b"\0")
    if not sep:
        return None
    name = keyword.decode("latin-1")
    if name not in _KEYS:
        return None
    if zlib.crc32(kind + body) != crc:
        raise _error(f"corrupt PNG: CRC mismatch in the {name!r} chunk")
    if kind == b"tEXt" and len(rest) > max_text:
        raise _error(f"the {name!r} chunk is larger than {max_text} bytes")
    try:
        if kind == b"tEXt":
            return name, rest.decode("latin-1")
        if kind == b"zTXt":
            if not rest or rest[0] != 0:
                raise ValueError("unknown compression method")
            return name, _inflate(rest[1:], max_text).decode("latin-1")
        if len(rest) < 2:
            raise ValueError("iTXt chunk too short")
        compressed, method = rest[0], rest[1]
        _language, _, rest = rest[2:].partition(b"\0")
        _translated, _, text = rest.partition(b"\0")
        if compressed:
            if method != 0:
                raise ValueError("unknown compression method")
            text = _inflate(text, max_text)
        elif len(text) > max_text:
            raise ValueError(f"text larger than {max_text} bytes")
        return name, text.decode("utf-8")
    except (ValueError, zlib.error) as err:
        raise _error(f"cannot decode the {name!r} chunk: {err}") from err


def _inflate(data: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, limit)
    rest = b"" if inflater.unconsumed_tail else inflater.flush()
    if inflater.unconsumed_tail or len(out) + len(rest) > limit:
        raise ValueError(f"text larger than {limit} bytes")
    return out + rest


def _json_object(name: str, text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as err:
        raise _error(f"the {name!r} chunk is not valid JSON: {err}") from err
    except RecursionError:
        raise _error(f"the {name!r} chunk is nested too deeply to be a workflow") from None
    if not isinstance(value, dict):
        raise _error(f"the {name!r} chunk holds a JSON {type(value).__name__}, not an object")
    return value
