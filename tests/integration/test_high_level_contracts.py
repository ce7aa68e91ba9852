"""What a new user hit in the high-level calls, each pinned against the real server: typed
shared batch options, timed-out jobs that stay reachable, a client used from a second event
loop, uploads checked before sending, option names, and the prompt-first argument order."""

from __future__ import annotations

import asyncio
import gc
import io
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from comfykit import (
    AsyncComfyClient,
    ComfyClient,
    ComfyError,
    ComfyTimeoutError,
    EventLoopError,
    ExecutionError,
    FileSaveError,
    InputError,
    JobInterrupted,
    JobStatus,
    JobTimeoutError,
)
from comfykit.cli import EXIT_UNREACHABLE, main
from comfykit.testing import CHECKPOINT_NAME
from tests import graphs


def _png(size: tuple[int, int] = (64, 64)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (30, 90, 150)).save(buf, format="PNG")
    return buf.getvalue()


def _history_size(comfy: ComfyClient) -> int:
    return len(comfy.history())


def _wait_until_idle(comfy: ComfyClient, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        queue = comfy.queue()
        if not queue.running and not queue.pending:
            return
        time.sleep(0.05)
    raise AssertionError(f"the server is still busy: {comfy.queue()}")


# -- generate_batch: shared options typed and checked first ---------------------------------


def test_a_bad_shared_batch_option_raises_before_anything_is_sent(comfyui_url: str) -> None:
    with ComfyClient(comfyui_url) as comfy:
        before = _history_size(comfy)
        with pytest.raises(InputError, match=r"stpes: unknown option \(did you mean steps\?\)"):
            comfy.generate_batch(["a", "b"], width=64, height=64, stpes=1)  # type: ignore[call-arg]
        with pytest.raises(InputError, match="width: must be a multiple of 8"):
            comfy.generate_batch(["a", "b"], width=65)
        assert comfy.queue().pending == [] and _history_size(comfy) == before


def test_a_batch_shows_a_progress_bar(comfyui_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    with ComfyClient(comfyui_url) as comfy:
        batch = comfy.generate_batch(
            ["a", "b"], seeds=[1, 2], progress=True, width=64, height=64, steps=1,
            model=CHECKPOINT_NAME,
        )  # fmt: skip
    assert [item.ok for item in batch] == [True, True]
    err = capsys.readouterr().err
    assert "batch" in err and "2/2" in err


# -- timeouts: the job stays reachable ------------------------------------------------------


def test_a_timed_out_job_is_carried_by_the_error_and_can_be_cancelled(comfyui_url: str) -> None:
    with ComfyClient(comfyui_url) as comfy:
        with pytest.raises(JobTimeoutError) as info:
            comfy.run(graphs.sleep(5.0, value=101), timeout=0.5)
        err = info.value
        assert isinstance(err, ComfyTimeoutError) and not err.cancelled
        assert err.prompt_id == err.job.prompt_id
        assert "still" in str(err) and "err.job.cancel()" in str(err)
        assert err.prompt_id in comfy.queue()  # it goes on running on the server
        err.job.cancel()
        with pytest.raises(JobInterrupted):
            err.job.result(timeout=30)
        _wait_until_idle(comfy)


async def test_cancel_on_timeout_stops_the_job_on_the_server(comfyui_url: str) -> None:
    async with AsyncComfyClient(comfyui_url) as comfy:
        with pytest.raises(JobTimeoutError) as info:
            await comfy.run(graphs.sleep(5.0, value=102), timeout=0.5, cancel_on_timeout=True)
        err = info.value
        assert err.cancelled and "cancelled on the server" in str(err)
        assert await err.job.wait(timeout=30) is JobStatus.INTERRUPTED
        assert err.prompt_id not in await comfy.queue()


def test_generate_timeout_cancels_when_asked(comfyui_url: str) -> None:
    with ComfyClient(comfyui_url) as comfy:
        with pytest.raises(JobTimeoutError) as info:
            comfy.generate("slow", steps=40, width=512, height=512, model=CHECKPOINT_NAME,
                           timeout=0.3, cancel_on_timeout=True)  # fmt: skip
        assert info.value.cancelled
        assert info.value.job.wait(timeout=60) is JobStatus.INTERRUPTED


def test_the_cli_timeout_cancels_the_job(
    comfyui_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    wf = tmp_path / "sleep.json"
    wf.write_text(json.dumps(graphs.sleep(5.0, value=103)))
    code = main(["run", str(wf), "--url", comfyui_url, "--timeout", "0.5"])
    err = capsys.readouterr().err
    assert code == EXIT_UNREACHABLE and "cancelled on the server" in err
    with ComfyClient(comfyui_url) as comfy:
        _wait_until_idle(comfy)


# -- a second event loop --------------------------------------------------------------------


def test_an_async_client_on_a_second_event_loop_says_so_and_closes_quietly(
    comfyui_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    comfy = AsyncComfyClient(comfyui_url)
    assert asyncio.run(comfy.run(graphs.text("a", "b"))).text
    with pytest.raises(EventLoopError, match="first used on another event loop") as info:
        asyncio.run(comfy.run(graphs.text("c", "d")))
    assert isinstance(info.value, ComfyError) and isinstance(info.value, RuntimeError)
    assert asyncio.run(comfy.close()) is None
    gc.collect()  # an unclosed socket of the first loop would warn here (warnings are errors)
    assert "Traceback" not in capsys.readouterr().err

    async def fresh() -> list[str]:
        async with AsyncComfyClient(comfyui_url) as again:
            return (await again.run(graphs.text("e", "f"))).text["2"]

    assert asyncio.run(fresh()) == ["e-f"]


# -- uploads are images, checked before sending ---------------------------------------------


def test_non_images_are_refused_before_upload_naming_the_argument(
    comfyui_url: str, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    fake = tmp_path / "fake.png"
    fake.write_text("not a picture either")
    with ComfyClient(comfyui_url) as comfy:
        with pytest.raises(InputError, match=r"data_or_path: .*notes\.txt is not an image"):
            comfy.upload_image(notes)
        with pytest.raises(InputError, match=r"data_or_path: .*fake\.png is not an image"):
            comfy.upload_image(fake)
        with pytest.raises(InputError, match="data_or_path: the bytes given is not an image"):
            comfy.upload_image(b"hello")
        with pytest.raises(InputError, match=r"^image: .*notes\.txt is not an image"):
            comfy.img2img("a boat", notes, steps=1)
        with pytest.raises(InputError, match=r"^mask: .*notes\.txt is not an image"):
            comfy.inpaint("a boat", _png(), notes, steps=1)
        assert comfy.upload_image(_png()).name.endswith(".png")


# -- names and options ----------------------------------------------------------------------


def test_option_names_are_checked_with_a_suggestion(comfyui_url: str) -> None:
    with ComfyClient(comfyui_url) as comfy:
        with pytest.raises(InputError, match=r"cfg: unknown option \(did you mean cfg_scale\?\)"):
            comfy.generate("a fox", cfg=5)  # type: ignore[call-arg]
        with pytest.raises(InputError, match="seed: Input should be a valid integer"):
            comfy.generate("a fox", seed=True)
        with pytest.raises(InputError, match="width: Input should be a valid integer"):
            comfy.generate("a fox", width="64")  # type: ignore[arg-type]


def test_generate_takes_denoise_and_upscale_reports_progress(comfyui_url: str) -> None:
    with ComfyClient(comfyui_url) as comfy:
        result = comfy.generate(
            "a fox", denoise=0.5, seed=3, width=64, height=64, steps=1, model=CHECKPOINT_NAME
        )
        sampler = next(
            n for n in result.metadata["workflow"].values() if n["class_type"] == "KSampler"
        )
        assert sampler["inputs"]["denoise"] == 0.5
        seen: list[object] = []
        bigger = comfy.upscale(_png((16, 16)), progress=False, on_progress=seen.append,
                               timeout=60)  # fmt: skip
        assert bigger.images[0].size == (32, 32)  # scale_by defaults to 2


def test_an_execution_error_traceback_is_a_string(comfyui_url: str) -> None:
    with ComfyClient(comfyui_url) as comfy, pytest.raises(ExecutionError) as info:
        comfy.run(graphs.sync_error(), timeout=60)
    err = info.value
    assert isinstance(err.traceback, str) and "sync_error" in err.traceback
    assert err.traceback_lines and err.traceback == "".join(err.traceback_lines)


# -- prompt first ---------------------------------------------------------------------------


def test_the_prompt_comes_first_and_the_wrong_order_says_so(
    comfyui_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    init = tmp_path / "init.png"
    init.write_bytes(_png())
    with ComfyClient(comfyui_url) as comfy:
        with (
            Image.open(init) as picture,
            pytest.raises(InputError, match="the prompt comes first") as info,
        ):
            comfy.img2img(picture, "red", steps=1)
        assert "prompt must be text, got PngImageFile" in str(info.value)
        with pytest.raises(InputError, match=r"prompt 'init.png' is a local file"):
            comfy.img2img("init.png", "red", steps=1)
        ok = comfy.img2img(prompt="red", image=init, steps=1, model=CHECKPOINT_NAME)
        assert ok.images[0].size == (64, 64)
        masked = comfy.inpaint("red", init, _png(), steps=1, model=CHECKPOINT_NAME)
        assert masked.images[0].size == (64, 64)


# -- saving: one rule, typed errors ---------------------------------------------------------


def test_output_file_save_into_a_new_folder_never_overwrites(
    comfyui_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with ComfyClient(comfyui_url) as comfy:
        first = comfy.run(graphs.invert(0x102030)).images[0]
        path = first.save("out/")  # the documented snippet; "out" does not exist yet
        assert path is not None and path.parent == Path("out") and Path("out").is_dir()
        assert path.name == first.filename and path.read_bytes() == first.read()
        assert first.save("out/") == path  # the same file again: nothing new
        second = comfy.run(graphs.invert(0x405060)).images[0]
        named = second.save(path)  # an existing name with other bytes: the next free name
        assert named == path.with_name(f"{path.stem}-1{path.suffix}")
        assert path.read_bytes() == first.read() and named.read_bytes() == second.read()
        assert second.save(path, overwrite=True) == path and path.read_bytes() == second.read()


def test_file_system_errors_after_a_job_are_typed_and_name_the_destination(
    comfyui_url: str, tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    blocked = tmp_path / "a-file" / "out"
    with ComfyClient(comfyui_url) as comfy:
        result = comfy.run(graphs.invert(0x708090))
        saves: list[Callable[[], object]] = [
            lambda: result.images[0].save(blocked / "x.png"),
            lambda: comfy.download(result.images[0], blocked / "x.png"),
        ]
        for save in saves:
            with pytest.raises(FileSaveError) as info:
                save()
            message = str(info.value)
            assert str(blocked / "x.png") in message and ".part" not in message
            assert "Not a directory" in message and isinstance(info.value, ComfyError)
        generated = comfy.generate("a fox", width=64, height=64, steps=1, model=CHECKPOINT_NAME)
        with pytest.raises(FileSaveError, match=f"cannot save to {str(blocked)!r}"):
            generated.save(blocked)
    assert [p.name for p in tmp_path.iterdir()] == ["a-file"]  # no stray temporary files


# -- progress bars: the queue, and no silence without the WebSocket -------------------------


def test_the_progress_bar_shows_the_queue_position_while_waiting(
    comfyui_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with ComfyClient(comfyui_url) as comfy:
        _wait_until_idle(comfy)
        blocker = comfy.submit(graphs.sleep(1.5, value=time.time_ns() % 10**6))
        result = comfy.generate(
            "a fox", width=64, height=64, steps=2, model=CHECKPOINT_NAME, progress=True
        )
        assert blocker.status is JobStatus.SUCCEEDED and result.images
    err = capsys.readouterr().err
    assert "txt2img (queued, 1 ahead)" in err and "txt2img (starting)" in err, err
    assert "2/2" in err and err.endswith("\n")


def test_progress_with_ws_false_says_there_is_no_step_progress(
    comfyui_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with ComfyClient(comfyui_url, ws=False) as comfy:
        result = comfy.generate(
            "a fox", width=64, height=64, steps=1, model=CHECKPOINT_NAME, progress=True
        )
        assert result.images
    assert "no step progress without the WebSocket (ws=False)" in capsys.readouterr().err
