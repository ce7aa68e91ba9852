"""Secrets never reach the log: the redacting filter (no server)."""

from __future__ import annotations

import logging

import pytest

from comfykit.server.redact import RedactingFilter, install_redaction, redact

KEY = "ck_Zq3vX9fT-2mB_8yLwP0aRkS4"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c2VyLTEiLCJyb2xlIjoiYWRtaW4ifQ."
    "Jm1p8Kc9Xg2r0uYbq7a3vLqP1Z0sN6dE4wT5yH8kR2M"
)
WHSEC = "whsec_MfKQ9r8GKYqXZT3rJ+cWfCfcJ4nB0a7g"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"key {KEY} used", KEY),
        (f"X-API-Key: {KEY}", KEY),
        (f"/api/v1/jobs?api_key={KEY}", KEY),
        (f"Authorization: Bearer {JWT}", JWT),
        (f"token={JWT}", JWT),
        ("Authorization: bearer opaque-token.value_123", "opaque-token.value_123"),
        (f"signing with {WHSEC}", WHSEC),
        ("postgresql+asyncpg://comfy:s3cr3t-pw@db:5432/comfykit", "s3cr3t-pw"),
    ],
)
def test_secrets_are_redacted(text: str, secret: str) -> None:
    clean = redact(text)
    assert secret not in clean, clean
    assert "[REDACTED]" in clean


@pytest.mark.parametrize(
    "text",
    [
        "check_segment refused a name",
        "job 5f0c2b1e-6a77-4c41-9d0e-6e1f2a3b4c5d completed",
        "GET /api/v1/jobs/abc 200",
        "stack_trace_limit=3",
        "http://127.0.0.1:8188/prompt",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


def _record(msg: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("comfykit.server", logging.INFO, __file__, 1, msg, args, info)


def test_the_filter_redacts_message_args_and_exception_text() -> None:
    flt = RedactingFilter()
    record = _record("auth with %s for %s", KEY, {"authorization": f"Bearer {JWT}"})
    assert flt.filter(record) is True
    message = record.getMessage()
    assert KEY not in message and JWT not in message
    assert "auth with ck_[REDACTED] for" in message

    try:
        raise ValueError(f"bad secret {WHSEC}")
    except ValueError as err:
        record = _record("failed", exc=err)
    flt.filter(record)
    text = logging.Formatter().format(record)
    assert WHSEC not in text and "whsec_[REDACTED]" in text and "Traceback" in text

    clean = _record("nothing secret here: %d jobs", 3)
    flt.filter(clean)
    assert clean.args == (3,) and clean.getMessage() == "nothing secret here: 3 jobs"


def test_a_record_that_cannot_be_formatted_still_loses_its_secrets() -> None:
    record = _record(f"broken %d {KEY}", KEY)
    RedactingFilter().filter(record)
    assert KEY not in str(record.msg) and KEY not in str(record.args)


def test_the_service_loggers_redact(caplog: pytest.LogCaptureFixture) -> None:
    child = logging.getLogger("comfykit.server.test-redact-child")
    install_redaction()
    install_redaction()  # idempotent
    for name in ("comfykit.server", "comfykit.server.access", "comfykit.server.dispatcher",
                 child.name):  # fmt: skip
        filters = logging.getLogger(name).filters
        assert sum(isinstance(f, RedactingFilter) for f in filters) == 1, name
    with caplog.at_level(logging.INFO, logger="comfykit.server"):
        logging.getLogger("comfykit.server.access").info("key=%s", KEY)
        child.warning("Bearer %s", JWT)
    assert KEY not in caplog.text and JWT not in caplog.text
    assert "ck_[REDACTED]" in caplog.text


def test_serve_log_config_puts_the_filter_on_every_handler() -> None:
    from comfykit.server.cli import log_config

    config = log_config()
    assert config["disable_existing_loggers"] is False
    assert config["filters"]["redact"]["()"] == "comfykit.server.redact.RedactingFilter"
    assert all(h["filters"] == ["redact"] for h in config["handlers"].values())
    assert config["loggers"]["comfykit.server"]["handlers"] == ["comfykit"]
    assert "uvicorn.error" in config["loggers"]
