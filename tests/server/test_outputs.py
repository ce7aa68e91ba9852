"""A job's output files: downloaded once (as soon as ComfyUI reports them), stored under their
index with their hash, and nothing left behind by a job that never takes them."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from comfykit import AsyncOutputFile
from comfykit.server.services.files import Files
from tests import graphs

PNG = b"\x89PNG\r\n\x1a\n" + b"x" * 5000


class _FakeClient:
    """Downloads of a fake ComfyUI: ``gate`` holds them until the test opens it."""

    def __init__(self) -> None:
        self.downloads: list[str] = []
        self.gate = asyncio.Event()

    async def download(self, ref: Any, dest: IO[bytes], *, overwrite: bool = False) -> None:
        assert not overwrite  # a stream into a file object
        name = ref["filename"] if isinstance(ref, dict) else ref.filename
        self.downloads.append(name)
        await self.gate.wait()
        for start in range(0, len(PNG), 1000):
            dest.write(PNG[start : start + 1000])


def _file(client: Any, name: str, kind: str = "output") -> AsyncOutputFile:
    ref = {"filename": name, "subfolder": "comfykit-server/j", "type": kind, "node_id": "3"}
    return AsyncOutputFile.model_validate({**ref, "key": "images"}).bind(client)


def _output(*names: str, kind: str = "output") -> dict[str, Any]:
    return {
        "images": [{"filename": n, "subfolder": "comfykit-server/j", "type": kind} for n in names]
    }


async def test_prefetched_files_are_not_downloaded_again(tmp_path: Path) -> None:
    files = Files(tmp_path, store=None)  # type: ignore[arg-type]  # no store needed here
    files.prepare()
    client: Any = _FakeClient()
    prefetch = files.prefetch("j", client)
    prefetch.add(_output("a.png"))
    prefetch.add(_output("a.png"))  # reported twice: one download
    prefetch.add(_output("p.png", kind="temp"))  # previews are not prefetched
    prefetch.add({"text": ["not a file"]})
    await asyncio.sleep(0)
    assert client.downloads == []  # noted, not started
    prefetch.start()
    for _ in range(3):
        await asyncio.sleep(0)
    assert client.downloads == ["a.png"]
    client.gate.set()
    records = await files.copy_outputs(
        "j", [_file(client, "a.png"), _file(client, "b.png")], prefetch
    )
    await prefetch.close()
    assert client.downloads == ["a.png", "b.png"]  # b was not reported: downloaded here
    digest = hashlib.sha256(PNG).hexdigest()[:32]
    assert [(r["index"], r["stored_name"], r["size"], r["etag"]) for r in records] == [
        (0, "0.png", len(PNG), digest),
        (1, "1.png", len(PNG), digest),
    ]
    assert sorted(p.name for p in (tmp_path / "outputs" / "j").iterdir()) == ["0.png", "1.png"]
    assert (tmp_path / "outputs" / "j" / "0.png").read_bytes() == PNG


async def test_files_a_job_never_takes_are_removed(tmp_path: Path) -> None:
    files = Files(tmp_path, store=None)  # type: ignore[arg-type]
    files.prepare()
    client: Any = _FakeClient()
    done = files.prefetch("done", client)
    done.add(_output("a.png"))
    done.start()
    client.gate.set()
    await asyncio.sleep(0.05)
    await done.close()  # downloaded, never taken (the job failed later)
    pending = files.prefetch("pending", _FakeClient())  # type: ignore[arg-type]
    pending.add(_output("b.png"))
    pending.start()
    await asyncio.sleep(0)
    await pending.close()  # still downloading: cancelled
    assert list((tmp_path / "outputs").iterdir()) == []


async def test_a_failed_download_is_made_again_and_leaves_nothing(tmp_path: Path) -> None:
    files = Files(tmp_path, store=None)  # type: ignore[arg-type]
    files.prepare()
    client: Any = _FakeClient()
    client.gate.set()
    calls = 0
    download = client.download

    async def flaky(ref: Any, dest: IO[bytes], *, overwrite: bool = False) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            dest.write(b"half a file")
            raise ConnectionError("the connection broke")
        await download(ref, dest, overwrite=overwrite)

    client.download = flaky
    prefetch = files.prefetch("j", client)
    prefetch.add(_output("a.png"))
    prefetch.start()
    (record,) = await files.copy_outputs("j", [_file(client, "a.png")], prefetch)
    await prefetch.close()
    assert calls == 2 and record["size"] == len(PNG)
    assert sorted(p.name for p in (tmp_path / "outputs" / "j").iterdir()) == ["0.png"]
    with pytest.raises(ConnectionError):  # failing again: no file is left behind
        client.download = _failing
        await files.copy_outputs("k", [_file(client, "b.png")])
    assert not list((tmp_path / "outputs" / "k").glob("*"))


async def _failing(_ref: Any, dest: IO[bytes], *, overwrite: bool = False) -> None:
    assert not overwrite
    dest.write(b"x")
    raise ConnectionError("down")


async def test_a_completed_job_stores_exactly_its_files(
    client: httpx.AsyncClient, comfyui_url: str
) -> None:
    job = (
        await client.post(
            "/api/v1/jobs",
            json={"workflow": graphs.invert(0x405060)},
            headers={"Prefer": "wait=60"},
        )
    ).json()
    assert job["status"] == "completed", job
    (image,) = job["images"]
    stored = await client.get(image["url"])
    assert stored.status_code == 200
    async with httpx.AsyncClient(base_url=comfyui_url) as comfy:  # what ComfyUI holds
        view = await comfy.get(
            "/view",
            params={
                "filename": image["filename"],
                "subfolder": f"comfykit-server/{job['job_id']}",
                "type": "output",
            },
        )
    assert stored.content == view.content
    assert image["size"] == len(view.content)
    assert stored.headers["etag"] == f'"{hashlib.sha256(view.content).hexdigest()[:32]}"'
