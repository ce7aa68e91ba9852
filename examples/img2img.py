"""Image to image, inpainting and upscaling with the blocking ``ComfyClient``.

Starts from ``--image`` (any picture) or, without one, generates a picture first; then re-samples
it with ``img2img``, repaints a circle in its middle with ``inpaint`` and doubles its size with
``upscale``. Results of one call feed the next without a round trip through the disk::

    python examples/img2img.py --image photo.png --prompt "a watercolor painting" --denoise 0.6

Uses ``$COMFYUI_URL``, else starts a local CPU ComfyUI (random-weight checkpoint). Images are
written to ``$COMFYKIT_OUT`` (default ``out/``).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from PIL import Image, ImageDraw

from comfykit import ComfyClient, FileRef
from comfykit.testing import comfyui_url_or_local

OUT = Path(os.environ.get("COMFYKIT_OUT", "out"))


def circle_mask(width: int, height: int) -> Image.Image:
    """White (repaint) disc in the middle, black (keep) around it."""
    mask = Image.new("RGB", (width, height), "black")
    r = min(width, height) // 4
    ImageDraw.Draw(mask).ellipse(
        (width // 2 - r, height // 2 - r, width // 2 + r, height // 2 + r), fill="white"
    )
    return mask


def main(argv: list[str] | None = None) -> int:
    """img2img → inpaint → upscale, saving each step."""
    parser = argparse.ArgumentParser(description="img2img, inpaint and upscale with comfykit.")
    parser.add_argument("--image", type=Path, default=None, help="start image (default: generate)")
    parser.add_argument("--prompt", default="a watercolor painting of a harbour")
    parser.add_argument("--denoise", type=float, default=0.6)
    parser.add_argument("--width", type=int, default=512, help="size of the generated start")
    parser.add_argument("--height", type=int, default=512, help="size of the generated start")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args(argv)

    with comfyui_url_or_local() as url, ComfyClient(url) as comfy:
        if args.image is not None:
            source: Path | FileRef = args.image
            with Image.open(args.image) as img:
                width, height = img.size
        else:
            start = comfy.generate(
                "a harbour at sunrise", width=args.width, height=args.height, steps=args.steps
            )
            source = start.files[0]  # already on the server: used as is, not re-uploaded
            width, height = args.width, args.height
            print(f"generated {start.files[0].filename} (seed {start.seed})")

        redone = comfy.img2img(args.prompt, source, denoise=args.denoise, steps=args.steps)
        for path in redone.save(OUT, prefix="img2img"):
            print(f"img2img: wrote {path} {redone.images[0].size}")

        inpainted = comfy.inpaint(
            "a full moon", redone.files[0], circle_mask(width, height), steps=args.steps
        )
        for path in inpainted.save(OUT, prefix="inpaint"):
            print(f"inpaint: wrote {path}")

        bigger = comfy.upscale(inpainted.files[0], scale_by=2)
        for path in bigger.save(OUT, prefix="upscale"):
            print(f"upscale: wrote {path} {bigger.images[0].size}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
