"""Build a tiny SD1.5-compatible checkpoint with random weights, using ComfyUI's own classes.

This script runs inside a ComfyUI virtualenv (never comfykit's own environment) and must not
import comfykit. It is copied next to that environment and run as::

    python _make_checkpoint.py --comfyui /path/to/ComfyUI --out /path/to/random-sd15.safetensors

The file holds three parts, under the key prefixes a real SD1.5 ``.safetensors`` file uses:

* ``model.diffusion_model.``: the smallest UNet that ComfyUI still detects as SD1.5. Detection
  only pins ``context_dim=768``, ``model_channels=320``, ``use_linear_in_transformer=False``, no
  ``adm_in_channels`` and no temporal attention, so one level with one ResBlock and one
  SpatialTransformer, no middle block and no output-block transformers is enough.
* ``cond_stage_model.transformer.text_model.``: the full CLIP-L text encoder (its shape is fixed by
  ``comfy/sd1_clip_config.json``), converted with ComfyUI's own SD15 saving rules.
* ``first_stage_model.taesd_*``: a TAESD autoencoder, which ComfyUI's ``VAE`` accepts in place of
  the KL autoencoder, with TAESD's SD1.5 ``vae_scale`` / ``vae_shift``.

ComfyUI's layers skip weight initialisation, so every tensor is initialised here from a fixed
seed (the output is deterministic for a given torch build) and checked to be finite. The file is
stored in fp16 and written atomically (temp file, then ``os.replace``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

SEED = 20240501
UNET_PREFIX = "model.diffusion_model."
TAESD_SD15_SCALE = 0.18215  # what ComfyUI's VAELoader gives the SD1.5 TAESD (nodes.py)

# The config comfy.model_detection.detect_unet_config reports for the tiny UNet; SD15 adds
# num_heads=8 / num_head_channels=-1 on top of it.
UNET_CONFIG: dict[str, Any] = {
    "use_checkpoint": False,
    "image_size": 32,
    "use_spatial_transformer": True,
    "legacy": False,
    "adm_in_channels": None,
    "in_channels": 4,
    "out_channels": 4,
    "model_channels": 320,
    "num_res_blocks": [1],
    "transformer_depth": [1],
    "transformer_depth_output": [0, 0],
    "channel_mult": [1],
    "transformer_depth_middle": -2,
    "use_linear_in_transformer": False,
    "context_dim": 768,
    "use_temporal_resblock": False,
    "use_temporal_attention": False,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui", required=True, type=Path, help="ComfyUI source directory")
    parser.add_argument("--out", required=True, type=Path, help="destination .safetensors file")
    parser.add_argument("--seed", type=int, default=SEED, help=f"RNG seed (default {SEED})")
    return parser.parse_args(argv)


def setup_comfy_import(comfyui_dir: Path) -> None:
    """Make ``import comfy...`` work, on the CPU whatever hardware there is.

    comfy.cli_args builds its settings when first imported, from sys.argv only once argument
    parsing is enabled (as main.py does), and comfy.model_management then picks the device.
    """
    if not (comfyui_dir / "comfy" / "model_detection.py").is_file():
        sys.exit(f"error: {comfyui_dir} does not look like a ComfyUI source tree")
    sys.argv = [sys.argv[0], "--cpu"]
    sys.path.insert(0, str(comfyui_dir))
    os.chdir(comfyui_dir)
    import comfy.options

    comfy.options.enable_args_parsing()


def randomize(module: Any, generator: Any, std: float | None = None) -> None:
    """Initialise every float tensor: weights ~ N(0, std or 1/sqrt(fan_in)), norms 1, biases 0.

    0-dim scalars (TAESD's vae_scale / vae_shift, CLIP's logit_scale) are left to the caller.
    """
    import torch

    with torch.no_grad():
        for name, t in [*module.named_parameters(), *module.named_buffers()]:
            if not t.is_floating_point() or t.ndim == 0:
                continue
            if t.ndim >= 2:
                t.normal_(0.0, std or t[0].numel() ** -0.5, generator=generator)
            elif name.endswith("bias"):
                t.zero_()
            elif name.endswith("weight"):  # GroupNorm / LayerNorm scales
                t.fill_(1.0)
            else:
                raise RuntimeError(f"don't know how to initialise {name} {tuple(t.shape)}")


def build_state_dict(seed: int) -> dict[str, Any]:
    import comfy.ops
    import comfy.sd1_clip
    import comfy.supported_models
    import comfy.taesd.taesd
    import torch
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    generator = torch.Generator().manual_seed(seed)
    sd15 = comfy.supported_models.SD15(UNET_CONFIG)

    fp16 = torch.float16
    ops = comfy.ops.disable_weight_init
    unet = UNetModel(**sd15.unet_config, dtype=fp16, device="cpu", operations=ops)
    randomize(unet, generator)

    clip = comfy.sd1_clip.SD1ClipModel(device="cpu", dtype=fp16)
    randomize(clip, generator, std=0.02)  # CLIP's own initializer_range

    taesd = comfy.taesd.taesd.TAESD(latent_channels=4).to(fp16)
    randomize(taesd, generator)
    with torch.no_grad():
        taesd.vae_scale.fill_(TAESD_SD15_SCALE)
        taesd.vae_shift.fill_(0.0)

    sd: dict[str, Any] = {}
    sd.update(sd15.process_unet_state_dict_for_saving(unet.state_dict()))
    # Drops text_projection and logit_scale, which real SD1.5 files do not carry either.
    sd.update(sd15.process_clip_state_dict_for_saving(clip.state_dict()))
    sd.update(sd15.process_vae_state_dict_for_saving(taesd.state_dict()))

    for k, v in sd.items():
        # An fp32 sum of fp16 values cannot overflow, so it is finite iff every value is.
        if v.dtype != fp16 or not torch.isfinite(v.sum(dtype=torch.float32)):
            raise RuntimeError(f"{k} is not a finite fp16 tensor")
    return sd


def check_detection(sd: dict[str, Any]) -> None:
    """Exit non-zero unless ComfyUI maps the UNet to exactly this SD15 config."""
    import comfy.model_detection
    import comfy.supported_models

    config = comfy.model_detection.model_config_from_unet(sd, UNET_PREFIX)
    if type(config) is not comfy.supported_models.SD15:
        found = "no known model" if config is None else type(config).__name__
        sys.exit(f"error: ComfyUI detects the UNet as {found}, expected SD15")
    expected = comfy.supported_models.SD15(UNET_CONFIG).unet_config
    if config.unet_config != expected:
        sys.exit(
            f"error: ComfyUI detects the UNet config {config.unet_config}, expected {expected}"
        )
    for needed in (
        "first_stage_model.taesd_decoder.1.weight",
        "cond_stage_model.transformer.text_model.final_layer_norm.weight",
    ):
        if needed not in sd:
            sys.exit(f"error: the state dict lacks {needed}")


def save_atomic(sd: dict[str, Any], dest: Path, metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        save_file(sd, str(tmp), metadata=metadata)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # safetensors 0.8 creates its files 0600
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    comfyui_dir = args.comfyui.expanduser().resolve()
    dest = args.out.expanduser().resolve()
    start = time.perf_counter()
    setup_comfy_import(comfyui_dir)

    sd = build_state_dict(args.seed)
    check_detection(sd)
    params = sum(v.numel() for v in sd.values())
    # One entry only: safetensors writes metadata in hash order, so more would make the bytes vary.
    metadata = {"comfykit": f"random-weight SD1.5-compatible test checkpoint, seed {args.seed}"}
    save_atomic(sd, dest, metadata)
    seconds = time.perf_counter() - start
    size_mib = dest.stat().st_size / 2**20
    print(
        f"wrote {dest}: {size_mib:.1f} MiB, {params:,} parameters, {len(sd)} tensors, "
        f"{seconds:.2f} s"
    )


if __name__ == "__main__":
    main()
