"""Who is asking: API keys and JWT bearer tokens, roles, and the per-route policies.

Two ways in, both on every route but ``/health`` (and ``/ready``, ``/metrics`` when the
settings make them public): an API key (``Authorization: Bearer ck_...`` or ``X-API-Key``) or a
JWT (``Authorization: Bearer eyJ...``; HS256 with ``jwt_secret``, RS256/ES256 with
``jwt_public_key``, a PEM file or a JWKS file). Keys are 256 random bits, shown once, stored as
their SHA-256 hash and compared in constant time.

Roles: ``free`` and ``pro`` see their own jobs and uploads only (another user's id is a 404);
``admin`` manages templates, keys and ad-hoc workflows and sees everything. With
``auth=none`` (loopback only) every caller is the anonymous admin.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import hmac
import json
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import jwt
from fastapi import Depends, Request, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from comfykit.server.errors import ServiceError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from comfykit.server.limits import RateLimiter
    from comfykit.server.settings import Settings
    from comfykit.server.store import ApiKeyRow, Store

__all__ = [
    "KEY_PREFIX",
    "ROLES",
    "Authenticator",
    "Policy",
    "Principal",
    "Role",
    "hash_key",
    "new_api_key",
]

Role = Literal["free", "pro", "admin"]
ROLES: tuple[Role, ...] = ("free", "pro", "admin")
_RANK = {"free": 0, "pro": 1, "admin": 2}

KEY_PREFIX = "ck_"
#: How long a looked-up key is trusted before it is read again (a revocation made through
#: another replica takes at most this long; one made through this one takes effect at once).
KEY_CACHE_SECONDS = 5.0
#: ``last_used_at`` is written at most this often per key.
LAST_USED_EVERY = 60.0


def new_api_key() -> str:
    """A new API key: ``ck_`` and 256 random bits (URL-safe base64)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """What the store keeps of a key: its SHA-256 (hex). A key has 256 random bits, so a fast
    hash cannot be searched back to it."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


@dataclasses.dataclass(frozen=True, slots=True)
class Principal:
    """The caller of one request."""

    #: The user jobs and uploads belong to: an API key's owner or a token's subject;
    #: ``None`` for the anonymous caller of an unauthenticated service.
    user: str | None
    role: Role
    #: How the caller proved it: ``none`` (auth off or a public route), ``api_key``, ``jwt``.
    via: Literal["none", "api_key", "jwt"]
    key_id: str | None = None

    @property
    def is_admin(self) -> bool:
        """Admins see and manage everything."""
        return self.role == "admin"

    @property
    def owner_filter(self) -> str | None:
        """The owner a listing is limited to (``None``: everything)."""
        if self.is_admin:
            return None
        return self.user or ""  # no job has an empty owner: a caller without a user sees none

    def may_see(self, owner: str | None) -> bool:
        """Whether a job or upload of ``owner`` is visible to this caller."""
        return self.is_admin or (self.user is not None and owner == self.user)

    @property
    def rate_key(self) -> str:
        """The rate-limit bucket of an authenticated caller."""
        return f"key:{self.key_id}" if self.key_id else f"user:{self.user}"


ANONYMOUS_ADMIN = Principal(user=None, role="admin", via="none")
_PUBLIC = Principal(user=None, role="free", via="none")


class Policy(enum.Enum):
    """Who may call a route."""

    #: Anyone (``/health``).
    PUBLIC = "public"
    #: Any authenticated role.
    USER = "user"
    #: ``admin`` only.
    ADMIN = "admin"
    #: Ad-hoc workflows (``POST /api/v1/jobs``): admin, or pro when ``adhoc_workflows=pro``.
    ADHOC = "adhoc"
    #: ``/ready``: public when ``public_ready``, else any role.
    READY = "ready"
    #: ``/metrics``: public when ``public_metrics``, else admin.
    METRICS = "metrics"


def _unauthorized(message: str) -> ServiceError:
    return ServiceError(401, message, headers={"WWW-Authenticate": 'Bearer realm="comfykit"'})


@dataclasses.dataclass(slots=True)
class _CachedKey:
    principal: Principal | None
    revoked: bool
    checked: float
    key_hash: str


class _JwtVerifier:
    """Checks bearer tokens: signature, ``exp`` (required), ``nbf``, ``aud``, ``iss``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        #: key id (``None``: the default key) -> (key, the one algorithm it verifies)
        self.keys: dict[str | None, tuple[Any, str]] = {}
        if settings.jwt_secret is not None:
            self.keys[None] = (settings.jwt_secret.get_secret_value(), "HS256")
        elif settings.jwt_public_key is not None:
            self._load_public(Path(settings.jwt_public_key))

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def _load_public(self, path: Path) -> None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"jwt_public_key: cannot read {path}: {exc.strerror}") from None
        if text.lstrip().startswith("{"):
            try:
                jwks = jwt.PyJWKSet.from_dict(json.loads(text))
            except (ValueError, jwt.PyJWTError) as exc:
                raise ValueError(f"jwt_public_key: {path} is not a usable JWKS: {exc}") from None
            for key in jwks.keys:
                self.keys[key.key_id] = (key.key, _algorithm_of(key.key))
            if len(jwks.keys) == 1:
                self.keys.setdefault(None, self.keys[jwks.keys[0].key_id])
            return
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        try:
            public = load_pem_public_key(text.encode())
        except ValueError as exc:
            raise ValueError(f"jwt_public_key: {path} is not a PEM public key: {exc}") from None
        self.keys[None] = (public, _algorithm_of(public))

    def verify(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _unauthorized("the bearer token is neither an API key nor a JWT") from None
        kid = header.get("kid")
        found = self.keys.get(kid if kid in self.keys else None)
        if found is None:
            raise _unauthorized(f"the token's key id {kid!r} is not a key this service trusts")
        key, algorithm = found
        if header.get("alg") != algorithm:
            raise _unauthorized(f"the token's signature or format is not valid (not {algorithm})")
        s = self.settings
        try:
            return jwt.decode(
                token, key, algorithms=[algorithm], audience=s.jwt_audience,
                issuer=s.jwt_issuer, leeway=s.jwt_leeway_seconds,
                options={"require": ["exp", "sub"]},
            )  # fmt: skip
        except jwt.ExpiredSignatureError:
            raise _unauthorized("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise _unauthorized("the token is not valid yet (nbf)") from None
        except jwt.InvalidAudienceError:
            raise _unauthorized("the token's audience (aud) is not this service") from None
        except jwt.InvalidIssuerError:
            raise _unauthorized("the token's issuer (iss) is not trusted") from None
        except jwt.MissingRequiredClaimError as exc:
            raise _unauthorized(f"the token has no {exc.claim} claim") from None
        except (jwt.PyJWTError, TypeError, ValueError):
            raise _unauthorized("the token's signature or format is not valid") from None


def _algorithm_of(key: Any) -> str:
    """The one JWS algorithm a public key verifies: RS256 (RSA), ES256/384/512 (by curve)."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(key, rsa.RSAPublicKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey):
        by_curve = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
        if key.curve.name in by_curve:
            return by_curve[key.curve.name]
    raise ValueError(f"jwt_public_key: unsupported key type {type(key).__name__} (RSA or EC)")


_bearer = HTTPBearer(auto_error=False, description="An API key (ck_...) or a JWT")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key (ck_...)")
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
ApiKeyCredentials = Annotated[str | None, Depends(_api_key)]


class Authenticator:
    """Identifies callers and applies the route policies, the rate limit and their headers."""

    def __init__(self, settings: Settings, store: Store, limiter: RateLimiter) -> None:
        self.settings = settings
        self.store = store
        self.limiter = limiter
        self.jwt = _JwtVerifier(settings)
        self._keys: dict[str, _CachedKey] = {}
        self._last_used: dict[str, float] = {}

    @property
    def required(self) -> bool:
        """Whether callers must prove who they are."""
        return self.settings.auth == "required"

    # -- identification -------------------------------------------------------------------
    async def identify(self, authorization: str | None, api_key: str | None) -> Principal | None:
        """The caller the credentials prove (``None`` without any); 401 for bad ones."""
        token: str | None = None
        if authorization:
            scheme, _, value = authorization.strip().partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise _unauthorized("Authorization must be 'Bearer <API key or JWT>'")
            token = value.strip()
        if api_key is not None and token is not None and api_key.strip() != token:
            raise _unauthorized("give one credential: Authorization or X-API-Key, not both")
        if api_key is not None and token is None:
            token = api_key.strip()
            if not token.startswith(KEY_PREFIX):
                raise _unauthorized("X-API-Key must be an API key (ck_...)")
        if token is None:
            return None
        if token.startswith(KEY_PREFIX):
            return await self._from_key(token)
        if not self.jwt.enabled:
            raise _unauthorized(
                "the bearer token is not an API key (ck_...) and this service verifies no "
                "JWTs (COMFYKIT_JWT_SECRET or COMFYKIT_JWT_PUBLIC_KEY)"
            )
        return self._from_claims(self.jwt.verify(token))

    def _from_claims(self, claims: dict[str, Any]) -> Principal:
        name = self.settings.jwt_role_claim
        role = claims.get(name, "free")
        if role not in ROLES:
            raise ServiceError(
                403, f"the token's {name!r} claim must be one of {', '.join(ROLES)}",
                details={"claim": name},
            )  # fmt: skip
        subject = str(claims["sub"]).strip()
        if not subject:
            raise _unauthorized("the token's sub claim is empty")
        return Principal(user=subject, role=role, via="jwt")

    async def _from_key(self, key: str) -> Principal:
        digest = hash_key(key)
        now = time.monotonic()
        cached = self._keys.get(digest)
        if cached is None or now - cached.checked > KEY_CACHE_SECONDS:
            row = await self.store.get_api_key_by_hash(digest)
            cached = _CachedKey(
                principal=_key_principal(row) if row is not None else None,
                revoked=row is not None and row.revoked_at is not None,
                checked=now,
                key_hash=row.key_hash if row is not None else "",
            )
            if len(self._keys) > 10_000:
                self._keys.clear()
            self._keys[digest] = cached
        if cached.principal is None or not hmac.compare_digest(cached.key_hash, digest):
            raise _unauthorized("the API key is not valid")
        if cached.revoked:
            raise _unauthorized("the API key has been revoked")
        key_id = cached.principal.key_id
        assert key_id is not None
        if now - self._last_used.get(key_id, -LAST_USED_EVERY) >= LAST_USED_EVERY:
            self._last_used[key_id] = now
            await self.store.touch_api_key(key_id, dt.datetime.now(dt.timezone.utc))
        return cached.principal

    def forget(self, key_id: str) -> None:
        """Drop a key from the cache (after it was revoked here)."""
        for digest, cached in list(self._keys.items()):
            if cached.principal is not None and cached.principal.key_id == key_id:
                del self._keys[digest]

    # -- policies -------------------------------------------------------------------------
    def _public(self, policy: Policy) -> bool:
        s = self.settings
        return (
            policy is Policy.PUBLIC
            or (policy is Policy.READY and s.public_ready)
            or (policy is Policy.METRICS and s.public_metrics)
        )

    def _authorize(self, policy: Policy, who: Principal | None) -> Principal:
        """The caller of a route with ``policy``: credentials are ignored on public routes
        and when auth is off; 401 without them, 403 for a role too low."""
        s = self.settings
        if self._public(policy):
            return _PUBLIC
        if not self.required:
            return ANONYMOUS_ADMIN
        if who is None:
            raise _unauthorized(
                "credentials required: send 'Authorization: Bearer <API key or JWT>' or "
                "'X-API-Key: <API key>'"
            )
        lowest: Role = "free"
        if policy in (Policy.ADMIN, Policy.METRICS):
            lowest = "admin"
        elif policy is Policy.ADHOC:
            lowest = s.adhoc_workflows
        if _RANK[who.role] < _RANK[lowest]:
            raise ServiceError(
                403, f"this route needs the {lowest} role (you are {who.role})",
                details={"role": who.role, "required": lowest},
            )  # fmt: skip
        return who

    async def admit(
        self,
        policy: Policy,
        *,
        authorization: str | None,
        api_key: str | None,
        client: str,
    ) -> tuple[Principal, dict[str, str]]:
        """Identify, rate-limit and authorize one caller of a route with ``policy``: the
        :class:`Principal` and the ``RateLimit-*`` headers; 401, 403 or 429 as a
        :class:`~comfykit.server.errors.ServiceError`. (Credentials are read only where the
        route needs them.)"""
        who = None
        if self.required and not self._public(policy):
            who = await self.identify(authorization, api_key)
        headers: dict[str, str] = {}
        if self.limiter.enabled:
            bucket = who.rate_key if who is not None else f"ip:{client}"
            headers = await self.limiter.hit(bucket)
        return self._authorize(policy, who), headers

    def dependency(self, policy: Policy) -> Callable[..., Awaitable[Principal]]:
        """The FastAPI dependency of a route with ``policy``: identify, rate-limit, authorize
        (:meth:`admit`); the caller's :class:`Principal`."""

        async def admitted(
            request: Request, response: Response, authorization: str | None, api_key: str | None
        ) -> Principal:
            who, headers = await self.admit(
                policy, authorization=authorization, api_key=api_key,
                client=request.client.host if request.client else "unknown",
            )  # fmt: skip
            for name, value in headers.items():
                response.headers[name] = value
            return who

        if not self.required or self._public(policy):
            # nobody is identified: no credentials to read (nor to document)
            async def open_guard(request: Request, response: Response) -> Principal:
                return await admitted(request, response, None, None)

            open_guard.__name__ = f"require_{policy.value}"
            return open_guard

        async def guard(
            request: Request,
            response: Response,
            _bearer: BearerCredentials = None,  # declared for the OpenAPI security schemes
            api_key: ApiKeyCredentials = None,
        ) -> Principal:
            return await admitted(request, response, request.headers.get("authorization"), api_key)

        guard.__name__ = f"require_{policy.value}"
        return guard


def _key_principal(row: ApiKeyRow) -> Principal:
    role: Role = row.role if row.role in ROLES else "free"
    return Principal(user=row.owner, role=role, via="api_key", key_id=row.id)
