"""ComfyUI's native assets API, for both ``AsyncComfyClient`` and ``ComfyClient``.

A server with the API is played by respx with the answers recorded in
``tests/fixtures/native_assets`` (built from ComfyUI's source: see the README there); one
without it by a ``/features`` without the ``assets`` flag. Each test checks which requests were
sent, not only what came back.
"""

from __future__ import annotations

import datetime
import inspect
import io
import json
from collections.abc import AsyncIterator, Iterator
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from comfykit import (
    APIStatusError,
    Asset,
    AssetCreated,
    AssetList,
    AssetsUnavailableError,
    AssetTagList,
    AsyncComfyClient,
    ComfyClient,
    InputError,
    NotFoundError,
    UnsupportedOperationError,
)

URL = "http://comfy.test:8188"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
OLD_STATS = {"system": {"os": "posix", "comfyui_version": "0.3.75"}, "devices": []}
OLD_FEATURES = {"supports_preview_metadata": True, "max_upload_size": 104857600}

CAT = "5c0e1d2f-3a4b-4c5d-8e6f-7a8b9c0d1e01"
LORA = "6d1f2e30-4b5c-4d6e-9f70-8b9c0d1e2f02"
HASH = "blake3:" + "3f2a9c1e" * 8
PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00"
    b"\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7\x35"
    b"\x81\x84\x00\x00\x00\x00IEND\xaeB`\x82"
)

Client = AsyncComfyClient | ComfyClient


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / "native_assets" / name).read_text())


def answer(status: int, name: str) -> httpx.Response:
    return httpx.Response(status, json=fixture(name))


def error_code(exc: APIStatusError) -> Any:
    """The ``code`` of the assets routes' error body."""
    body: Any = exc.body
    return body["error"]["code"]


async def call(value: Any) -> Any:
    """Await ``value`` when the async client returned a coroutine."""
    return await value if inspect.isawaitable(value) else value


@pytest.fixture(params=["async", "sync"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make(kind: str, **options: Any) -> Client:
    options = {"ws": False, "validate": False, **options}
    return AsyncComfyClient(URL, **options) if kind == "async" else ComfyClient(URL, **options)


@pytest.fixture
async def client(kind: str) -> AsyncIterator[Client]:
    c = make(kind)
    yield c
    await call(c.close())


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=URL, assert_all_called=False) as router:
        yield router


def with_assets(mock: respx.MockRouter) -> respx.Route:
    """A server serving the assets API: its /features (returned: the look-up's route)."""
    features = json.loads((FIXTURES / "native_jobs" / "features.json").read_text())
    return mock.get("/features").mock(return_value=httpx.Response(200, json=features))


def form_parts(request: httpx.Request) -> list[tuple[str, str | None, bytes]]:
    """The (name, filename, content) of each part of a multipart request, in order."""
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + request.content)
    parts = []
    for part in message.iter_parts():
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        parts.append((str(part.get_param("name", header="content-disposition")),
                      part.get_filename(), payload))  # fmt: skip
    return parts


# -- listing and reading ----------------------------------------------------------------------


async def test_assets_sends_the_filters_and_parses_the_page(
    client: Client, mock: respx.MockRouter
) -> None:
    features = with_assets(mock)
    listing = mock.get("/api/assets").mock(return_value=answer(200, "assets_list_page.json"))
    page = await call(
        client.assets(
            include_tags=["input", "pets"], exclude_tags="nsfw", name_contains="cat",
            metadata_filter={"filename": "cat.png"}, limit=1, offset=2, sort="name",
            order="asc",
        )
    )  # fmt: skip
    assert isinstance(page, AssetList)
    assert (page.total, page.has_more, page.next_cursor) == (3, True, None)
    (cat,) = page.assets
    assert cat.id == CAT and cat.tags == ["input"] and cat.hash == HASH
    assert cat.created_at == datetime.datetime(2026, 1, 12, 9, 30, 5, 412118)
    assert cat.loader_path is None  # left out by the server: None
    assert dict(listing.calls.last.request.url.params) == {
        "include_tags": "input,pets",
        "exclude_tags": "nsfw",
        "name_contains": "cat",
        "metadata_filter": '{"filename": "cat.png"}',
        "limit": "1",
        "offset": "2",
        "sort": "name",
        "order": "asc",
    }
    await call(client.assets())
    assert dict(listing.calls.last.request.url.params) == {"sort": "created_at", "order": "desc"}
    assert features.call_count == 1  # looked up once


async def test_get_asset_and_unknown_fields_are_kept(
    client: Client, mock: respx.MockRouter
) -> None:
    with_assets(mock)
    data = {**fixture("asset.json"), "asset_hash": "blake3:00"}
    route = mock.get(f"/api/assets/{LORA}").mock(return_value=httpx.Response(200, json=data))
    asset = await call(client.get_asset(LORA.upper()))
    assert isinstance(asset, Asset)
    assert asset.loader_path == "detail_tweaker.safetensors"
    assert asset.tags == ["models", "loras"] and asset.metadata is not None
    assert asset.model_extra == {"asset_hash": "blake3:00"}
    assert route.call_count == 1  # the id is sent canonical


async def test_missing_asset_is_not_found(client: Client, mock: respx.MockRouter) -> None:
    with_assets(mock)
    mock.get(f"/api/assets/{LORA}").mock(return_value=answer(404, "asset_not_found.json"))
    with pytest.raises(NotFoundError) as err:
        await call(client.get_asset(LORA))
    assert error_code(err.value) == "ASSET_NOT_FOUND"


async def test_bad_list_query_is_an_api_error(client: Client, mock: respx.MockRouter) -> None:
    with_assets(mock)
    mock.get("/api/assets").mock(return_value=answer(400, "assets_invalid_query.json"))
    with pytest.raises(APIStatusError) as err:
        await call(client.assets())
    assert err.value.status_code == 400 and not isinstance(err.value, NotFoundError)
    assert error_code(err.value) == "INVALID_QUERY"


async def test_download_asset(client: Client, mock: respx.MockRouter, tmp_path: Path) -> None:
    with_assets(mock)
    headers = {
        "Content-Disposition": "attachment; filename*=UTF-8''my%20cat.png",
        "Content-Type": "image/png",
    }
    route = mock.get(f"/api/assets/{CAT}/content").mock(
        return_value=httpx.Response(200, content=PNG, headers=headers)
    )
    assert await call(client.download_asset(CAT)) == PNG
    saved = await call(client.download_asset(CAT, tmp_path / "got/"))
    assert saved == tmp_path / "got" / "my cat.png" and saved.read_bytes() == PNG
    again = await call(client.download_asset(CAT, tmp_path / "got/"))
    assert again == saved  # same bytes: not saved twice
    named = await call(client.download_asset(CAT, tmp_path / "x.png"))
    assert named == tmp_path / "x.png" and named.read_bytes() == PNG
    buffer = io.BytesIO()
    assert await call(client.download_asset(CAT, buffer)) is None
    assert buffer.getvalue() == PNG
    assert route.call_count == 5


async def test_download_of_a_missing_asset(
    client: Client, mock: respx.MockRouter, tmp_path: Path
) -> None:
    with_assets(mock)
    mock.get(f"/api/assets/{CAT}/content").mock(return_value=answer(404, "asset_not_found.json"))
    with pytest.raises(NotFoundError):
        await call(client.download_asset(CAT, tmp_path / "out/"))
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# -- creating -----------------------------------------------------------------------------------


async def test_upload_asset_sends_the_multipart_fields(
    client: Client, mock: respx.MockRouter, tmp_path: Path
) -> None:
    with_assets(mock)
    route = mock.post("/api/assets").mock(return_value=answer(201, "asset_created.json"))
    path = tmp_path / "cat.png"
    path.write_bytes(PNG)
    created = await call(
        client.upload_asset(path, tags=["input", "pets"], name="cat.png",
                            user_metadata={"filename": "cat.png"})
    )  # fmt: skip
    assert isinstance(created, AssetCreated) and created.created_new is True
    assert created.id == CAT
    request = route.calls.last.request
    assert request.headers["content-type"].startswith("multipart/form-data")
    parts = form_parts(request)
    assert [(n, f) for n, f, _ in parts if f is not None] == [("file", "cat.png")]
    fields = [(n, v.decode()) for n, f, v in parts if f is None]
    assert fields == [
        ("tags", "input"),
        ("tags", "pets"),
        ("name", "cat.png"),
        ("user_metadata", '{"filename": "cat.png"}'),
    ]
    assert [v for n, f, v in parts if n == "file"] == [PNG]


async def test_upload_of_known_content_and_of_any_file(
    client: Client, mock: respx.MockRouter
) -> None:
    with_assets(mock)
    route = mock.post("/api/assets").mock(return_value=answer(200, "asset_existing.json"))
    weights = b"not an image: any file is an asset"
    created = await call(client.upload_asset(weights, tags="models", filename="tiny.safetensors"))
    assert created.created_new is False
    parts = form_parts(route.calls.last.request)
    assert [(n, f) for n, f, _ in parts] == [("tags", None), ("file", "tiny.safetensors")]
    assert parts[1][2] == weights


async def test_upload_refused_by_the_server(client: Client, mock: respx.MockRouter) -> None:
    with_assets(mock)
    mock.post("/api/assets").mock(return_value=answer(400, "upload_invalid_body.json"))
    with pytest.raises(APIStatusError, match="first tag must be one of") as err:
        await call(client.upload_asset(PNG, tags=["pets"]))
    assert err.value.status_code == 400


async def test_asset_from_hash(client: Client, mock: respx.MockRouter) -> None:
    with_assets(mock)
    route = mock.post("/api/assets/from-hash").mock(
        return_value=answer(201, "asset_from_hash.json")
    )
    created = await call(
        client.asset_from_hash(HASH.upper().replace("BLAKE3", "blake3"), name="cat-copy.png",
                               tags=["input", "pets"], user_metadata={})
    )  # fmt: skip
    assert created.name == "cat-copy.png" and created.created_new is False
    assert json.loads(route.calls.last.request.content) == {
        "hash": HASH,
        "name": "cat-copy.png",
        "tags": ["input", "pets"],
        "user_metadata": {},
    }
    route.mock(return_value=answer(404, "asset_content_missing.json"))
    with pytest.raises(NotFoundError, match="does not exist"):
        await call(client.asset_from_hash(HASH))
    assert json.loads(route.calls.last.request.content) == {"hash": HASH}


async def test_has_asset_hash(client: Client, mock: respx.MockRouter) -> None:
    with_assets(mock)
    route = mock.head(f"/api/assets/hash/{HASH}").mock(return_value=httpx.Response(200))
    assert await call(client.has_asset_hash(HASH)) is True
    route.mock(return_value=httpx.Response(404))
    assert await call(client.has_asset_hash(HASH)) is False
    route.mock(return_value=answer(400, "invalid_hash.json"))
    with pytest.raises(APIStatusError, match="INVALID_HASH"):
        await call(client.has_asset_hash(HASH))
    assert route.call_count == 3


# -- changing -----------------------------------------------------------------------------------


async def test_update_and_delete_asset(client: Client, mock: respx.MockRouter) -> None:
    with_assets(mock)
    put = mock.put(f"/api/assets/{LORA}").mock(return_value=answer(200, "asset_updated.json"))
    updated = await call(
        client.update_asset(LORA, name="detail-tweaker-v2.safetensors",
                            user_metadata={"strength": 0.6})
    )  # fmt: skip
    assert updated.user_metadata == {"strength": 0.6}
    assert json.loads(put.calls.last.request.content) == {
        "name": "detail-tweaker-v2.safetensors",
        "user_metadata": {"strength": 0.6},
    }
    delete = mock.delete(f"/api/assets/{LORA}").mock(return_value=httpx.Response(204))
    assert await call(client.delete_asset(LORA)) is None
    delete.mock(return_value=answer(404, "asset_not_found.json"))
    with pytest.raises(NotFoundError):
        await call(client.delete_asset(LORA))
    assert delete.call_count == 2


async def test_tags(client: Client, mock: respx.MockRouter) -> None:
    with_assets(mock)
    listing = mock.get("/api/tags").mock(return_value=answer(200, "tags_list.json"))
    tags = await call(client.asset_tags(prefix="lo", limit=10, offset=5, order="name_asc",
                                        include_zero=False))  # fmt: skip
    assert isinstance(tags, AssetTagList)
    assert [(t.name, t.count) for t in tags.tags][:2] == [("input", 12), ("models", 7)]
    assert dict(listing.calls.last.request.url.params) == {
        "prefix": "lo", "limit": "10", "offset": "5", "order": "name_asc",
        "include_zero": "false",
    }  # fmt: skip
    add = mock.post(f"/api/assets/{LORA}/tags").mock(return_value=answer(200, "tags_added.json"))
    added = await call(client.add_asset_tags(LORA, ["favorite", "loras"]))
    assert added.added == ["favorite"] and added.already_present == ["loras"]
    assert json.loads(add.calls.last.request.content) == {"tags": ["favorite", "loras"]}
    remove = mock.delete(f"/api/assets/{LORA}/tags").mock(
        return_value=answer(200, "tags_removed.json")
    )
    removed = await call(client.remove_asset_tags(LORA, "favorite"))
    assert removed.removed == ["favorite"] and removed.total_tags == ["models", "loras"]
    assert json.loads(remove.calls.last.request.content) == {"tags": ["favorite"]}


# -- a server without the API -----------------------------------------------------------------

CALLS = [
    ("assets", (), {}),
    ("get_asset", (CAT,), {}),
    ("download_asset", (CAT,), {}),
    ("upload_asset", (PNG,), {"tags": ["input"]}),
    ("asset_from_hash", (HASH,), {}),
    ("has_asset_hash", (HASH,), {}),
    ("update_asset", (CAT,), {"name": "x"}),
    ("delete_asset", (CAT,), {}),
    ("asset_tags", (), {}),
    ("add_asset_tags", (CAT, ["a"]), {}),
    ("remove_asset_tags", (CAT, ["a"]), {}),
]


@pytest.mark.parametrize(("method", "args", "kwargs"), CALLS, ids=[c[0] for c in CALLS])
async def test_without_the_assets_flag_nothing_else_is_sent(
    client: Client, mock: respx.MockRouter, method: str, args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:  # fmt: skip
    mock.get("/features").mock(return_value=httpx.Response(200, json=OLD_FEATURES))
    mock.get("/system_stats").mock(return_value=httpx.Response(200, json=OLD_STATS))
    assets = mock.route(url__regex=r"/api/(assets|tags)")
    with pytest.raises(AssetsUnavailableError, match=r"ComfyUI 0\.3\.75 .*--enable-assets"):
        await call(getattr(client, method)(*args, **kwargs))
    assert assets.call_count == 0


async def test_assets_disabled_at_run_time(kind: str, mock: respx.MockRouter) -> None:
    features = with_assets(mock)
    stats = json.loads((FIXTURES / "native_jobs" / "system_stats.json").read_text())
    mock.get("/system_stats").mock(return_value=httpx.Response(200, json=stats))
    route = mock.get("/api/assets").mock(return_value=answer(503, "service_disabled.json"))
    client = make(kind, max_retries=0)
    try:
        with pytest.raises(AssetsUnavailableError, match="SERVICE_DISABLED"):
            await call(client.assets())
        caps = await call(client.server_capabilities())
        assert caps.assets is False
        with pytest.raises(AssetsUnavailableError, match=r"ComfyUI 0\.38\.1 .*/api/assets"):
            await call(client.get_asset(CAT))
    finally:
        await call(client.close())
    assert route.call_count == 1 and features.call_count == 1


@pytest.mark.parametrize(("method", "args", "kwargs"), CALLS, ids=[c[0] for c in CALLS])
async def test_the_v2_backend_has_no_comfyui_assets(
    kind: str, mock: respx.MockRouter, method: str, args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:  # fmt: skip
    client = make(kind, api="v2")
    try:
        with pytest.raises(UnsupportedOperationError) as err:
            await call(getattr(client, method)(*args, **kwargs))
    finally:
        await call(client.close())
    assert err.value.backend == "v2"
    assert "asset" in err.value.operation
    assert mock.calls.call_count == 0


# -- bad input ----------------------------------------------------------------------------------

BAD = [
    ("assets", (), {"limit": 0}, "limit"),
    ("assets", (), {"limit": 501}, "limit"),
    ("assets", (), {"offset": -1}, "offset"),
    ("assets", (), {"sort": "age"}, "sort"),
    ("assets", (), {"order": "up"}, "order"),
    ("assets", (), {"include_tags": ["a,b"]}, "include_tags"),
    ("assets", (), {"exclude_tags": [""]}, "exclude_tags"),
    ("assets", (), {"metadata_filter": "x=1"}, "metadata_filter"),
    ("get_asset", ("cat.png",), {}, "asset_id"),
    ("get_asset", (7,), {}, "asset_id"),
    ("download_asset", ("../etc",), {}, "asset_id"),
    ("upload_asset", (PNG,), {"tags": []}, "tags"),
    ("upload_asset", (PNG,), {"tags": ["input", 3]}, "tags"),
    ("upload_asset", (b"",), {"tags": ["input"]}, "data_or_path"),
    ("upload_asset", ("/no/such/file.bin",), {"tags": ["input"]}, "data_or_path"),
    ("upload_asset", (PNG,), {"tags": "input", "user_metadata": {"x": object()}}, "user_metadata"),
    ("asset_from_hash", ("sha256:abc",), {}, "hash"),
    ("has_asset_hash", ("blake3:XYZ",), {}, "hash"),
    ("update_asset", (CAT,), {}, "name, user_metadata"),
    ("update_asset", (CAT,), {"name": ""}, "name"),
    ("asset_tags", (), {"order": "count"}, "order"),
    ("asset_tags", (), {"limit": 1001}, "limit"),
    ("add_asset_tags", (CAT, []), {}, "tags"),
    ("remove_asset_tags", (CAT, None), {}, "tags"),
]


@pytest.mark.parametrize(
    ("method", "args", "kwargs", "argument"), BAD, ids=[f"{b[0]}-{b[3]}" for b in BAD]
)
async def test_bad_arguments_send_nothing(
    client: Client, mock: respx.MockRouter, method: str, args: tuple[Any, ...],
    kwargs: dict[str, Any], argument: str,
) -> None:  # fmt: skip
    features = with_assets(mock)
    with pytest.raises(InputError, match=argument):
        await call(getattr(client, method)(*args, **kwargs))
    assert features.call_count == 0 and mock.calls.call_count == 0
