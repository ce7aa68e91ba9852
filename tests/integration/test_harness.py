"""Proofs that the harness runs a real ComfyUI: raw httpx + websockets, no comfykit client."""

from __future__ import annotations

import io
import json
import time
import uuid
from typing import Any

import httpx
import pytest
from PIL import Image
from websockets.sync.client import connect

from comfykit.testing import CHECKPOINT_NAME, ComfyUIServer


def _run_raw(
    url: str, prompt: dict[str, Any], timeout: float = 60
) -> tuple[dict[str, Any], list[Any]]:
    """Submit ``prompt`` and collect this prompt's WebSocket frames until it completes."""
    client_id = uuid.uuid4().hex
    ws_url = url.replace("http://", "ws://") + f"/ws?clientId={client_id}"
    frames: list[Any] = []
    with connect(ws_url, max_size=None) as ws, httpx.Client(base_url=url, timeout=30) as http:
        first = json.loads(ws.recv(timeout=10))
        assert first["type"] == "status" and first["data"]["sid"] == client_id
        resp = http.post("/prompt", json={"prompt": prompt, "client_id": client_id})
        assert resp.status_code == 200, resp.text
        prompt_id = resp.json()["prompt_id"]
        deadline = time.monotonic() + timeout
        while True:
            msg = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
            if isinstance(msg, bytes):
                frames.append(msg)
                continue
            event = json.loads(msg)
            frames.append(event)
            data = event.get("data", {})
            if (
                event["type"] == "executing"
                and data.get("node") is None
                and data.get("prompt_id") == prompt_id
            ):
                break
        history = http.get(f"/history/{prompt_id}").json()
    return history[prompt_id], frames


def _fetch(url: str, ref: dict[str, str]) -> bytes:
    resp = httpx.get(f"{url}/view", params=ref, timeout=30)
    resp.raise_for_status()
    return resp.content


def test_invert_roundtrip(comfyui_url: str) -> None:
    prompt = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 48, "height": 32, "batch_size": 1, "color": 0x102030},
        },
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {
            "class_type": "SaveImage",
            "inputs": {"images": ["2", 0], "filename_prefix": f"harness/{uuid.uuid4().hex}"},
        },
    }
    entry, frames = _run_raw(comfyui_url, prompt)
    assert entry["status"]["status_str"] == "success"
    types = [f["type"] for f in frames if isinstance(f, dict)]
    assert "execution_start" in types and "execution_success" in types
    (ref,) = entry["outputs"]["3"]["images"]
    assert ref["type"] == "output"
    img = Image.open(io.BytesIO(_fetch(comfyui_url, ref)))
    assert img.size == (48, 32)
    assert img.convert("RGB").getpixel((5, 5)) == (0xFF - 0x10, 0xFF - 0x20, 0xFF - 0x30)


def test_testsleep_progress_events(comfyui_url: str) -> None:
    prompt = {
        "1": {"class_type": "StubInt", "inputs": {"value": 3}},
        "2": {"class_type": "TestSleep", "inputs": {"value": ["1", 0], "seconds": 0.3}},
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}},
    }
    entry, frames = _run_raw(comfyui_url, prompt)
    assert entry["status"]["status_str"] == "success"
    progress = [f["data"] for f in frames if isinstance(f, dict) and f["type"] == "progress"]
    assert len(progress) >= 2
    assert all(p["node"] == "2" for p in progress)
    assert progress[-1]["value"] <= progress[-1]["max"]
    assert entry["outputs"]["3"]["text"] == ["3"]


def test_random_checkpoint_txt2img(comfyui_url: str, comfyui_server: ComfyUIServer | None) -> None:
    if comfyui_server is None:
        pytest.skip("needs the harness's own server (random-weight checkpoint)")
    seed = int(uuid.uuid4().int % 10**9)
    prompt = {
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
                "steps": 2,
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
            },
        },
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {
            "class_type": "SaveImage",
            "inputs": {"images": ["6", 0], "filename_prefix": "harness/t2i"},
        },
    }
    entry, _ = _run_raw(comfyui_url, prompt, timeout=120)
    assert entry["status"]["status_str"] == "success", entry["status"]
    (ref,) = entry["outputs"]["7"]["images"]
    img = Image.open(io.BytesIO(_fetch(comfyui_url, ref)))
    assert img.format == "PNG" and img.size == (64, 64)
