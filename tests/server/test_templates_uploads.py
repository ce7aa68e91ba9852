"""Workflow templates (CRUD, execute, built-ins) and uploads."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
from PIL import Image

from comfykit.server import Settings
from tests import graphs
from tests.server.conftest import wait_for_job

TEMPLATE = {
    "name": "invert",
    "description": "an inverted colour",
    "workflow": graphs.invert(),
    "parameters": {
        "color": {"node": "1", "input": "color"},
        "width": {"node": "1", "input": "width", "default": 32},
    },
}


def png_bytes(
    color: tuple[int, int, int] = (200, 10, 10), size: tuple[int, int] = (16, 16)
) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


async def upload(http: httpx.AsyncClient, data: bytes, name: str = "in.png") -> httpx.Response:
    return await http.post("/api/v1/uploads", files={"file": (name, data, "image/png")})


async def test_template_crud_and_execute(client: httpx.AsyncClient) -> None:
    created = await client.post("/api/v1/workflows", json=TEMPLATE)
    assert created.status_code == 201, created.text
    template = created.json()
    tid = template["id"]
    assert created.headers["location"] == f"/api/v1/workflows/{tid}"
    color = template["parameters"]["color"]
    assert color["type"] == "integer" and color["minimum"] == 0 and color["maximum"] > 0
    schema = template["schema"]
    assert schema["properties"]["width"]["default"] == 32
    assert schema["properties"]["color"]["type"] == "integer"
    assert schema["additionalProperties"] is False

    listed = (await client.get("/api/v1/workflows")).json()["workflows"]
    assert [t["id"] for t in listed][:4] == ["txt2img", "img2img", "inpaint", "upscale"]
    assert tid in [t["id"] for t in listed]

    run = await client.post(f"/api/v1/workflows/{tid}/execute", json={"parameters": {"color": 0}})
    assert run.status_code == 201, run.text
    assert run.headers["location"] == f"/api/v1/jobs/{run.json()['job_id']}"
    done = await wait_for_job(client, run.json()["job_id"])
    assert done["status"] == "completed" and done["template_id"] == tid
    image = Image.open(io.BytesIO((await client.get(done["image_url"])).content))
    assert image.size == (32, 24)
    graphs.assert_rgb_close(image.convert("RGB").getpixel((0, 0)), (255, 255, 255))

    bad = await client.post(
        f"/api/v1/workflows/{tid}/execute", json={"parameters": {"width": 100_000}}
    )
    assert bad.status_code == 400
    assert "parameters.width must be between" in bad.json()["error"]["message"]
    bad = await client.post(f"/api/v1/workflows/{tid}/execute", json={"parameters": {"colour": 1}})
    assert bad.status_code == 400 and "parameters.colour" in bad.json()["error"]["message"]
    bad = await client.post(
        f"/api/v1/workflows/{tid}/execute", json={"parameters": {"width": "wide"}}
    )
    assert bad.json()["error"]["message"] == "parameters.width must be an integer"

    replaced = await client.put(f"/api/v1/workflows/{tid}", json={**TEMPLATE, "name": "renamed"})
    assert replaced.status_code == 200 and replaced.json()["name"] == "renamed"
    assert (await client.get(f"/api/v1/workflows/{tid}")).json()["name"] == "renamed"
    assert (await client.delete(f"/api/v1/workflows/{tid}")).status_code == 204
    assert (await client.get(f"/api/v1/workflows/{tid}")).status_code == 404
    assert (await client.delete(f"/api/v1/workflows/{tid}")).status_code == 404
    assert (await client.delete("/api/v1/workflows/txt2img")).status_code == 409


async def test_a_template_naming_a_missing_input_is_refused(client: httpx.AsyncClient) -> None:
    body = {**TEMPLATE, "parameters": {"x": {"node": "1", "input": "nope"}}}
    response = await client.post("/api/v1/workflows", json=body)
    assert response.status_code == 400
    assert "parameters.x" in response.json()["error"]["message"]
    body = {**TEMPLATE, "parameters": {"x": {"node": "9", "input": "width"}}}
    assert (await client.post("/api/v1/workflows", json=body)).status_code == 400


async def test_builtin_txt2img_and_upscale_with_an_upload(client: httpx.AsyncClient) -> None:
    txt2img = (await client.get("/api/v1/workflows/txt2img")).json()
    assert txt2img["builtin"] and "prompt" in txt2img["schema"]["required"]
    assert "euler" in txt2img["parameters"]["sampler"]["choices"]
    run = await client.post(
        "/api/v1/workflows/txt2img/execute",
        json={"parameters": {"prompt": "a cat", "width": 64, "height": 64, "steps": 1,
                             "sampler": "euler_a"}},
    )  # fmt: skip
    assert run.status_code == 201, run.text
    missing = await client.post("/api/v1/workflows/txt2img/execute", json={"parameters": {}})
    assert missing.status_code == 400
    assert missing.json()["error"]["message"] == "parameters.prompt is required"

    uploaded = await upload(client, png_bytes())
    assert uploaded.status_code == 201, uploaded.text
    up = uploaded.json()
    assert (up["width"], up["height"], up["content_type"]) == (16, 16, "image/png")
    scaled = await client.post(
        "/api/v1/workflows/upscale/execute",
        json={"parameters": {"image": up["upload_id"], "scale_by": 2.0}},
        headers={"Prefer": "wait=60"},
    )
    assert scaled.status_code == 201, scaled.text
    done = await wait_for_job(client, scaled.json()["job_id"])
    assert done["status"] == "completed", done
    image = Image.open(io.BytesIO((await client.get(done["image_url"])).content))
    assert image.size == (32, 32)
    no_upload = await client.post(
        "/api/v1/workflows/upscale/execute", json={"parameters": {"image": "nope"}}
    )
    assert no_upload.status_code == 400
    assert "parameters.image must be an upload id" in no_upload.json()["error"]["message"]
    assert (await wait_for_job(client, run.json()["job_id"], timeout=120))["status"] == "completed"


async def test_uploads_are_checked_by_content(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    text = await upload(client, b"hello, I am not a picture", "evil.png")
    assert text.status_code == 415, text.text
    assert text.json()["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    no_file = await client.post("/api/v1/uploads", files={"other": ("a.png", png_bytes())})
    assert no_file.status_code == 400
    not_multipart = await client.post("/api/v1/uploads", content=png_bytes())
    assert not_multipart.status_code == 415
    good = await upload(client, png_bytes(), "../../etc/passwd.png")
    assert good.status_code == 201
    record = good.json()
    assert record["filename"] == "passwd.png"
    stored = list((Path(settings.storage_path) / "uploads").iterdir())
    assert [p.name for p in stored] == [f"{record['upload_id']}.png"]
    assert (await client.get(f"/api/v1/uploads/{record['upload_id']}")).status_code == 200


async def test_uploads_over_the_cap_are_413(tmp_path: Path, comfyui_url: str) -> None:
    from asgi_lifespan import LifespanManager

    from comfykit.server import create_app
    from tests.server.conftest import make_settings

    app = create_app(make_settings(tmp_path, comfyui_url, max_upload_bytes=1000))
    async with LifespanManager(app, startup_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            big = png_bytes(size=(300, 300)) + b"\0" * 100_000
            response = await upload(http, big)
            assert response.status_code == 413
            assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
            small = await upload(http, png_bytes(size=(4, 4)))
            assert small.status_code == 201
