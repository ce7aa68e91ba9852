"""Generate an image with comfykit.

Uses the ComfyUI at ``$COMFYUI_URL``; without it, starts a local CPU ComfyUI (built once into
``~/.cache/comfykit``) whose checkpoint has random weights, so the picture is noise. Point
``COMFYUI_URL`` at a server with real models (and set ``COMFYKIT_MODEL`` to a checkpoint name) to
get a real picture.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
from collections.abc import Iterator
from pathlib import Path

from comfykit import ComfyClient

OUT = Path(os.environ.get("COMFYKIT_OUT", "out"))


@contextlib.contextmanager
def comfyui_url() -> Iterator[str]:
    """``$COMFYUI_URL``, or a local CPU ComfyUI started for the duration."""
    url = os.environ.get("COMFYUI_URL")
    if url:
        yield url
        return
    from comfykit.testing import ComfyUIServer

    print("COMFYUI_URL is not set: starting a local CPU ComfyUI (random-weight checkpoint)...")
    with ComfyUIServer() as server:
        yield server.url


def txt2img(model: str, prompt: str, seed: int) -> dict[str, dict[str, object]]:
    """The classic txt2img graph in API format."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": model}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": prompt, "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage",
              "inputs": {"width": 512, "height": 512, "batch_size": 1}},
        "5": {"class_type": "KSampler",
              "inputs": {"model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0],
                         "latent_image": ["4", 0], "seed": seed, "steps": 20, "cfg": 7.0,
                         "sampler_name": "euler_ancestral", "scheduler": "normal",
                         "denoise": 1.0}},
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SaveImage",
              "inputs": {"images": ["6", 0], "filename_prefix": "comfykit/quickstart"}},
    }


def main() -> int:
    """Generate one image into ``out/``."""
    with comfyui_url() as url, ComfyClient(url) as comfy:
        stats = comfy.system_stats()
        print(f"ComfyUI {stats.system.comfyui_version} at {url}")
        checkpoints = comfy.models("checkpoints")
        model = os.environ.get("COMFYKIT_MODEL") or (checkpoints[0] if checkpoints else None)
        if model is None:
            print("the server has no checkpoint in models/checkpoints", file=sys.stderr)
            return 1
        seed = random.randrange(2**32)
        job = comfy.submit(txt2img(model, "a lighthouse at dusk, oil painting", seed))
        result = job.result(timeout=600)
        OUT.mkdir(parents=True, exist_ok=True)
        for image in result.images:
            path = image.save(OUT)
            print(f"wrote {path} (model {model}, seed {seed})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
