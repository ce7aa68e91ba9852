"""API-format test graphs built from model-free nodes (and the harness's random checkpoint)."""

from __future__ import annotations

import uuid
from typing import Any

from comfykit.testing import CHECKPOINT_NAME

Graph = dict[str, dict[str, Any]]


def unique(prefix: str = "t") -> str:
    """A unique filename prefix, so runs never collide in the output folder."""
    return f"comfykit-tests/{prefix}-{uuid.uuid4().hex[:10]}"


def invert(
    color: int = 0x102030, *, width: int = 32, height: int = 24, prefix: str | None = None
) -> Graph:
    """EmptyImage -> ImageInvert -> SaveImage (the inverted colour is predictable)."""
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": width, "height": height, "batch_size": 1, "color": color},
        },
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {
            "class_type": "SaveImage",
            "inputs": {"images": ["2", 0], "filename_prefix": prefix or unique("invert")},
        },
    }


def inverted_rgb(color: int) -> tuple[int, int, int]:
    """The pixel :func:`invert` produces for ``color``."""
    return (255 - (color >> 16 & 255), 255 - (color >> 8 & 255), 255 - (color & 255))


def assert_rgb_close(actual: object, expected: tuple[int, int, int]) -> None:
    """ComfyUI works in float32: a colour may come back off by one after a round trip."""
    assert isinstance(actual, tuple) and len(actual) == 3, actual
    assert all(abs(a - e) <= 1 for a, e in zip(actual, expected, strict=True)), (actual, expected)


def sleep(seconds: float, value: int | None = None) -> Graph:
    """StubInt -> TestSleep (real progress events) -> PreviewAny (text output). ``value``
    defaults to a random one, so ComfyUI's cache never answers for an earlier run."""
    if value is None:
        value = uuid.uuid4().int % 10**9
    return {
        "1": {"class_type": "StubInt", "inputs": {"value": value}},
        "2": {"class_type": "TestSleep", "inputs": {"value": ["1", 0], "seconds": seconds}},
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}},
    }


def text(a: str, b: str) -> Graph:
    """StringConcatenate -> PreviewAny: a text output and no files."""
    return {
        "1": {
            "class_type": "StringConcatenate",
            "inputs": {"string_a": a, "string_b": b, "delimiter": "-"},
        },
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
    }


def sync_error() -> Graph:
    """TestSyncError raises at run time: a real ``execution_error``."""
    return {
        "1": {
            "class_type": "StubImage",
            "inputs": {"content": "BLACK", "height": 8, "width": 8, "batch_size": 1},
        },
        "2": {"class_type": "TestSyncError", "inputs": {"value": ["1", 0]}},
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
    }


def txt2img(seed: int = 1, *, steps: int = 2, prefix: str | None = None) -> Graph:
    """The full txt2img graph on the harness's random-weight checkpoint (64x64)."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CHECKPOINT_NAME}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "4": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1},
        },
        "5": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["1", 0],
                "positive": ["2", 0],
                "negative": ["3", 0],
                "latent_image": ["4", 0],
                "seed": seed,
                "steps": steps,
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
            },
        },
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {
            "class_type": "SaveImage",
            "inputs": {"images": ["6", 0], "filename_prefix": prefix or unique("t2i")},
        },
    }


def sleep_save(seconds: float, prefix: str | None = None) -> Graph:
    """EmptyImage (a random colour) -> TestSleep -> SaveImage: one output file per run, under a
    prefix of its own (so the files of a run can be counted in the output folder)."""
    color = uuid.uuid4().int % 0xFFFFFF
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": color},
        },
        "2": {"class_type": "TestSleep", "inputs": {"value": ["1", 0], "seconds": seconds}},
        "3": {
            "class_type": "SaveImage",
            "inputs": {"images": ["2", 0], "filename_prefix": prefix or unique("sleep")},
        },
    }


def load_invert(image: str, *, prefix: str | None = None) -> Graph:
    """LoadImage (an uploaded file) -> ImageInvert -> SaveImage."""
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": image}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {
            "class_type": "SaveImage",
            "inputs": {"images": ["2", 0], "filename_prefix": prefix or unique("load")},
        },
    }
