"""Proofs that the harness runs a real ComfyUI: raw httpx + websockets, no comfykit client."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from websockets.sync.client import connect

from comfykit.testing import ComfyUIServer
from tests import graphs


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
    prompt = graphs.invert(0x102030, width=48, height=32, prefix=graphs.unique("harness"))
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
    value = uuid.uuid4().int % 10**6  # a new value each run: a cached graph sends no progress
    prompt = graphs.sleep(0.3, value=value)
    entry, frames = _run_raw(comfyui_url, prompt)
    assert entry["status"]["status_str"] == "success"
    progress = [f["data"] for f in frames if isinstance(f, dict) and f["type"] == "progress"]
    assert len(progress) >= 2
    assert all(p["node"] == "2" for p in progress)
    assert progress[-1]["value"] <= progress[-1]["max"]
    assert entry["outputs"]["3"]["text"] == [str(value)]


def test_random_checkpoint_txt2img(comfyui_url: str, comfyui_server: ComfyUIServer | None) -> None:
    if comfyui_server is None:
        pytest.skip("needs the harness's own server (random-weight checkpoint)")
    prompt = graphs.txt2img(int(uuid.uuid4().int % 10**9), prefix="harness/t2i")
    entry, _ = _run_raw(comfyui_url, prompt, timeout=120)
    assert entry["status"]["status_str"] == "success", entry["status"]
    (ref,) = entry["outputs"]["7"]["images"]
    img = Image.open(io.BytesIO(_fetch(comfyui_url, ref)))
    assert img.format == "PNG" and img.size == (64, 64)


def test_serve_stops_and_removes_its_files_on_sigterm(
    comfyui_server: ComfyUIServer | None,
) -> None:
    """``python -m comfykit.testing serve`` killed with SIGTERM cleans up as Ctrl-C does;
    ``--cpus`` pins every thread of the ComfyUI process it starts."""
    if comfyui_server is None:
        pytest.skip("needs the harness (starts a server of its own)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cpu = min(os.sched_getaffinity(0))
    serve = [sys.executable, "-m", "comfykit.testing", "serve", "--port", str(port)]
    with subprocess.Popen([*serve, "--cpus", str(cpu)], stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            match = re.search(r"running at (\S+), files in (.+) \(Ctrl-C", line)
            assert match, line
            url, base_dir = match.group(1), Path(match.group(2))
            assert httpx.get(url + "/system_stats", timeout=10).status_code == 200
            (comfyui_pid,) = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
            threads = list(Path(f"/proc/{comfyui_pid}/task").iterdir())
            assert len(threads) > 1  # ComfyUI's event loop and its prompt worker, at least
            pinned = {frozenset(os.sched_getaffinity(int(t.name))) for t in threads}
            assert pinned == {frozenset({cpu})}
            assert base_dir.is_dir()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0
            assert not base_dir.exists()
            with pytest.raises(httpx.ConnectError):
                httpx.get(url + "/system_stats", timeout=5)
        finally:
            if proc.poll() is None:
                proc.kill()
