"""Record real ComfyUI WebSocket traffic into ``tests/fixtures/events/<scenario>.jsonl``.

Each scenario opens a fresh WebSocket (raw ``websockets`` + ``httpx``, not comfykit's client, so
the fixtures show what the server really sends), submits one prompt and records every frame the
socket received from the connect onward, in order, until ``executing{node: null}`` for that
prompt. File layout, one JSON object per line:

    {"submit": {"prompt_id": ..., "client_id": ..., "handshake": bool, "prompt": {...},
                "status_code": 200, "response": {...}}}    # what was POSTed and the answer
    {"text": "<raw text frame>"}                           # every frame, in arrival order
    {"binary": "<base64 of the raw binary frame>"}
    {"history": <the GET /history/{prompt_id} entry>}      # always the last line

    python scripts/record_event_fixtures.py              # all scenarios, own server
    python scripts/record_event_fixtures.py invert cached --url http://127.0.0.1:8188

The recordings depend on the server's cache state (``cached`` reuses ``invert``'s graph), so run
all scenarios together against a fresh server (the default: a ``ComfyUIServer`` with
``--preview-method latent2rgb --preview-size 64``).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the test graphs live in tests/graphs.py

from tests import graphs  # noqa: E402

OUT_DIR = ROOT / "tests" / "fixtures" / "events"

Graph = graphs.Graph
#: Called for every JSON frame of the scenario's prompt (the ``interrupted`` scenario uses it).
FrameHook = Callable[[dict[str, Any], httpx.Client, str], None]


def invert_graph() -> Graph:
    """EmptyImage -> ImageInvert -> SaveImage, plus a PreviewImage of the empty image."""
    graph = graphs.invert(0x336699, width=64, height=64, prefix="fixtures/invert")
    graph["4"] = {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}
    return graph


def text_frame_graph() -> Graph:
    """EmptyImage -> GetImageSize (sends a binary type-3 text frame) -> PreviewAny."""
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 64, "height": 48, "batch_size": 2, "color": 0xFF0000},
        },
        "2": {"class_type": "GetImageSize", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}},
    }


def partial_graph() -> Graph:
    """One valid PreviewImage branch and one SaveImage missing its required ``images`` input."""
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0x00FF00},
        },
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"filename_prefix": "fixtures/partial"}},
    }


def interrupt_after_first_progress() -> FrameHook:
    """A hook that interrupts the prompt (and only it) when its first ``progress`` arrives."""
    sent = False

    def hook(message: dict[str, Any], http: httpx.Client, prompt_id: str) -> None:
        nonlocal sent
        data = message.get("data")
        if sent or message.get("type") != "progress" or not isinstance(data, dict):
            return
        if data.get("prompt_id") == prompt_id:
            sent = True
            http.post("/interrupt", json={"prompt_id": prompt_id}).raise_for_status()

    return hook


@dataclass
class Scenario:
    """One recorded prompt."""

    name: str
    graph: Callable[[], Graph]
    handshake: bool = True
    hook: Callable[[], FrameHook] | None = None
    notes: str = ""


SCENARIOS: list[Scenario] = [
    Scenario("invert", invert_graph, notes="fresh run: SaveImage + PreviewImage"),
    Scenario("cached", invert_graph, notes="invert's graph again: every node cached"),
    Scenario("progress", lambda: graphs.sleep(0.3, 7), notes="TestSleep 0.3 s: progress events"),
    Scenario("text_frame", text_frame_graph, notes="GetImageSize: binary type 3"),
    Scenario("execution_error", graphs.sync_error, notes="TestSyncError raises"),
    Scenario(
        "interrupted",
        lambda: graphs.sleep(5.0, 8),
        hook=interrupt_after_first_progress,
        notes="TestSleep 5 s, POST /interrupt {prompt_id} after the first progress",
    ),
    Scenario(
        "txt2img_preview",
        lambda: graphs.txt2img(1, prefix="fixtures/t2i-1"),
        notes="handshake: binary type 4",
    ),
    Scenario(
        "txt2img_legacy_preview",
        lambda: graphs.txt2img(2, prefix="fixtures/t2i-2"),
        handshake=False,
        notes="no handshake: binary type 1",
    ),
    Scenario("partial_node_errors", partial_graph, notes="200 with node_errors"),
]


def _ws_url(base_url: str, client_id: str) -> str:
    scheme, rest = base_url.split("://", 1)
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/ws?clientId={client_id}"


def _record_frame(frames: list[dict[str, str]], frame: str | bytes) -> dict[str, Any] | None:
    """Store ``frame``; return it decoded when it is a JSON object."""
    if isinstance(frame, bytes):
        frames.append({"binary": base64.b64encode(frame).decode("ascii")})
        return None
    frames.append({"text": frame})
    try:
        message = json.loads(frame)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


def _recv(ws: ClientConnection, deadline: float) -> str | bytes:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("the scenario did not finish in time")
    return ws.recv(timeout=remaining)


def record(
    base_url: str, scenario: Scenario, timeout: float = 120.0
) -> tuple[dict[str, Any], list[dict[str, str]], dict[str, Any]]:
    """Run one scenario; return (submit info, frames, history entry)."""
    client_id = f"fixture-{scenario.name}-{uuid.uuid4().hex[:8]}"
    prompt_id = str(uuid.uuid4())
    graph = scenario.graph()
    hook = scenario.hook() if scenario.hook else None
    frames: list[dict[str, str]] = []
    deadline = time.monotonic() + timeout
    with (
        httpx.Client(base_url=base_url, timeout=30) as http,
        connect(_ws_url(base_url, client_id), max_size=None, compression=None) as ws,
    ):
        if scenario.handshake:
            ws.send(
                json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
            )
        # Wait for the registration (status with our sid) and, after a handshake, the server's
        # flags, so every later frame of the prompt is addressed to this socket.
        have_sid = False
        have_flags = not scenario.handshake
        while not (have_sid and have_flags):
            message = _record_frame(frames, _recv(ws, deadline))
            if message is None:
                continue
            data = message.get("data")
            if message.get("type") == "status" and isinstance(data, dict) and data.get("sid"):
                have_sid = True
            elif message.get("type") == "feature_flags":
                have_flags = True
        body = {"prompt": graph, "client_id": client_id, "prompt_id": prompt_id}
        response = http.post("/prompt", json=body)
        answer = response.json()
        submit = {
            "prompt_id": prompt_id,
            "client_id": client_id,
            "handshake": scenario.handshake,
            "notes": scenario.notes,
            "prompt": graph,
            "status_code": response.status_code,
            "response": answer,
        }
        if response.status_code != 200:
            raise RuntimeError(f"{scenario.name}: POST /prompt answered {response.text}")
        while True:
            message = _record_frame(frames, _recv(ws, deadline))
            if message is None:
                continue
            if hook is not None:
                hook(message, http, prompt_id)
            data = message.get("data")
            if (
                message.get("type") == "executing"
                and isinstance(data, dict)
                and data.get("node") is None
                and data.get("prompt_id") == prompt_id
            ):
                break
        history = http.get(f"/history/{prompt_id}").json()
    if prompt_id not in history:
        raise RuntimeError(f"{scenario.name}: no history entry for {prompt_id}")
    return submit, frames, history[prompt_id]


def write(path: Path, submit: dict[str, Any], frames: list[dict[str, str]], entry: Any) -> None:
    """Write one fixture file."""
    lines = [{"submit": submit}, *frames, {"history": entry}]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for line in lines:
            fh.write(json.dumps(line, separators=(",", ":")) + "\n")


def run_all(base_url: str, names: list[str], out_dir: Path) -> None:
    """Record the chosen scenarios (all of them by default), in the canonical order."""
    unknown = set(names) - {s.name for s in SCENARIOS}
    if unknown:
        raise SystemExit(f"unknown scenarios: {', '.join(sorted(unknown))}")
    for scenario in SCENARIOS:
        if names and scenario.name not in names:
            continue
        submit, frames, entry = record(base_url, scenario)
        path = out_dir / f"{scenario.name}.jsonl"
        write(path, submit, frames, entry)
        kinds = sum(1 for f in frames if "binary" in f)
        print(
            f"{scenario.name:24} {len(frames):4} frames ({kinds} binary) "
            f"{path.stat().st_size / 1024:7.1f} KB  -> {path.relative_to(ROOT)}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenarios", nargs="*", help="scenario names (default: all)")
    parser.add_argument("--url", help="use this server instead of starting one")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output directory")
    args = parser.parse_args(argv)
    if args.url:
        run_all(args.url.rstrip("/"), args.scenarios, args.out)
        return 0
    from comfykit.testing import ComfyUIServer

    # --preview-size 64 keeps the latent previews (512 px JPEGs by default) at 64 px.
    with ComfyUIServer(preview_method="latent2rgb", extra_args=["--preview-size", "64"]) as server:
        run_all(server.url, args.scenarios, args.out)
    total = sum(p.stat().st_size for p in args.out.glob("*.jsonl"))
    print(f"total {total / 1024:.1f} KB in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
