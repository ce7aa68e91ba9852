"""Settings from the environment, the 500 envelope, and the retention cleanup."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from comfykit.server import Settings, create_app
from comfykit.server.errors import error_response
from comfykit.server.state import ServiceState
from tests import graphs
from tests.server.conftest import make_settings


def test_settings_from_env_and_arguments(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("COMFYUI_URL", "http://fallback:1")
    assert Settings(data_dir=tmp_path).comfyui_urls == ["http://fallback:1"]
    monkeypatch.setenv("COMFYKIT_COMFYUI_URLS", "http://a:1, http://b:2/")
    monkeypatch.setenv("COMFYKIT_PORT", "9000")
    monkeypatch.setenv("COMFYKIT_CORS_ORIGINS", "https://x.example")
    settings = Settings(data_dir=tmp_path)
    assert settings.comfyui_urls == ["http://a:1", "http://b:2"]
    assert settings.port == 9000 and settings.cors_origins == ["https://x.example"]
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path / 'comfykit.db'}"
    assert settings.storage_path == tmp_path
    assert Settings(data_dir=tmp_path, port=1234).port == 1234  # arguments (flags) win
    monkeypatch.delenv("COMFYKIT_COMFYUI_URLS")
    monkeypatch.delenv("COMFYUI_URL")
    assert Settings(data_dir=tmp_path).comfyui_urls == ["http://127.0.0.1:8188"]
    assert Settings().cors_origins == ["https://x.example"]
    monkeypatch.delenv("COMFYKIT_CORS_ORIGINS")
    assert Settings().cors_origins == []


def test_a_bug_is_a_500_without_its_trace(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="comfykit.server"):
        response = error_response(RuntimeError("secret detail"), "rid-7")
    assert response.status_code == 500
    body = bytes(response.body).decode()
    assert "INTERNAL_ERROR" in body and "rid-7" in body
    assert "secret" not in body and "Traceback" not in body
    assert "rid-7" in caplog.text and "secret detail" in caplog.text


async def test_retention_cleanup_reports_what_it_deleted(tmp_path: Path, comfyui_url: str) -> None:
    app = create_app(make_settings(tmp_path, comfyui_url, retention_days=1))
    async with LifespanManager(app, startup_timeout=60) as manager:
        state: ServiceState = app.state.comfykit
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            job = (
                await http.post(
                    "/api/v1/jobs",
                    json={"workflow": graphs.invert()},
                    headers={"Prefer": "wait=60"},
                )
            ).json()
            assert job["status"] == "completed"
            fresh = await state.run_cleanup()
            assert fresh["deleted_files"] == []
            old = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=2)
            await state.store.update_job(job["job_id"], {"completed_at": old})
            report = await state.run_cleanup()
            assert report["jobs"] == [job["job_id"]]
            assert report["deleted_files"] == [f"outputs/{job['job_id']}/0.png"]
            assert report["freed_bytes"] > 0
            gone = await http.get(job["image_url"])
            assert gone.status_code == 404
            assert "retention" in gone.json()["error"]["message"]
            still = await http.get(f"/api/v1/jobs/{job['job_id']}")
            assert still.json()["status"] == "completed"


async def test_cors_is_a_whitelist(tmp_path: Path, comfyui_url: str) -> None:
    app = create_app(make_settings(tmp_path, comfyui_url, cors_origins=["https://ok.example"]))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        ok = await http.options(
            "/api/v1/jobs",
            headers={"Origin": "https://ok.example", "Access-Control-Request-Method": "GET"},
        )
        assert ok.headers.get("access-control-allow-origin") == "https://ok.example"
        bad = await http.options(
            "/api/v1/jobs",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
        assert "access-control-allow-origin" not in bad.headers
