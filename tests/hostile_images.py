"""Hostile images made on the fly (no binary file is committed): decompression bombs, PNG
text-chunk bombs, truncated files, and a plain valid PNG to compare with."""

from __future__ import annotations

import io
import random
import struct
import zlib

from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def ihdr(width: int, height: int) -> bytes:
    """The header chunk of an 8-bit greyscale image of that size."""
    return chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))


def png(size: tuple[int, int] = (16, 16), color: tuple[int, int, int] = (200, 10, 10)) -> bytes:
    """A valid RGB PNG."""
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def header_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` pixels (far more data than it
    holds): decoding it would allocate the whole image."""
    idat = chunk(b"IDAT", zlib.compress(b"\0" * 64))
    return PNG_SIGNATURE + ihdr(width, height) + idat + chunk(b"IEND", b"")


def pixel_flood(width: int = 8000, height: int = 8000) -> bytes:
    """A valid greyscale PNG of ``width`` x ``height`` black pixels: a few tens of KB that
    inflate to ``width * height`` bytes (made row by row, never held whole)."""
    packer = zlib.compressobj(9)
    row = b"\0" * (width + 1)
    parts = [packer.compress(row) for _ in range(height)]
    data = b"".join(parts) + packer.flush()
    return PNG_SIGNATURE + ihdr(width, height) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def _with_chunks(extra: list[bytes]) -> bytes:
    image = png((4, 4))
    body = image[len(PNG_SIGNATURE) :]
    first_end = 8 + struct.unpack(">I", body[:4])[0] + 4  # after IHDR
    return PNG_SIGNATURE + body[:first_end] + b"".join(extra) + body[first_end:]


def text_chunk_bomb(inflated: int = 8 * 1024 * 1024) -> bytes:
    """A 4x4 PNG with one ``zTXt`` chunk of a few KB that inflates to ``inflated`` bytes."""
    text = chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"a" * inflated, 9))
    return _with_chunks([text])


def text_memory_bomb(chunks: int = 80, each: int = 1000 * 1000) -> bytes:
    """A 4x4 PNG with ``chunks`` ``zTXt`` chunks, each under Pillow's per-chunk limit, that
    together inflate past its total (``MAX_TEXT_MEMORY``)."""
    packed = zlib.compress(b"b" * each, 9)
    return _with_chunks(
        [chunk(b"zTXt", f"k{i}".encode() + b"\0\0" + packed) for i in range(chunks)]
    )


def truncated_png() -> bytes:
    """A valid PNG cut in the middle of its pixel data."""
    noisy = Image.frombytes("RGB", (64, 64), random.Random(7).randbytes(64 * 64 * 3))
    buf = io.BytesIO()
    noisy.save(buf, format="PNG")
    data = buf.getvalue()
    return data[: len(data) // 2]
