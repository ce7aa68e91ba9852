"""Many images at once with ``AsyncComfyClient``: a batch of prompts, then upscales in parallel.

``generate_batch`` queues every prompt before waiting for any, so the server never idles between
them, and returns the results in input order; an item that fails keeps its error and the others
still run. ``asyncio.gather`` runs any other calls side by side over the client's one WebSocket::

    COMFYUI_URL=http://127.0.0.1:8188 python examples/async_batch.py --width 512 --steps 20

Without ``$COMFYUI_URL`` a local CPU ComfyUI (random-weight checkpoint) is started. Images are
written to ``$COMFYKIT_OUT`` (default ``out/``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from comfykit import AsyncComfyClient
from comfykit.testing import comfyui_url_or_local

OUT = Path(os.environ.get("COMFYKIT_OUT", "out"))

PROMPTS = [
    "a lighthouse at dusk, oil painting",
    "a red fox in the snow, photograph",
    "",  # deliberately invalid: shows how a failed item is reported
    "a city skyline at night, watercolor",
]


async def run(url: str, width: int, height: int, steps: int) -> int:
    """Generate every prompt, save what succeeded, upscale it 2x concurrently."""
    async with AsyncComfyClient(url) as comfy:
        batch = await comfy.generate_batch(
            PROMPTS, seeds=[1, 2, 3, 4], width=width, height=height, steps=steps
        )
        for item in batch:
            if item.result is None:
                print(f"item {item.index} failed: {item.error}")
                continue
            for path in item.result.save(OUT):
                print(f"item {item.index}: wrote {path} (seed {item.result.seed})")

        upscaled = await asyncio.gather(
            *(comfy.upscale(result.files[0], scale_by=2) for result in batch.results)
        )
        for result in upscaled:
            for path in result.save(OUT, prefix="upscaled"):
                print(f"wrote {path} ({result.images[0].width}x{result.images[0].height})")
    return 0 if len(batch.results) == len(PROMPTS) - 1 else 1


def main(argv: list[str] | None = None) -> int:
    """Parse the sizes and run the batch."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args(argv)
    with comfyui_url_or_local() as url:
        return asyncio.run(run(url, args.width, args.height, args.steps))


if __name__ == "__main__":
    raise SystemExit(main())
