"""ComfyUI 0.3.75 (the live server) has no assets API: every asset call says so, typed."""

from __future__ import annotations

import pytest

from comfykit import AssetsUnavailableError, AsyncComfyClient


async def test_asset_calls_raise_assets_unavailable(comfyui_url: str) -> None:
    async with AsyncComfyClient(comfyui_url) as comfy:
        with pytest.raises(AssetsUnavailableError, match="0.3.75") as err:
            await comfy.assets()
        assert err.value.comfyui_version == "0.3.75"
        with pytest.raises(AssetsUnavailableError, match="--enable-assets"):
            await comfy.asset_tags()
        assert not (await comfy.server_capabilities()).assets
