"""Generate an image with comfykit.

Uses the ComfyUI at ``$COMFYUI_URL``; without it, starts a local CPU ComfyUI (built once into
``~/.cache/comfykit``) whose checkpoint has random weights, so the picture is noise. Point
``COMFYUI_URL`` at a server with real models (and set ``COMFYKIT_MODEL`` to a checkpoint name when
it has several) to get a real picture::

    python examples/quickstart.py
    python examples/quickstart.py --prompt "a red fox in the snow" --width 768 --steps 30

Images are written to ``$COMFYKIT_OUT`` (default ``out/``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from comfykit import ComfyClient, InputError
from comfykit.testing import comfyui_url_or_local

OUT = Path(os.environ.get("COMFYKIT_OUT", "out"))


def main(argv: list[str] | None = None) -> int:
    """Generate one image into ``out/``."""
    parser = argparse.ArgumentParser(description="Generate an image with comfykit.")
    parser.add_argument("--prompt", default="a lighthouse at dusk, oil painting")
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args(argv)

    with comfyui_url_or_local() as url, ComfyClient(url) as comfy:
        stats = comfy.system_stats()
        print(f"ComfyUI {stats.system.comfyui_version} at {url}")
        try:
            result = comfy.generate(
                args.prompt,
                negative_prompt="blurry",
                model=os.environ.get("COMFYKIT_MODEL"),  # None: the server's only checkpoint
                width=args.width,
                height=args.height,
                steps=args.steps,
                sampler="euler_a",
                progress=sys.stderr.isatty(),
            )
        except InputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        model = result.metadata["request"]["model"]
        # Inside the `with`: the blocking client downloads the images on first use.
        for path in result.save(OUT):
            print(f"wrote {path} (model {model}, seed {result.seed})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
