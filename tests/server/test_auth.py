"""Authentication and roles: API keys, JWTs (HS256, RS256 from a PEM, ES256 from a JWKS), the
auth matrix over the app's own route table, ownership (another user's job is a 404), and the
``comfykit keys`` commands. Real ComfyUI behind, SQLite store (the store's own behaviour is
covered on both stores elsewhere)."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from asgi_lifespan import LifespanManager
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI
from pydantic import SecretStr

from comfykit.server import Settings, create_app
from comfykit.server.state import ServiceState
from tests import graphs
from tests.server.conftest import api_routes, make_settings

SECRET = "s3cret-for-tests-only-0123456789abcdef"
AUDIENCE = "comfykit-tests"
ISSUER = "https://issuer.test"

APPS: list[FastAPI] = []

TEMPLATE = {
    "name": "invert",
    "workflow": graphs.invert(),
    "parameters": {"color": {"node": "1", "input": "color"}},
}


@contextlib.asynccontextmanager
async def service(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, ServiceState]]:
    """The standalone app (lifespan running) and its state."""
    app = create_app(settings)
    APPS.append(app)
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", timeout=60
        ) as http:
            yield http, app.state.comfykit


def token(
    sub: str = "jwt-user",
    role: str | None = "pro",
    *,
    key: Any = SECRET,
    alg: str = "HS256",
    expires_in: float = 300,
    headers: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    now = dt.datetime.now(dt.timezone.utc)
    payload: dict[str, Any] = {
        "sub": sub, "aud": AUDIENCE, "iss": ISSUER,
        "exp": now + dt.timedelta(seconds=expires_in), "iat": now, **claims,
    }  # fmt: skip
    if role is not None:
        payload["role"] = role
    return jwt.encode(payload, key, algorithm=alg, headers=headers)


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def auth_settings(tmp_path: Path, comfyui_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "auth": "required", "jwt_secret": SECRET, "jwt_audience": AUDIENCE,
        "jwt_issuer": ISSUER, "jwt_leeway_seconds": 0, **overrides,
    }  # fmt: skip
    return make_settings(tmp_path, comfyui_url, **values)


async def make_keys(http: httpx.AsyncClient, state: ServiceState) -> dict[str, str]:
    """An admin key made through the service, the others through the admin route; one
    revoked."""
    admin = (await state.keys.create("root", "admin")).key
    keys = {"admin": admin}
    for name, role in (("alice", "free"), ("bob", "free"), ("pat", "pro"), ("gone", "pro")):
        r = await http.post(
            "/api/v1/keys", json={"name": name, "role": role}, headers=bearer(admin)
        )
        assert r.status_code == 201, r.text
        assert r.headers["cache-control"] == "no-store"
        keys[name] = r.json()["key"]
        if name == "gone":
            revoked = await http.delete(
                f"/api/v1/keys/{r.json()['key_id']}", headers={"X-API-Key": admin}
            )
            assert revoked.status_code == 200 and revoked.json()["revoked_at"], revoked.text
    return keys


# Who may call each route: the matrix below is generated from the app's route table, and a
# route missing here fails the test (a new route cannot go uncovered).
POLICY = {
    ("POST", "/api/v1/generate"): "user",
    ("POST", "/api/v1/generate/batch"): "user",
    ("GET", "/api/v1/batches/{batch_id}"): "user",
    ("GET", "/api/v1/generate/{job_id}"): "user",
    ("GET", "/api/v1/generate/{job_id}/image"): "user",
    ("POST", "/api/v1/jobs"): "admin",  # ad-hoc workflows: admin by default
    ("GET", "/api/v1/jobs"): "user",
    ("GET", "/api/v1/jobs/{job_id}"): "user",
    ("DELETE", "/api/v1/jobs/{job_id}"): "user",
    ("GET", "/api/v1/jobs/{job_id}/outputs/{n}"): "user",
    ("GET", "/api/v1/jobs/{job_id}/events"): "user",
    ("POST", "/api/v1/jobs/{job_id}/webhooks/{delivery_id}/redeliver"): "admin",
    ("GET", "/api/v1/workflows"): "user",
    ("POST", "/api/v1/workflows"): "admin",
    ("GET", "/api/v1/workflows/{template_id}"): "user",
    ("PUT", "/api/v1/workflows/{template_id}"): "admin",
    ("DELETE", "/api/v1/workflows/{template_id}"): "admin",
    ("POST", "/api/v1/workflows/{template_id}/execute"): "user",
    ("POST", "/api/v1/uploads"): "user",
    ("GET", "/api/v1/uploads/{upload_id}"): "user",
    ("GET", "/api/v1/keys"): "admin",
    ("POST", "/api/v1/keys"): "admin",
    ("DELETE", "/api/v1/keys/{key_id}"): "admin",
    ("GET", "/api/v1/me"): "user",
    ("GET", "/health"): "public",
    ("GET", "/ready"): "public",  # public_ready defaults to true
    ("GET", "/metrics"): "admin",  # public_metrics defaults to false
    # Comfy API v2 (HEAD /api/v2/assets/by-hash/{digest} is covered in test_v2.py)
    ("POST", "/api/v2/assets"): "user",
    ("POST", "/api/v2/assets/from-hash"): "user",
    ("GET", "/api/v2/assets/{asset_id}"): "user",
    ("DELETE", "/api/v2/assets/{asset_id}"): "user",
    ("GET", "/api/v2/assets/{asset_id}/content"): "user",
    ("POST", "/api/v2/jobs"): "admin",  # an arbitrary workflow: the ad-hoc rule
    ("GET", "/api/v2/jobs/{job_id}"): "user",
    ("GET", "/api/v2/jobs/{job_id}/workflow"): "user",
    ("GET", "/api/v2/jobs/{job_id}/events"): "user",
    ("POST", "/api/v2/jobs/{job_id}/cancel"): "user",
}

CREDENTIALS = (
    "none", "bad_key", "revoked_key", "expired_jwt", "wrong_audience", "free", "pro", "admin",
)  # fmt: skip
RANK = {"free": 0, "pro": 1, "admin": 2}


def credential_headers(name: str, keys: dict[str, str]) -> dict[str, str]:
    return {
        "none": {},
        "bad_key": bearer("ck_" + "x" * 43),
        "revoked_key": bearer(keys["gone"]),
        "expired_jwt": bearer(token(expires_in=-60)),
        "wrong_audience": bearer(token(aud="someone-else")),
        "free": {"X-API-Key": keys["alice"]},
        "pro": bearer(token(role="pro")),
        "admin": bearer(keys["admin"]),
    }[name]


def expected(policy: str, credential: str) -> str:
    """``auth``: 401; ``role``: 403; ``pass``: the route's own answer."""
    if policy == "public":
        return "pass"
    if credential not in RANK:
        return "auth"
    lowest = "free" if policy == "user" else "admin"
    return "pass" if RANK[credential] >= RANK[lowest] else "role"


async def test_the_auth_matrix_covers_every_route(tmp_path: Path, comfyui_url: str) -> None:
    settings = auth_settings(tmp_path, comfyui_url)
    async with service(settings) as (http, state):
        keys = await make_keys(http, state)
        routes = {
            (m, r.path) for r in api_routes(APPS[-1].routes) for m in r.methods or ()
            if m != "HEAD"
        }  # fmt: skip
        assert routes == set(POLICY), f"routes without a policy: {routes ^ set(POLICY)}"
        seen: dict[str, int] = {}
        for (method, path), policy in sorted(POLICY.items()):
            url = path.format(
                batch_id="nope", job_id="nope", template_id="txt2img", key_id="nope", n=0,
                upload_id="nope", delivery_id="nope", asset_id="nope",
            )  # fmt: skip
            # the v2 routes answer in the Comfy API v2 envelope (lower-case codes)
            v2 = path.startswith("/api/v2/")
            if method == "DELETE" and "workflows" in path:
                url = "/api/v1/workflows/nope"
            for credential in CREDENTIALS:
                body: dict[str, Any] | None = {} if method in ("POST", "PUT") else None
                r = await http.request(
                    method, url, json=body, headers=credential_headers(credential, keys)
                )
                want = expected(policy, credential)
                where = f"{method} {path} as {credential}: {r.status_code} {r.text[:200]}"
                if want == "auth":
                    assert r.status_code == 401, where
                    code = r.json()["error"]["code"]
                    assert code == ("unauthorized" if v2 else "UNAUTHORIZED"), where
                    assert r.headers["www-authenticate"].startswith("Bearer"), where
                elif want == "role":
                    assert r.status_code == 403, where
                    code = r.json()["error"]["code"]
                    assert code == ("forbidden" if v2 else "FORBIDDEN"), where
                else:
                    assert r.status_code not in (401, 403), where
                    assert r.status_code < 500, where
                seen[want] = seen.get(want, 0) + 1
        assert sum(seen.values()) == len(POLICY) * len(CREDENTIALS)
        assert all(seen.get(k) for k in ("auth", "role", "pass")), seen


async def test_auth_messages_say_what_is_wrong(tmp_path: Path, comfyui_url: str) -> None:
    async with service(auth_settings(tmp_path, comfyui_url)) as (http, state):
        keys = await make_keys(http, state)

        async def message(headers: dict[str, str]) -> str:
            r = await http.get("/api/v1/me", headers=headers)
            assert r.status_code in (401, 403), r.text
            return str(r.json()["error"]["message"])

        assert "credentials required" in await message({})
        assert "revoked" in await message(bearer(keys["gone"]))
        assert "not valid" in await message(bearer("ck_nope"))
        assert "expired" in await message(bearer(token(expires_in=-60)))
        assert "audience" in await message(bearer(token(aud="other")))
        assert "issuer" in await message(bearer(token(iss="https://evil.test")))
        later = dt.datetime.now(dt.timezone.utc).timestamp() + 600
        assert "nbf" in await message(bearer(token(nbf=later)))
        assert "signature" in await message(
            bearer(token(key="another-secret-that-is-long-enough-to-sign"))
        )
        assert "exp" in await message(bearer(jwt.encode({"sub": "x", "aud": AUDIENCE,
                                                          "iss": ISSUER}, SECRET)))  # fmt: skip
        assert "role" in await message(bearer(token(role="root")))
        assert "Bearer" in await message({"Authorization": "Basic dXNlcjpwdw=="})
        assert "not both" in await message(
            {"Authorization": f"Bearer {keys['alice']}", "X-API-Key": keys["bob"]}
        )
        unsigned = [
            base64.urlsafe_b64encode(json.dumps(part).encode()).decode().rstrip("=")
            for part in ({"alg": "none", "typ": "JWT"}, {"sub": "x", "exp": 9_999_999_999})
        ]
        none_alg = ".".join([*unsigned, ""])
        assert "signature" in await message(bearer(none_alg))

        me = (await http.get("/api/v1/me", headers=bearer(token(role=None)))).json()
        assert me["role"] == "free" and me["user"] == "jwt-user"  # no role claim: free
        assert me["authenticated_by"] == "jwt"
        me = (await http.get("/api/v1/me", headers={"X-API-Key": keys["pat"]})).json()
        assert me["role"] == "pro" and me["user"] == "pat" and me["key_id"]
        assert me["usage"]["daily_image_quota"] == 1000

        listed = (await http.get("/api/v1/keys", headers=bearer(keys["admin"]))).json()["keys"]
        assert {k["name"] for k in listed} == {"root", "alice", "bob", "pat", "gone"}
        assert all(k["prefix"].startswith("ck_") and "key" not in k for k in listed)
        used = {k["name"]: k["last_used_at"] for k in listed}
        assert used["pat"] is not None and used["bob"] is None


@pytest.mark.parametrize("kind", ["rs256-pem", "es256-jwks"])
async def test_jwts_signed_with_a_private_key(tmp_path: Path, comfyui_url: str, kind: str) -> None:
    if kind == "rs256-pem":
        private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        alg, kid = "RS256", None
        public = tmp_path / "public.pem"
        public.write_bytes(
            private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    else:
        private = ec.generate_private_key(ec.SECP256R1())
        alg, kid = "ES256", "k1"
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
        public = tmp_path / "jwks.json"
        public.write_text(json.dumps({"keys": [{**jwk, "kid": kid, "alg": alg, "use": "sig"}]}))
    settings = auth_settings(tmp_path, comfyui_url, jwt_secret=None, jwt_public_key=public)
    headers = {"kid": kid} if kid else None
    async with service(settings) as (http, _state):
        good = token("carol", "admin", key=private, alg=alg, headers=headers)
        r = await http.get("/api/v1/keys", headers=bearer(good))
        assert r.status_code == 200, r.text
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        forged = token("carol", "admin", key=other, alg="RS256", headers=headers)
        assert (await http.get("/api/v1/me", headers=bearer(forged))).status_code == 401
        # an HS256 token signed with the public key as its secret (algorithm confusion)
        confused = jwt.encode(
            {"sub": "x", "aud": AUDIENCE, "iss": ISSUER, "exp": 9_999_999_999},
            "not-the-key-but-long-enough-for-hs256!!", algorithm="HS256",
        )  # fmt: skip
        assert (await http.get("/api/v1/me", headers=bearer(confused))).status_code == 401


async def test_users_see_only_their_own_jobs_and_uploads(tmp_path: Path, comfyui_url: str) -> None:
    async with service(auth_settings(tmp_path, comfyui_url)) as (http, state):
        keys = await make_keys(http, state)
        alice, bob, admin = (
            {"X-API-Key": keys["alice"]}, {"X-API-Key": keys["bob"]}, bearer(keys["admin"])
        )  # fmt: skip
        made = await http.post("/api/v1/workflows", json=TEMPLATE, headers=admin)
        assert made.status_code == 201, made.text
        template = made.json()["id"]
        r = await http.post(
            f"/api/v1/workflows/{template}/execute", json={"parameters": {"color": 1234}},
            headers={**alice, "Prefer": "wait=60"},
        )  # fmt: skip
        assert r.status_code == 201 and r.json()["status"] == "completed", r.text
        job = r.json()
        for path in (
            f"/api/v1/jobs/{job['job_id']}", f"/api/v1/generate/{job['job_id']}",
            f"/api/v1/jobs/{job['job_id']}/outputs/0", f"/api/v1/generate/{job['job_id']}/image",
            f"/api/v1/jobs/{job['job_id']}/events",
        ):  # fmt: skip
            assert (await http.get(path, headers=alice)).status_code == 200, path
            theirs = await http.get(path, headers=bob)
            assert theirs.status_code == 404, (path, theirs.text)
            assert theirs.json()["error"]["code"] == "NOT_FOUND"
            assert (await http.get(path, headers=admin)).status_code == 200, path
        assert (await http.delete(f"/api/v1/jobs/{job['job_id']}", headers=bob)).status_code == 404
        listed = (await http.get("/api/v1/jobs", headers=bob)).json()["jobs"]
        assert listed == []
        assert [j["job_id"] for j in (await http.get("/api/v1/jobs", headers=alice)).json()[
            "jobs"]] == [job["job_id"]]  # fmt: skip
        assert len((await http.get("/api/v1/jobs", headers=admin)).json()["jobs"]) == 1

        # uploads: another user's upload id is unknown to you, also as a template input
        from tests.server.test_templates_uploads import png_bytes

        up = await http.post(
            "/api/v1/uploads", files={"file": ("a.png", png_bytes(), "image/png")}, headers=alice
        )
        assert up.status_code == 201, up.text
        upload_id = up.json()["upload_id"]
        assert (await http.get(f"/api/v1/uploads/{upload_id}", headers=bob)).status_code == 404
        assert (await http.get(f"/api/v1/uploads/{upload_id}", headers=alice)).status_code == 200
        r = await http.post(
            "/api/v1/workflows/upscale/execute", json={"parameters": {"image": upload_id}},
            headers=bob,
        )  # fmt: skip
        assert r.status_code == 400, r.text
        assert "parameters.image" in r.json()["error"]["message"]


async def test_adhoc_workflows_can_be_opened_to_pro(tmp_path: Path, comfyui_url: str) -> None:
    settings = auth_settings(tmp_path, comfyui_url, adhoc_workflows="pro")
    async with service(settings) as (http, state):
        keys = await make_keys(http, state)
        body = {"workflow": graphs.invert()}
        r = await http.post("/api/v1/jobs", json=body, headers=bearer(keys["alice"]))
        assert r.status_code == 403 and "pro" in r.json()["error"]["message"], r.text
        r = await http.post(
            "/api/v1/jobs", json=body, headers={**bearer(keys["pat"]), "Prefer": "wait=60"}
        )
        assert r.status_code == 201 and r.json()["status"] == "completed", r.text


def test_keys_commands(tmp_path: Path) -> None:
    data = str(tmp_path / "data")

    def keys(*args: str) -> subprocess.CompletedProcess[str]:
        code = "import sys; from comfykit.cli import main; sys.exit(main(sys.argv[1:]))"
        return subprocess.run(
            [sys.executable, "-c", code, "keys", *args, "--data-dir", data],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    made = keys("create", "--role", "pro", "--name", "ci-bot")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("ck_") and len(key) >= 3 + 43  # 256 bits
    assert "shown this once" in made.stderr
    listed = keys("list", "--json")
    rows = json.loads(listed.stdout)
    assert [(r["name"], r["role"], r["owner"]) for r in rows] == [("ci-bot", "pro", "ci-bot")]
    assert key not in listed.stdout and rows[0]["prefix"] == key[:8]
    assert keys("revoke", rows[0]["key_id"]).returncode == 0
    assert json.loads(keys("list", "--json").stdout)[0]["revoked_at"]
    missing = keys("revoke", "no-such-id")
    assert missing.returncode == 2 and "no API key no-such-id" in missing.stderr
    bad = keys("create", "--role", "root", "--name", "x")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_serve_refuses_no_auth_off_loopback(tmp_path: Path) -> None:
    code = "import sys; from comfykit.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run(
        [sys.executable, "-c", code, "serve", "--host", "0.0.0.0", "--port", "1",
         "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "refusing to serve on 0.0.0.0 without authentication" in done.stderr
    assert "COMFYKIT_AUTH=required" in done.stderr and "--insecure-no-auth" in done.stderr
    assert Settings(host="0.0.0.0", auth="none", insecure_no_auth=True).exposure_problem() is None
    assert Settings(host="0.0.0.0", auth="required").exposure_problem() is None
    assert Settings(host="::1").exposure_problem() is None
    with pytest.raises(ValueError, match="not both"):
        Settings(jwt_secret=SecretStr("a" * 32), jwt_public_key=tmp_path / "k.pem")
    with pytest.raises(ValueError, match="at least 32 bytes"):
        Settings(jwt_secret=SecretStr("short"))
