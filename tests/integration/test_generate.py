"""generate / img2img / inpaint / upscale / generate_batch against the real server, both clients.

Every test taking the ``comfy`` fixture runs twice: with the blocking ``ComfyClient`` and with
``AsyncComfyClient`` (driven on a private event loop, so one test body covers both). Each client
records the HTTP requests it sends, which is how "nothing was sent" is checked.
"""

from __future__ import annotations

import asyncio
import io
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from comfykit import (
    AsyncComfyClient,
    ComfyClient,
    InputError,
    PreviewImage,
    Progress,
)
from comfykit.generation import BatchResult, GenerationRequest, GenerationResult
from comfykit.graph import Workflow
from comfykit.testing import CHECKPOINT_NAME

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SMALL: dict[str, Any] = {"width": 64, "height": 64, "steps": 2}


class Comfy:
    """One of the two clients behind the same blocking interface."""

    kind: str
    requests: list[str]
    client_id: str

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _record(self, request: httpx.Request) -> None:
        self.requests.append(f"{request.method} {request.url.path}")

    def generate(self, prompt: str, **kwargs: Any) -> GenerationResult:
        result: GenerationResult = self._call("generate", prompt, **kwargs)
        return result

    def generate_request(self, request: GenerationRequest) -> GenerationResult:
        result: GenerationResult = self._call("generate_request", request)
        return result

    def img2img(self, prompt: str, image: Any, **kwargs: Any) -> GenerationResult:
        result: GenerationResult = self._call("img2img", prompt, image, **kwargs)
        return result

    def inpaint(self, prompt: str, image: Any, mask: Any, **kwargs: Any) -> GenerationResult:
        result: GenerationResult = self._call("inpaint", prompt, image, mask, **kwargs)
        return result

    def upscale(self, image: Any, **kwargs: Any) -> GenerationResult:
        result: GenerationResult = self._call("upscale", image, **kwargs)
        return result

    def generate_batch(self, prompts: Any, **kwargs: Any) -> BatchResult:
        result: BatchResult = self._call("generate_batch", prompts, **kwargs)
        return result


class SyncComfy(Comfy):
    kind = "sync"

    def __init__(self, url: str) -> None:
        self.requests = []
        self._http = httpx.Client(base_url=url, event_hooks={"request": [self._record]})
        self.client = ComfyClient(url, http_client=self._http)
        self.client_id = self.client.client_id

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.client, name)(*args, **kwargs)

    def close(self) -> None:
        self.client.close()
        self._http.close()


class AsyncComfy(Comfy):
    kind = "async"

    def __init__(self, url: str) -> None:
        self.requests = []
        self._loop = asyncio.new_event_loop()

        async def record(request: httpx.Request) -> None:
            self._record(request)

        self._http = httpx.AsyncClient(base_url=url, event_hooks={"request": [record]})
        self.client = AsyncComfyClient(url, http_client=self._http)
        self.client_id = self.client.client_id

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self._loop.run_until_complete(getattr(self.client, name)(*args, **kwargs))

    def close(self) -> None:
        try:
            self._loop.run_until_complete(self.client.close())
            self._loop.run_until_complete(self._http.aclose())
        finally:
            self._loop.close()


@pytest.fixture(params=["sync", "async"])
def comfy(request: pytest.FixtureRequest, comfyui_url: str) -> Iterator[Comfy]:
    client: Comfy = SyncComfy(comfyui_url) if request.param == "sync" else AsyncComfy(comfyui_url)
    try:
        yield client
    finally:
        client.close()


def _sent_by(url: str, comfy: Comfy) -> list[str]:
    """Prompt ids in the server's queue or history that this test's client submitted."""
    client_id = comfy.client_id
    with ComfyClient(url) as plain:
        queue = plain.queue()
        queued = [q.prompt_id for q in (*queue.running, *queue.pending)
                  if q.extra_data.get("client_id") == client_id]  # fmt: skip
        finished = [
            pid
            for pid, entry in plain.history().items()
            if len(entry.prompt) > 3
            and isinstance(entry.prompt[3], dict)
            and entry.prompt[3].get("client_id") == client_id
        ]
    return queued + finished


def _graph(result: GenerationResult) -> Workflow:
    return Workflow.from_api(result.metadata["workflow"])


def _png(size: tuple[int, int], color: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def _seed() -> int:
    return random.randrange(2**31)


# -------------------------------------------------------------------------------- generate


def test_generate_size_seed_model_and_metadata(comfy: Comfy, comfyui_url: str) -> None:
    result = comfy.generate("a lighthouse", width=96, height=64, steps=2, batch_size=2)
    assert _sent_by(comfyui_url, comfy) == [result.prompt_id]  # the check the others rely on
    assert isinstance(result.seed, int) and 0 <= result.seed < 2**32
    assert [img.size for img in result.images] == [(96, 64), (96, 64)]
    assert len(result.image_files) == 2 and all(f.type == "output" for f in result.files)
    graph = _graph(result)
    assert graph.node("Checkpoint").inputs["ckpt_name"] == CHECKPOINT_NAME  # model=None
    assert graph.node("Sampler").inputs["seed"] == result.seed
    assert graph.node("Latent").inputs == {"width": 96, "height": 64, "batch_size": 2}
    meta = result.metadata
    assert meta["kind"] == "txt2img"
    assert meta["request"]["model"] == CHECKPOINT_NAME and meta["request"]["seed"] == result.seed
    assert [f["filename"] for f in meta["files"]] == [f.filename for f in result.files]
    timings = meta["timings"]
    assert timings["finished_at"] >= timings["submitted_at"] and timings["seconds"] > 0
    assert isinstance(timings["execution_ms"], (int, float)) and timings["execution_ms"] >= 0
    assert isinstance(timings["cached_nodes"], list)


def test_same_seed_gives_identical_png_bytes(comfy: Comfy) -> None:
    seed = _seed()
    first = comfy.generate("a red fox", seed=seed, **SMALL)
    other = comfy.generate("a red fox", seed=seed + 1, **SMALL)
    again = comfy.generate("a red fox", seed=seed, **SMALL)
    assert first.seed == again.seed == seed and other.seed == seed + 1
    sampler = _graph(again).node("Sampler").id
    assert sampler not in again.metadata["timings"]["cached_nodes"]  # it really sampled again
    assert again.files[0].filename != first.files[0].filename
    assert again.image_bytes() == first.image_bytes()
    assert other.image_bytes() != first.image_bytes()


def test_sampler_alias_and_generate_request(comfy: Comfy) -> None:
    result = comfy.generate("a fox", sampler="euler_a", scheduler="karras", **SMALL)
    sampler = _graph(result).node("Sampler").inputs
    assert sampler["sampler_name"] == "euler_ancestral" and sampler["scheduler"] == "karras"
    assert result.metadata["request"]["sampler"] == "euler_ancestral"
    request = GenerationRequest(prompt="a fox", seed=7, width=64, height=64, steps=2)
    again = comfy.generate_request(request)
    assert again.seed == 7 and again.images[0].size == (64, 64)


def test_unknown_sampler_scheduler_and_model_list_the_valid_ones(
    comfy: Comfy, comfyui_url: str
) -> None:
    with pytest.raises(InputError) as err:
        comfy.generate("x", sampler="eulr", **SMALL)
    message = str(err.value)
    assert "unknown sampler 'eulr'" in message and "Did you mean euler" in message
    assert "euler_ancestral" in message and "dpmpp_2m" in message
    with pytest.raises(InputError, match=r"unknown scheduler 'karas'.*karras"):
        comfy.generate("x", scheduler="karas", **SMALL)
    with pytest.raises(InputError) as err:
        comfy.generate("x", model="sd15.safetensors", **SMALL)
    assert "unknown model 'sd15.safetensors'" in str(err.value)
    assert CHECKPOINT_NAME in str(err.value)
    with pytest.raises(InputError, match="sampler 'nope'"):
        comfy.img2img("x", _png((64, 64)), sampler="nope", steps=2)
    assert not [r for r in comfy.requests if r.startswith("POST")]  # nothing queued or uploaded
    assert _sent_by(comfyui_url, comfy) == []


BAD_GENERATE: list[tuple[dict[str, Any], str]] = [
    ({"width": 65}, "width: must be a multiple of 8"),
    ({"height": 4096}, "height: Input should be less than or equal to 2048"),
    ({"width": 32}, "width: Input should be greater than or equal to 64"),
    ({"steps": 0}, "steps: Input should be greater than or equal to 1"),
    ({"cfg_scale": 50.0}, "cfg_scale: Input should be less than or equal to 30"),
    ({"seed": -1}, "seed: Input should be greater than or equal to 0"),
    ({"batch_size": 0}, "batch_size: Input should be greater than or equal to 1"),
    ({"prompt": "   "}, "prompt: must not be blank"),
    ({"prompt": ""}, "prompt: String should have at least 1 character"),
]


@pytest.mark.parametrize(("change", "expected"), BAD_GENERATE)
def test_bad_generate_inputs_fail_before_anything_is_sent(
    comfy: Comfy, comfyui_url: str, change: dict[str, Any], expected: str
) -> None:
    kwargs = {"prompt": "a fox", **SMALL, **change}
    prompt = kwargs.pop("prompt")
    with pytest.raises(InputError) as err:
        comfy.generate(prompt, **kwargs)
    assert str(err.value).startswith("invalid generation request: ")
    assert expected in str(err.value)
    assert comfy.requests == []
    assert _sent_by(comfyui_url, comfy) == []


def test_bad_image_call_inputs_fail_before_anything_is_sent(comfy: Comfy, comfyui_url: str) -> None:
    image = _png((64, 64))
    with pytest.raises(InputError, match=r"denoise: Input should be less than or equal to 1"):
        comfy.img2img("x", image, denoise=1.5)
    with pytest.raises(InputError, match=r"steps: Input should be greater than or equal to 1"):
        comfy.inpaint("x", image, image, steps=0)
    with pytest.raises(InputError, match=r"mask_channel must be alpha, red, green or blue"):
        comfy.inpaint("x", image, image, mask_channel="purple")
    assert comfy.requests == []
    with pytest.raises(InputError, match=r"generate_batch: no prompts"):
        comfy.generate_batch([])
    with pytest.raises(InputError, match=r"2 prompts but 1 seeds"):
        comfy.generate_batch(["a", "b"], seeds=[1])
    with pytest.raises(InputError, match=r"one prompt and seeds="):
        comfy.generate_batch("a")
    assert comfy.requests == []
    with pytest.raises(InputError, match=r"scale_by must be between 0\.01 and 8"):
        comfy.upscale(image, scale_by=100)
    with pytest.raises(InputError, match=r"give both width and height"):
        comfy.upscale(image, width=128)
    with pytest.raises(InputError, match=r"scale_by or width/height, not both"):
        comfy.upscale(image, scale_by=2, width=128, height=128)
    with pytest.raises(InputError, match=r"unknown upscale model 'x4\.pth'; available: none"):
        comfy.upscale(image, upscale_model="x4.pth")
    assert "POST /prompt" not in comfy.requests
    assert _sent_by(comfyui_url, comfy) == []


def test_bad_upscale_size_uploads_nothing(comfy: Comfy) -> None:
    with pytest.raises(InputError):
        comfy.upscale(_png((64, 64)), scale_by=100)
    assert "POST /upload/image" not in comfy.requests


# -------------------------------------------------------------------------------- images in


def test_img2img_with_a_missing_file_name_fails_before_submitting(comfy: Comfy) -> None:
    with pytest.raises(InputError, match="neither a local file nor a file on the server"):
        comfy.img2img("a boat", "no-such-dir/phto.png", steps=1)
    assert "POST /prompt" not in comfy.requests


def test_img2img_keeps_the_input_size(comfy: Comfy) -> None:
    source = Image.new("RGB", (96, 64), (30, 160, 90))
    result = comfy.img2img("a green field", source, denoise=0.5, steps=2, seed=_seed())
    assert result.images[0].size == (96, 64)
    graph = _graph(result)
    assert graph.node("Image").class_type == "LoadImage"
    assert str(graph.node("Image").inputs["image"]).startswith("comfykit/")
    assert graph.node("Sampler").inputs["denoise"] == 0.5
    assert result.metadata["kind"] == "img2img"


def test_img2img_from_a_path_and_from_a_previous_result(comfy: Comfy, tmp_path: Path) -> None:
    path = tmp_path / "source.png"
    path.write_bytes(_png((72, 48)))
    from_path = comfy.img2img("a boat", path, steps=2, batch_size=2)
    assert [img.size for img in from_path.images] == [(72, 48), (72, 48)]
    chained = comfy.img2img("a boat at night", from_path.files[0], steps=2)
    assert chained.images[0].size == (72, 48)
    assert _graph(chained).node("Image").inputs["image"].endswith(" [output]")
    assert "POST /upload/image" in comfy.requests
    assert comfy.requests.count("POST /upload/image") == 1  # the result was not re-uploaded


def test_upscale_by_two_and_to_a_size(comfy: Comfy) -> None:
    source = _png((40, 24), (10, 20, 250))
    doubled = comfy.upscale(source)
    assert doubled.images[0].size == (80, 48)
    assert doubled.seed is None and doubled.metadata["kind"] == "upscale"
    assert _graph(doubled).node("Upscale").inputs["scale_by"] == 2.0
    sized = comfy.upscale(source, width=64, height=32, method="bilinear")
    assert sized.images[0].size == (64, 32)
    assert _graph(sized).node("Upscale").inputs["upscale_method"] == "bilinear"


def test_inpaint_with_a_mask(comfy: Comfy) -> None:
    image = Image.new("RGB", (64, 64), (30, 120, 200))
    mask = Image.new("RGB", (64, 64), (0, 0, 0))
    mask.paste((255, 255, 255), (16, 16, 48, 48))
    result = comfy.inpaint("a red ball", image, mask, steps=2, seed=_seed())
    assert result.images[0].size == (64, 64)
    graph = _graph(result)
    assert graph.node("Mask").class_type == "LoadImageMask"
    assert graph.node("Mask").inputs["channel"] == "red"
    assert graph.node("Noise mask").class_type == "SetLatentNoiseMask"
    assert graph.node("Sampler").inputs["denoise"] == 1.0
    assert result.metadata["kind"] == "inpaint"


# -------------------------------------------------------------------------------- batches


def test_generate_batch_keeps_input_order_and_reports_the_failing_items(comfy: Comfy) -> None:
    base = _seed()
    prompts: list[Any] = [
        "a red fox",
        "   ",  # invalid: blank prompt
        {"prompt": "a blue bird", "steps": 3},
        {"prompt": "a cat", "sampler": "nope"},  # invalid: unknown sampler (found on resolve)
        GenerationRequest(prompt="a dog"),
    ]
    seeds = [base, base + 1, base + 2, base + 3, base + 4]
    batch = comfy.generate_batch(prompts, seeds=seeds, **SMALL)
    assert len(batch) == 5 and [item.index for item in batch] == [0, 1, 2, 3, 4]
    assert [item.ok for item in batch] == [True, False, True, False, True]
    assert isinstance(batch[1].error, InputError)
    assert "item 1" in str(batch[1].error) and "prompt" in str(batch[1].error)
    assert isinstance(batch[3].error, InputError) and "sampler 'nope'" in str(batch[3].error)
    results = batch.results
    assert [r.seed for r in results] == [base, base + 2, base + 4]
    assert [r.metadata["request"]["prompt"] for r in results] == [
        "a red fox",
        "a blue bird",
        "a dog",
    ]
    assert results[1].metadata["request"]["steps"] == 3
    assert all(r.images[0].size == (64, 64) for r in results)
    assert len({r.prompt_id for r in results}) == 3
    assert [item.index for item in batch.errors] == [1, 3]
    with pytest.raises(InputError, match="item 1"):
        batch.raise_for_errors()


def test_generate_batch_of_one_prompt_with_seeds(comfy: Comfy) -> None:
    base = _seed()
    batch = comfy.generate_batch("a lighthouse", seeds=[base, base + 1], **SMALL)
    assert [r.seed for r in batch.results] == [base, base + 1]
    first, second = batch.results
    assert first.image_bytes() != second.image_bytes()
    batch.raise_for_errors()


# -------------------------------------------------------------------------------- progress


def test_callbacks_receive_typed_events(comfy: Comfy) -> None:
    progress: list[Progress] = []
    previews: list[PreviewImage] = []
    result = comfy.generate(
        "a fox", width=64, height=64, steps=3, seed=_seed(),
        on_progress=progress.append, on_preview=previews.append,
    )  # fmt: skip
    assert progress and all(isinstance(e, Progress) for e in progress)
    assert [e.value for e in progress] == [1, 2, 3] and {e.max for e in progress} == {3}
    assert {e.prompt_id for e in progress} == {result.prompt_id}
    assert previews and all(isinstance(e, PreviewImage) for e in previews)
    assert previews[-1].to_pil().size[0] > 0


def test_progress_bar(comfy: Comfy, capsys: pytest.CaptureFixture[str]) -> None:
    result = comfy.generate("a fox", width=64, height=64, steps=3, seed=_seed(), progress=True)
    err = capsys.readouterr().err
    assert "txt2img" in err and "3/3" in err
    assert result.images[0].size == (64, 64)


# -------------------------------------------------------------------------------- results


def test_save_never_overwrites_and_notebook_reprs(comfy: Comfy, tmp_path: Path) -> None:
    result = comfy.generate("a fox", batch_size=2, seed=_seed(), **SMALL)
    first = result.save(tmp_path)
    second = result.save(tmp_path)
    named = result.save(tmp_path / "sub", prefix="fox")
    assert second == first  # the same bytes are not written twice
    paths = [*first, *named]
    assert len(set(paths)) == 4 and all(p.is_file() for p in paths)
    assert [p.read_bytes() for p in first] == result.image_bytes()
    assert [p.name for p in named] == ["fox.png", "fox-1.png"]

    png = result._repr_png_()
    assert png is not None and png.startswith(PNG_SIGNATURE)
    with Image.open(io.BytesIO(png)) as grid:
        assert grid.size == (128, 64)  # the batch as a grid
    html = result._repr_html_()
    assert result.prompt_id in html and f"seed {result.seed}" in html
    assert 'src="data:image/png;base64,' in html
    assert result.grid(columns=1).size == (64, 128)

    single = comfy.generate("a fox", seed=_seed(), **SMALL)
    png = single._repr_png_()
    assert png is not None
    with Image.open(io.BytesIO(png)) as img:
        assert img.size == (64, 64)
    assert repr(single).startswith(f"<GenerationResult {single.prompt_id}")


# -------------------------------------------------------------------------------- async only


async def test_async_generate_runs_concurrently_and_results_outlive_the_client(
    comfyui_url: str,
) -> None:
    async with AsyncComfyClient(comfyui_url) as comfy:
        first, second = await asyncio.gather(
            comfy.generate("a red fox", seed=1, **SMALL),
            comfy.generate("a blue bird", seed=2, **SMALL),
        )
    assert first.prompt_id != second.prompt_id
    assert (first.seed, second.seed) == (1, 2)
    # async results are downloaded before generate() returns, so they work after close()
    assert first.images[0].size == second.images[0].size == (64, 64)
