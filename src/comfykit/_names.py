"""Matching what a user names (models, samplers, schedulers) against what the server has.

Pure: it reads a :class:`~comfykit.graph.NodeCatalog` and lists of model files, no I/O.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from comfykit._exceptions import InputError

if TYPE_CHECKING:
    from comfykit.graph import NodeCatalog

__all__ = ["SAMPLER_ALIASES", "close_names", "resolve_choice", "resolve_model"]

#: Common short names accepted for ComfyUI's sampler names.
SAMPLER_ALIASES: dict[str, str] = {
    "euler_a": "euler_ancestral",
    "euler a": "euler_ancestral",
    "k_euler": "euler",
    "k_euler_a": "euler_ancestral",
    "dpm++_2m": "dpmpp_2m",
    "dpmpp2m": "dpmpp_2m",
    "dpm++_sde": "dpmpp_sde",
    "dpm++_2m_sde": "dpmpp_2m_sde",
}


def _choices(catalog: NodeCatalog, class_type: str, input_name: str) -> tuple[str, ...]:
    spec = catalog.get(class_type)
    entry = spec.input(input_name) if spec is not None else None
    if entry is None or entry.choices is None:
        return ()
    return tuple(str(c) for c in entry.choices)


def resolve_choice(
    value: str,
    catalog: NodeCatalog,
    *,
    what: str,
    class_type: str = "KSampler",
    input_name: str,
    aliases: Mapping[str, str] | None = None,
) -> str:
    """Map ``value`` (or its alias) onto the server's combo for ``class_type.input_name``."""
    valid = _choices(catalog, class_type, input_name)
    if not valid:
        return value
    if value in valid:
        return value
    mapped = (aliases or {}).get(value.lower(), value.lower())
    if mapped in valid:
        return mapped
    close = close_names(value, valid)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise InputError(f"unknown {what} {value!r}.{hint} Valid {what}s: {', '.join(valid)}")


def resolve_model(model: str | None, checkpoints: Sequence[str]) -> str:
    """The checkpoint to use: ``model`` if the server has it, else the server's only one.

    A name without its extension (``"sd15"`` for ``sd15.safetensors``) is accepted when exactly
    one checkpoint has that stem. An unknown name is an :class:`~comfykit.InputError` listing
    the closest checkpoints ("did you mean"), matched on whole names and on their stems.
    """
    if model is None:
        if len(checkpoints) == 1:
            return checkpoints[0]
        if not checkpoints:
            raise InputError("model=None but the server has no checkpoint in models/checkpoints")
        raise InputError(
            "model=None but the server has several checkpoints; pick one of: "
            + ", ".join(checkpoints)
        )
    if model in checkpoints:
        return model
    same_stem = [c for c in checkpoints if _stem(c) == _stem(model)]
    if len(same_stem) == 1:
        return same_stem[0]
    close = close_names(model, checkpoints)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    listing = ", ".join(checkpoints) or "none"
    raise InputError(f"unknown model {model!r}.{hint} Available checkpoints: {listing}")


def close_names(value: str, names: Sequence[str], n: int = 3) -> list[str]:
    """The names closest to ``value``: by spelling of the whole name or of its stem (the file name
    without folder and extension), and names whose stem contains ``value``'s."""
    wanted = _stem(value)
    by_stem: dict[str, list[str]] = {}
    for name in names:
        by_stem.setdefault(_stem(name), []).append(name)
    found = difflib.get_close_matches(value, names, n=n)
    for stem in difflib.get_close_matches(wanted, list(by_stem), n=n, cutoff=0.5):
        found.extend(by_stem[stem])
    if wanted:
        found.extend(name for stem, group in by_stem.items() if wanted in stem for name in group)
    return list(dict.fromkeys(found))[:n]


def _stem(name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1].lower()
    return base.rsplit(".", 1)[0] if "." in base else base
