"""The pure pieces of high-level generation: requests, choices, results, batches, progress."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from comfykit import ComfyError, FileRef, InputError, PreviewImage, Progress, ProgressState
from comfykit.generation import (
    SAMPLER_ALIASES,
    BatchItem,
    BatchResult,
    GenerationRequest,
    GenerationResult,
    ProgressReporter,
    file_ref_of,
    resolve_choice,
    resolve_model,
)
from comfykit.graph import NodeCatalog

FIXTURE = Path(__file__).parents[1] / "fixtures" / "object_info_0.3.75.json"
CATALOG = NodeCatalog.from_object_info(json.loads(FIXTURE.read_text(encoding="utf-8")))


def _png(size: tuple[int, int], color: tuple[int, int, int] = (10, 20, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


# -------------------------------------------------------------------------------- request


def test_request_defaults() -> None:
    request = GenerationRequest(prompt="a fox")
    assert request.model_dump() == {
        "prompt": "a fox",
        "negative_prompt": "",
        "model": None,
        "width": 512,
        "height": 512,
        "steps": 20,
        "cfg_scale": 7.0,
        "sampler": "euler",
        "scheduler": "normal",
        "seed": None,
        "batch_size": 1,
        "denoise": 1.0,
    }


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("width", 500, "width: must be a multiple of 8 (try 496) (got 500)"),
        ("height", 63, "height: Input should be greater than or equal to 64 (got 63)"),
        ("width", 2056, "width: Input should be less than or equal to 2048 (got 2056)"),
        ("steps", 151, "steps: Input should be less than or equal to 150 (got 151)"),
        ("steps", 0, "steps: Input should be greater than or equal to 1 (got 0)"),
        ("cfg_scale", 0.5, "cfg_scale: Input should be greater than or equal to 1"),
        ("seed", 2**64, "seed: Input should be less than or equal to 18446744073709551615"),
        ("seed", -1, "seed: Input should be greater than or equal to 0 (got -1)"),
        ("batch_size", 65, "batch_size: Input should be less than or equal to 64 (got 65)"),
        ("denoise", 1.01, "denoise: Input should be less than or equal to 1"),
        ("prompt", " \n", "prompt: must not be blank (got ' \\n')"),
        ("width", "wide", "width: Input should be a valid integer"),
        ("width", "64", "width: Input should be a valid integer (got '64')"),
        ("seed", True, "seed: Input should be a valid integer (got True)"),
        ("steps", 2.0, "steps: Input should be a valid integer (got 2.0)"),
        ("widht", 64, "widht: unknown option (did you mean width?) (got 64)"),
        ("cfg", 5, "cfg: unknown option (did you mean cfg_scale?) (got 5)"),
    ],
)
def test_request_bounds_name_the_field(field: str, value: Any, message: str) -> None:
    values: dict[str, Any] = {"prompt": "a fox", field: value}
    with pytest.raises(InputError) as err:
        GenerationRequest.build(**values)
    assert str(err.value).startswith("invalid generation request: ")
    assert message in str(err.value)
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_the_sdk_sets_no_prompt_length_limit_and_cuts_long_values_in_messages() -> None:
    long = "a fox " * 1000  # 6,000 characters: ComfyUI sets no limit, nor does the SDK
    assert GenerationRequest.build(prompt=long).prompt == long
    with pytest.raises(InputError) as err:
        GenerationRequest.build(prompt=long, width=long)
    text = str(err.value)
    assert "width: Input should be a valid integer" in text
    assert "(6002 characters)" in text and len(text) < 300


def test_request_lists_every_bad_field() -> None:
    with pytest.raises(InputError) as err:
        GenerationRequest.build(prompt="", width=65, steps=0)
    text = str(err.value)
    assert text.count("; ") == 2
    assert "prompt:" in text and "width:" in text and "steps:" in text
    assert isinstance(err.value, ValueError) and isinstance(err.value, ComfyError)


def test_request_accepts_the_bounds() -> None:
    low = GenerationRequest.build(prompt="x", width=64, height=64, steps=1, cfg_scale=1, seed=0)
    high = GenerationRequest.build(
        prompt="x", width=2048, height=2048, steps=150, cfg_scale=30, seed=2**64 - 1,
        batch_size=64, denoise=0.0,
    )  # fmt: skip
    assert (low.width, high.width, high.seed) == (64, 2048, 2**64 - 1)


def test_with_seed() -> None:
    fixed = GenerationRequest(prompt="x", seed=5)
    assert fixed.with_seed() is fixed
    unseeded = GenerationRequest(prompt="x")
    seeded = unseeded.with_seed()
    assert seeded is not unseeded and unseeded.seed is None
    assert seeded.seed is not None and 0 <= seeded.seed < 2**32
    assert seeded.model_dump(exclude={"seed"}) == unseeded.model_dump(exclude={"seed"})


# -------------------------------------------------------------------------------- choices


def test_resolve_choice_exact_alias_and_case() -> None:
    kwargs: dict[str, Any] = {"what": "sampler", "input_name": "sampler_name"}
    assert resolve_choice("dpmpp_2m", CATALOG, **kwargs) == "dpmpp_2m"
    aliases = {**kwargs, "aliases": SAMPLER_ALIASES}
    assert resolve_choice("euler_a", CATALOG, **aliases) == "euler_ancestral"
    assert resolve_choice("Euler A", CATALOG, **aliases) == "euler_ancestral"
    assert resolve_choice("dpm++_2m", CATALOG, **aliases) == "dpmpp_2m"
    assert resolve_choice("DDIM", CATALOG, **kwargs) == "ddim"
    assert all(target in CATALOG["KSampler"].input("sampler_name").choices  # type: ignore[union-attr, operator]
               for target in SAMPLER_ALIASES.values())  # fmt: skip


def test_resolve_choice_unknown_lists_valid_values() -> None:
    with pytest.raises(InputError) as err:
        resolve_choice("eulr", CATALOG, what="sampler", input_name="sampler_name")
    text = str(err.value)
    assert text.startswith("unknown sampler 'eulr'. Did you mean euler")
    assert "Valid samplers: euler, euler_cfg_pp, euler_ancestral," in text and "ddim" in text
    with pytest.raises(
        InputError, match=r"^unknown scheduler 'zzz'\. Valid schedulers: simple, .*karras"
    ):
        resolve_choice("zzz", CATALOG, what="scheduler", input_name="scheduler")
    with pytest.raises(InputError, match="unknown upscale method 'lanczoz'. Did you mean lanczos"):
        resolve_choice(
            "lanczoz", CATALOG, what="upscale method", class_type="ImageScaleBy",
            input_name="upscale_method",
        )  # fmt: skip


def test_resolve_choice_without_choices_keeps_the_value() -> None:
    assert resolve_choice("x", CATALOG, what="thing", class_type="Nope", input_name="y") == "x"
    assert resolve_choice("x", CATALOG, what="seed", input_name="seed") == "x"


def test_resolve_model() -> None:
    assert resolve_model(None, ["only.safetensors"]) == "only.safetensors"
    assert resolve_model("b.ckpt", ["a.safetensors", "b.ckpt"]) == "b.ckpt"
    with pytest.raises(InputError, match="model=None but the server has no checkpoint"):
        resolve_model(None, [])
    with pytest.raises(InputError, match="several checkpoints; pick one of: a.safetensors, b"):
        resolve_model(None, ["a.safetensors", "b.safetensors"])
    with pytest.raises(InputError) as err:
        resolve_model("sd15.safetensors", ["sd15-pruned.safetensors", "flux.gguf"])
    assert str(err.value) == (
        "unknown model 'sd15.safetensors'. Did you mean sd15-pruned.safetensors? "
        "Available checkpoints: sd15-pruned.safetensors, flux.gguf"
    )
    with pytest.raises(InputError, match="Available checkpoints: none$"):
        resolve_model("x", [])


# -------------------------------------------------------------------------------- results


def _result(names: list[str], images: list[bytes] | None = None, **kwargs: Any) -> GenerationResult:
    files = [FileRef(filename=n, subfolder="comfykit", type="output") for n in names]
    return GenerationResult(
        prompt_id="p-1",
        seed=kwargs.pop("seed", 42),
        files=files,
        metadata={"kind": "txt2img"},
        image_bytes=images,
        **kwargs,
    )


def test_save_never_overwrites(tmp_path: Path) -> None:
    data = [_png((8, 8), (255, 0, 0)), _png((8, 8), (0, 255, 0))]
    result = _result(["a_00001_.png", "a_00001_.png"], data)
    (tmp_path / "a_00001_.png").write_bytes(b"precious")
    first = result.save(tmp_path)
    assert [p.name for p in first] == ["a_00001_-1.png", "a_00001_-2.png"]
    assert result.save(tmp_path) == first  # the same bytes again: nothing new written
    assert (tmp_path / "a_00001_.png").read_bytes() == b"precious"
    assert [p.read_bytes() for p in first] == data
    named = result.save(tmp_path / "new" / "dir", prefix="fox")
    assert [p.name for p in named] == ["fox.png", "fox-1.png"]
    forced = result.save(tmp_path, overwrite=True)
    assert [p.name for p in forced] == ["a_00001_.png", "a_00001_.png"]
    assert (tmp_path / "a_00001_.png").read_bytes() == data[1]


def test_save_to_a_folder_or_a_file_name(tmp_path: Path) -> None:
    one = _result(["x_00001_.png"], [_png((8, 8), (1, 2, 3))])
    assert one.save(f"{tmp_path}/out/") == [tmp_path / "out" / "x_00001_.png"]
    assert one.save(tmp_path / "cat.png") == [tmp_path / "cat.png"]
    two = _result(["a.png", "b.png"], [_png((8, 8), (1, 2, 3)), _png((8, 8), (3, 2, 1))])
    with pytest.raises(InputError, match=r"is a file name but the result has 2 images"):
        two.save(tmp_path / "cat.png")


def test_batch_results_save_and_show_themselves(tmp_path: Path) -> None:
    ok = [_result([f"b{i}.png"], [_png((8, 8), (i * 40, 0, 0))]) for i in range(2)]
    failed = BatchItem(index=1, request=None, error=InputError("nope"))
    batch = BatchResult(
        items=[BatchItem(0, None, result=ok[0]), failed, BatchItem(2, None, result=ok[1])]
    )
    paths = batch.save(tmp_path / "batch")
    assert [p.name for p in paths] == ["b0.png", "b1.png"]
    assert [p.read_bytes() for p in paths] == [r.image_bytes()[0] for r in ok]
    with pytest.raises(InputError, match="a batch is saved into a folder"):
        batch.save(tmp_path / "one.png")
    png = batch._repr_png_()
    assert png is not None
    with Image.open(io.BytesIO(png)) as grid:
        assert grid.size == (16, 8)  # the two good images side by side
    html = batch._repr_html_()
    assert "batch of 3 · 2 ok · 1 failed" in html and "data:image/png;base64," in html
    assert BatchResult(items=[BatchItem(0, None, error=InputError("x"))])._repr_png_() is None
    assert repr(batch) == "<BatchResult items=3 ok=2>"


def test_images_are_fetched_once_and_only_images() -> None:
    calls: list[str] = []
    pixels = {"a.png": _png((16, 8)), "b.webp": _png((8, 16))}

    def fetch(ref: Any) -> bytes:
        calls.append(ref.filename)
        return pixels[ref.filename]

    result = _result(["a.png", "notes.txt", "b.webp"], None, fetch=fetch)
    assert [f.filename for f in result.image_files] == ["a.png", "b.webp"]
    assert calls == []  # lazy
    assert [img.size for img in result.images] == [(16, 8), (8, 16)]
    assert result.images is result.images
    assert result.image_bytes() == [pixels["a.png"], pixels["b.webp"]]
    assert calls == ["a.png", "b.webp"]


def test_without_a_fetch_function_images_raise() -> None:
    with pytest.raises(InputError, match="no way to download"):
        _ = _result(["a.png"]).images


def test_grid_and_notebook_reprs() -> None:
    data = [_png((16, 8), (255, 0, 0)), _png((16, 8), (0, 0, 255)), _png((8, 8))]
    result = _result(["a.png", "b.png", "c.png"], data, seed=7)
    assert result.grid().size == (48, 8)
    grid = result.grid(columns=2)
    assert grid.size == (32, 16)
    assert grid.getpixel((20, 2)) == (0, 0, 255)
    assert grid.getpixel((20, 12)) == (255, 255, 255)  # empty cell
    png = result._repr_png_()
    assert png is not None
    with Image.open(io.BytesIO(png)) as img:
        assert img.size == (48, 8)
    html = result._repr_html_()
    assert html.startswith("<p>prompt p-1 · seed 7 · 3 file(s)</p>")
    assert '<img src="data:image/png;base64,' in html
    assert repr(result) == "<GenerationResult p-1 seed=7 images=3>"
    single = _result(["a.png"], [data[0]])
    single_png = single._repr_png_()
    assert single_png is not None
    with Image.open(io.BytesIO(single_png)) as img:
        assert img.size == (16, 8)


def test_a_result_without_images() -> None:
    result = _result(["notes.txt"], [])
    assert result._repr_png_() is None
    assert result._repr_html_() == "<p>prompt p-1 · seed 42 · 1 file(s)</p>"
    with pytest.raises(InputError, match="no images"):
        result.grid()


def test_file_ref_of() -> None:
    ref = file_ref_of(FileRef(filename="a.png", subfolder="s", type="temp"))
    assert type(ref) is FileRef and ref.model_dump() == {
        "filename": "a.png",
        "subfolder": "s",
        "type": "temp",
    }


# -------------------------------------------------------------------------------- batches


def test_batch_result() -> None:
    ok = BatchItem(0, GenerationRequest(prompt="a"), result=_result(["a.png"], []))
    failed = BatchItem(1, None, error=InputError("generate_batch item 1: bad"))
    also_ok = BatchItem(2, GenerationRequest(prompt="c"), result=_result(["c.png"], []))
    batch = BatchResult([ok, failed, also_ok])
    assert len(batch) == 3 and list(batch) == [ok, failed, also_ok] and batch[1] is failed
    assert [item.ok for item in batch] == [True, False, True]
    assert batch.results == [ok.result, also_ok.result]
    assert batch.errors == [failed]
    with pytest.raises(InputError, match="item 1"):
        batch.raise_for_errors()
    BatchResult([ok, also_ok]).raise_for_errors()
    assert BatchResult().results == []


# -------------------------------------------------------------------------------- progress


def test_progress_reporter_dispatches_typed_events() -> None:
    progress: list[Progress] = []
    previews: list[PreviewImage] = []
    reporter = ProgressReporter(on_progress=progress.append, on_preview=previews.append)
    assert reporter.active
    step = Progress(prompt_id="p", node="5", value=1, max=2)
    preview = PreviewImage(prompt_id="p", image=_png((4, 4)), mime_type="image/png")
    reporter(step)
    reporter(preview)
    reporter(ProgressState(prompt_id="p"))
    assert progress == [step] and previews == [preview] and reporter.steps_seen == 1
    reporter.close()
    assert not ProgressReporter().active
    assert ProgressReporter(bar=True).active


def test_progress_bar_uses_tqdm(capsys: pytest.CaptureFixture[str]) -> None:
    reporter = ProgressReporter(bar=True, description="txt2img")
    for value in (1, 2, 3):
        reporter(Progress(prompt_id="p", value=value, max=3))
    reporter.close()
    err = capsys.readouterr().err
    assert "txt2img" in err and "3/3" in err


def test_progress_bar_without_tqdm(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    reporter = ProgressReporter(bar=True, description="img2img")
    reporter(Progress(prompt_id="p", value=1, max=4))
    reporter(Progress(prompt_id="p", value=2, max=4))
    reporter(Progress(prompt_id="p", value=1, max=2))  # a second sampler: a new bar
    reporter.close()
    err = capsys.readouterr().err
    assert err == "\rimg2img: 1/4\rimg2img: 2/4\n\rimg2img: 1/2\n"


def test_progress_bar_rate_starts_sane_and_the_bar_stays(
    capsys: pytest.CaptureFixture[str],
) -> None:
    reporter = ProgressReporter(bar=True, description="txt2img")
    reporter(Progress(prompt_id="p", value=1, max=8))
    first = capsys.readouterr().err
    assert "1/8" in first and "?step/s" in first  # no rate from one step in no time
    reporter(Progress(prompt_id="p", value=8, max=8))
    reporter.close()
    last = capsys.readouterr().err
    assert "8/8" in last and last.endswith("\n")  # left on screen when done


def test_progress_bar_shows_the_queue_position_then_the_steps(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    reporter = ProgressReporter(bar=True, description="txt2img")
    assert reporter.on_queued is not None
    reporter.queued(2)
    reporter.queued(0)
    reporter(Progress(prompt_id="p", value=1, max=2))
    reporter.queued(1)  # too late: the steps bar is up
    reporter.close()
    err = capsys.readouterr().err
    assert err.startswith("\rtxt2img (queued, 2 ahead): 0/?\rtxt2img (next in the queue): 0/?")
    assert err.endswith("\r\x1b[2K\rtxt2img: 1/2\n")  # the queue line is cleared
    assert ProgressReporter(description="x").on_queued is None  # no bar, no /queue polling


def test_progress_without_the_websocket_says_so(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    reporter = ProgressReporter(bar=True, description="txt2img", live=False)
    reporter.queued(None)
    reporter.close()
    err = capsys.readouterr().err
    assert "no step progress without the WebSocket (ws=False)" in err and err.endswith("\n")


def test_the_option_sets_agree_with_the_request_model() -> None:
    """Each option is declared once per room: the request fields in ``GenerationRequest``, the
    call keywords in the TypedDicts; this pins that the two never drift apart."""
    from typing import get_type_hints

    from comfykit import generation as g

    request = set(GenerationRequest.model_fields) - {"prompt"}
    job = set(g.JobOptions.__optional_keys__)
    sampling = set(g.SamplingOptions.__optional_keys__)
    assert sampling == request - {"model", "width", "height"}
    assert set(g.ImageSizeOptions.__optional_keys__) == sampling | {"width", "height"}
    assert set(g.GenerateOptions.__optional_keys__) == request | job
    assert set(g.Img2ImgOptions.__optional_keys__) == (request - {"width", "height"}) | job
    assert set(g.InpaintOptions.__optional_keys__) == (
        set(g.Img2ImgOptions.__optional_keys__) | {"mask_channel"}
    )
    assert set(g.BatchOptions.__optional_keys__) - request == {
        "timeout", "cancel_on_timeout", "progress"
    }  # fmt: skip
    # The same types on both sides (the TypedDicts are what type checkers see).
    hints = get_type_hints(g.GenerateOptions)
    for name, info in GenerationRequest.model_fields.items():
        if name != "prompt":
            assert hints[name] == info.annotation, name
    fields, job_options = g.split_options({"steps": 3, "timeout": 1.0, "progress": True})
    assert fields == {"steps": 3} and job_options == {"timeout": 1.0, "progress": True}
