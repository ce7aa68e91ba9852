"""Every HTTP route of the client against the real ComfyUI."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import httpx
import pytest
from PIL import Image

from comfykit import (
    AsyncComfyClient,
    ComfyClient,
    ComfyConnectionError,
    FileRef,
    InputError,
    NotFoundError,
)
from comfykit.testing import CHECKPOINT_NAME, free_port
from tests import graphs


def _png(color: tuple[int, int, int], size: tuple[int, int] = (16, 12), mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color if mode == "RGB" else (*color, 128)).save(buf, format="PNG")
    return buf.getvalue()


async def test_system_stats_features_and_listings(comfyui_url: str) -> None:
    async with AsyncComfyClient(comfyui_url) as comfy:
        stats = await comfy.system_stats()
        assert stats.system.comfyui_version == "0.3.75"
        assert stats.devices and stats.devices[0].type == "cpu"
        assert "required_frontend_version" in (stats.system.model_extra or {})
        features = await comfy.features()
        assert features.supports_preview_metadata is True
        assert features.max_upload_size and features.max_upload_size > 0
        folders = await comfy.models()
        assert "checkpoints" in folders and "loras" in folders
        assert CHECKPOINT_NAME in await comfy.models("checkpoints")
        assert await comfy.embeddings() == []
        assert any(e.startswith("/extensions/") for e in await comfy.extensions())


async def test_unknown_model_folder_is_not_found(comfyui_url: str) -> None:
    async with AsyncComfyClient(comfyui_url) as comfy:
        with pytest.raises(NotFoundError) as err:
            await comfy.models("no-such-folder")
        assert err.value.status_code == 404


async def test_object_info_all_one_and_unknown(comfyui_url: str) -> None:
    async with AsyncComfyClient(comfyui_url) as comfy:
        everything = await comfy.object_info()
        assert {"EmptyImage", "KSampler", "TestSleep"} <= everything.keys()
        one = await comfy.object_info("EmptyImage")
        assert list(one) == ["EmptyImage"]
        assert one["EmptyImage"]["input"]["required"]["width"][0] == "INT"
        assert await comfy.object_info("NoSuchNodeClass") == {}


async def test_queue_history_and_deletion(comfyui_url: str) -> None:
    async with AsyncComfyClient(comfyui_url) as comfy:
        first = await comfy.run(graphs.text("a", "b"), timeout=60)
        second = await comfy.run(graphs.text("c", str(uuid.uuid4())), timeout=60)
        assert first.text == {"2": ["a-b"]}
        one = await comfy.history(first.prompt_id)
        assert list(one) == [first.prompt_id]
        entry = one[first.prompt_id]
        assert entry.status is not None and entry.status.status_str == "success"
        assert entry.prompt_id == first.prompt_id
        assert entry.api_prompt["1"]["class_type"] == "StringConcatenate"
        newest = await comfy.history(max_items=1)
        assert list(newest) == [second.prompt_id]
        await comfy.delete_history([first.prompt_id])
        assert await comfy.history(first.prompt_id) == {}
        assert second.prompt_id in await comfy.history()
        queue = await comfy.queue()
        assert first.prompt_id not in queue
        with pytest.raises(InputError):
            await comfy.history(max_items=0)


async def test_clear_queue_removes_pending_only(comfyui_url: str) -> None:
    async with AsyncComfyClient(comfyui_url) as comfy:
        blocker = await comfy.submit(graphs.sleep(1.5, value=int(uuid.uuid4().int % 1000)))
        pending = [
            await comfy.submit(graphs.text("p", str(i) + uuid.uuid4().hex)) for i in range(3)
        ]
        queue = await comfy.queue()
        assert [q.prompt_id for q in queue.pending] == [j.prompt_id for j in pending]
        assert queue.pending == sorted(queue.pending, key=lambda q: q.number)
        await comfy.clear_queue()
        queue = await comfy.queue()
        assert not queue.pending
        assert blocker.prompt_id in queue
        await blocker.result(timeout=60)
        for job in pending:
            assert job.prompt_id not in await comfy.queue()


async def test_free_and_global_interrupt_when_idle_are_harmless(comfyui_url: str) -> None:
    async with AsyncComfyClient(comfyui_url) as comfy:
        await comfy.free(unload_models=False, free_memory=False)
        await comfy.interrupt()
        result = await comfy.run(graphs.text("still", "works"), timeout=60)
        assert result.text["2"] == ["still-works"]


async def test_upload_image_variants_dedupe_and_overwrite(comfyui_url: str, tmp_path: Path) -> None:
    sub = f"up-{uuid.uuid4().hex[:8]}"
    red, blue = _png((255, 0, 0)), _png((0, 0, 255))
    async with AsyncComfyClient(comfyui_url) as comfy:
        a = await comfy.upload_image(red, filename="a.png", subfolder=sub)
        assert (a.name, a.subfolder, a.type) == ("a.png", sub, "input")
        assert a.ref == f"{sub}/a.png"
        same = await comfy.upload_image(red, filename="a.png", subfolder=sub)
        assert same.name == "a.png"  # identical bytes: reused
        other = await comfy.upload_image(blue, filename="a.png", subfolder=sub)
        assert other.name == "a (1).png"  # different bytes: renamed
        replaced = await comfy.upload_image(blue, filename="a.png", subfolder=sub, overwrite=True)
        assert replaced.name == "a.png"
        assert await comfy.download(replaced) == blue

        path = tmp_path / "from-disk.png"
        path.write_bytes(_png((1, 2, 3)))
        from_path = await comfy.upload_image(path, subfolder=sub)
        assert from_path.name == "from-disk.png"
        with open(path, "rb") as fh:
            from_file = await comfy.upload_image(fh, subfolder=sub, filename="fh.png")
        assert from_file.name == "fh.png"
        from_pil = await comfy.upload_image(Image.new("RGB", (5, 5), (9, 9, 9)), subfolder=sub)
        got = Image.open(io.BytesIO(await comfy.download(from_pil)))  # type: ignore[arg-type]
        assert got.size == (5, 5) and got.convert("RGB").getpixel((0, 0)) == (9, 9, 9)

        # The upload feeds LoadImage.
        graph = {
            "1": {"class_type": "LoadImage", "inputs": {"image": from_path.ref}},
            "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
            "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
        }
        result = await comfy.run(graph, timeout=60)
        img = await result.images[0].to_pil()
        assert img.convert("RGB").getpixel((0, 0)) == (254, 253, 252)


async def test_upload_rejects_bad_input_before_sending(comfyui_url: str, tmp_path: Path) -> None:
    async with AsyncComfyClient(comfyui_url) as comfy:
        with pytest.raises(InputError, match="type must be one of"):
            await comfy.upload_image(_png((0, 0, 0)), type="models")
        with pytest.raises(InputError, match="no such file"):
            await comfy.upload_image(tmp_path / "missing.png")
        with pytest.raises(InputError, match="empty"):
            await comfy.upload_image(b"")
        with pytest.raises(InputError, match="subfolder"):
            await comfy.upload_image(_png((0, 0, 0)), subfolder="../escape")
        with pytest.raises(InputError, match="plain name"):
            await comfy.upload_image(_png((0, 0, 0)), filename="a/b.png")


async def test_upload_mask_applies_alpha_to_original(comfyui_url: str) -> None:
    sub = f"mask-{uuid.uuid4().hex[:8]}"
    async with AsyncComfyClient(comfyui_url) as comfy:
        original = await comfy.upload_image(
            _png((10, 20, 30), (8, 8)), filename="o.png", subfolder=sub
        )
        mask = await comfy.upload_mask(
            _png((0, 0, 0), (8, 8), mode="RGBA"),
            filename="m.png",
            subfolder=sub,
            original_ref=original,
        )
        assert mask.name == "m.png"
        img = Image.open(io.BytesIO(await comfy.download(mask)))  # type: ignore[arg-type]
        assert img.mode == "RGBA"
        assert img.getpixel((1, 1)) == (10, 20, 30, 128)


async def test_download_to_path_file_and_url(comfyui_url: str, tmp_path: Path) -> None:
    async with AsyncComfyClient(comfyui_url) as comfy:
        result = await comfy.run(graphs.invert(0x405060, width=40, height=20), timeout=60)
        (image,) = result.images
        data = await image.read()
        dest = tmp_path / "x.png"
        assert await comfy.download(image, dest) == dest
        assert dest.read_bytes() == data
        buf = io.BytesIO()
        assert await comfy.download(image, buf) is None
        assert buf.getvalue() == data
        saved = await image.save(tmp_path)
        assert saved == tmp_path / image.filename and saved.read_bytes() == data
        assert httpx.get(image.url).content == data
        assert comfy.view_url({"filename": "a b.png", "subfolder": "s", "type": "temp"}) == (
            f"{comfyui_url}/view?filename=a+b.png&subfolder=s&type=temp"
        )
        with pytest.raises(NotFoundError):
            await comfy.download(FileRef(filename="nope.png", subfolder="", type="output"))
        with pytest.raises(NotFoundError):
            await comfy.download("missing/nope.png [output]", tmp_path / "never.png")
        assert not (tmp_path / "never.png").exists()


def test_sync_client_routes(comfyui_url: str) -> None:
    with ComfyClient(comfyui_url) as comfy:
        assert comfy.system_stats().system.comfyui_version == "0.3.75"
        assert "EmptyImage" in comfy.object_info("EmptyImage")
        up = comfy.upload_image(_png((1, 1, 1)), subfolder=f"s-{uuid.uuid4().hex[:6]}")
        assert comfy.download(up) == _png((1, 1, 1))
        assert isinstance(comfy.queue().pending, list)


async def test_server_down_is_a_typed_error_not_a_hang() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with AsyncComfyClient(url, max_retries=1, timeout=5) as comfy:
        with pytest.raises(ComfyConnectionError) as err:
            await comfy.system_stats()
        assert isinstance(err.value.__cause__, httpx.ConnectError)
        with pytest.raises(ComfyConnectionError):
            await comfy.submit(graphs.text("a", "b"))
    with ComfyClient(url, max_retries=0) as comfy, pytest.raises(ComfyConnectionError):
        comfy.queue()


async def test_with_options_shares_pool_and_socket(comfyui_url: str) -> None:
    async with AsyncComfyClient(comfyui_url) as comfy:
        fast = comfy.with_options(timeout=3, max_retries=0, headers={"X-Test": "1"})
        assert fast.timeout.read == 3 and fast.max_retries == 0
        assert comfy.timeout.read == 30 and comfy.max_retries == 2
        assert fast._shared is comfy._shared
        result = await fast.run(graphs.text("w", "o"), timeout=60)
        assert result.text["2"] == ["w-o"]
        assert comfy._shared.stream.connects == 1
