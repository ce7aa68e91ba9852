"""The service's input checks that need no server: strict JSON bodies, image decoding under
limits, and output names from ComfyUI checked before anything is stored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from comfykit import AsyncOutputFile
from comfykit.server.bodies import check_json_value, is_json_media_type, parse_json
from comfykit.server.errors import BodyError, ServiceError, to_service_error
from comfykit.server.paths import UnsafePathError
from comfykit.server.services.files import Files, StorageError, inspect_image
from tests import hostile_images

DEPTH = 64


def refused(raw: bytes, depth: int = DEPTH) -> BodyError:
    with pytest.raises(BodyError) as caught:
        parse_json(raw, depth)
    assert caught.value.status_code == 400
    return caught.value


def test_ordinary_json_parses_and_duplicate_keys_are_fine() -> None:
    assert parse_json(b'{"a": [1, 2.5, "x", null, true], "b": {"c": "\\u00e9"}}', DEPTH) == {
        "a": [1, 2.5, "x", None, True],
        "b": {"c": "é"},
    }
    assert parse_json(b'{"a": 1, "a": 2}', DEPTH) == {"a": 2}
    assert parse_json(b'"bidi \\u202e text"', DEPTH) == "bidi \u202e text"


@pytest.mark.parametrize("levels", [65, 10_000, 1_000_000])
def test_deep_nesting_is_a_400_naming_the_limit_without_recursion(levels: int) -> None:
    for opener, closer in ((b"[", b"]"), (b'{"a":', b"}")):
        error = refused(opener * levels + b"1" + closer * levels)
        assert error.message == "the body is nested deeper than 64 levels (max_json_depth)"
        assert error.details[0]["rule"] == "max_json_depth"


def test_depth_is_counted_outside_strings_only() -> None:
    text = json.dumps({"a": "[[[[{{{{" * 100, "b": [[["]]]"]]]})
    assert parse_json(text.encode(), 4)["b"] == [[["]]]"]]]
    assert parse_json(b"[" * 64 + b"]" * 64, DEPTH) is not None


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        (b'{"x": NaN}', "finite_number"),
        (b'{"x": Infinity}', "finite_number"),
        (b'{"x": -Infinity}', "finite_number"),
        (b'{"x": 1e400}', "finite_number"),
        (b'{"x": ' + b"9" * 5000 + b"}", "number_too_large"),
        (b'{"x": "\xff\xfe"}', "utf8"),
        ('{"x": 1}'.encode("utf-16"), "utf8"),
        (b'{"x": "a\\u0000b"}', "nul_character"),
        (b'{"a\\u0000": 1}', "nul_character"),
        (b'{"x": ["ok", "\\ud800"]}', "lone_surrogate"),
        (b'{"x": "\\udfff"}', "lone_surrogate"),
    ],
)
def test_what_json_does_not_allow_is_a_400(raw: bytes, rule: str) -> None:
    assert refused(raw).details[0]["rule"] == rule


def test_the_field_is_named() -> None:
    error = refused(b'{"requests": [{"prompt": "ok"}, {"prompt": "a\\u0000"}]}')
    assert error.message == "requests[1].prompt holds a NUL character, which is not accepted"
    assert error.details[0]["field"] == "requests[1].prompt"
    error = refused(b'{"prompt": "\\ud800"}')
    assert error.message == "prompt holds a lone surrogate (\\ud800), which is not valid Unicode"
    # a pair of surrogates is one character and fine
    assert parse_json(b'"\\ud83d\\ude00"', DEPTH) == "\U0001f600"


def test_syntax_errors_stay_json_decode_errors() -> None:
    with pytest.raises(json.JSONDecodeError):
        parse_json(b"{nope", DEPTH)


def test_check_json_value_walks_parsed_data_iteratively() -> None:
    deep: Any = 1
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(BodyError, match="nested deeper than 64 levels"):
        check_json_value(deep, max_depth=DEPTH, where=("png",))
    with pytest.raises(BodyError) as caught:
        check_json_value({"x": float("nan")}, max_depth=DEPTH, where=("png",))
    assert caught.value.message == "png.x must be a finite number"
    check_json_value({"a": [{"b": "c"}]}, max_depth=3)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        ("Application/JSON", True),
        ("application/merge-patch+json", True),
        ("text/json", False),
        ("text/plain", False),
        ("multipart/form-data; boundary=x", False),
        ("", False),
        (None, False),
    ],
)
def test_json_media_types(value: str | None, expected: bool) -> None:
    assert is_json_media_type(value) is expected


def test_body_errors_become_the_envelope() -> None:
    error = to_service_error(BodyError(413, "too big", details={"limit": 1}))
    assert error is not None
    assert (error.status_code, error.code, error.details) == (
        413,
        "PAYLOAD_TOO_LARGE",
        {"limit": 1},
    )
    unsafe = to_service_error(UnsafePathError("../x", "holds a path separator"))
    assert unsafe is not None and unsafe.status_code == 400


# -- images ------------------------------------------------------------------------------------

LIMIT = 40_000_000


def image_error(data: bytes, limit: int = LIMIT) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        inspect_image(data, limit)
    return caught.value


def test_a_valid_image_passes() -> None:
    assert inspect_image(hostile_images.png((20, 10)), LIMIT) == ("PNG", 20, 10)


def test_a_header_bomb_is_a_400_naming_pixels_and_limit() -> None:
    error = image_error(hostile_images.header_bomb(100_000, 100_000))
    assert error.status_code == 400
    assert "10000000000 pixels" in error.message and "40000000" in error.message


def test_our_limit_is_checked_on_the_header_before_decoding() -> None:
    error = image_error(hostile_images.pixel_flood(8000, 8000))
    assert error.message == (
        "the image is too large to decode safely: 8000x8000 = 64000000 pixels; "
        "the limit is 40000000 pixels (max_image_pixels)"
    )
    small = image_error(hostile_images.png((20, 10)), limit=100)
    assert "20x10 = 200 pixels; the limit is 100 pixels" in small.message


def test_pillows_own_bomb_check_is_the_same_400() -> None:
    # under our (raised) limit but over Pillow's process-wide one: Pillow refuses first, and
    # pytest's filterwarnings=error turns its warning into an exception; the limit named is
    # the one that refused
    error = image_error(hostile_images.header_bomb(10_000, 10_000), limit=10**9)
    assert error.status_code == 400
    assert "100000000 pixels" in error.message and "Pillow's MAX_IMAGE_PIXELS" in error.message


@pytest.mark.parametrize("make", [hostile_images.text_chunk_bomb, hostile_images.text_memory_bomb])
def test_png_text_chunk_bombs_are_a_400(make: Any) -> None:
    error = image_error(make())
    assert error.status_code == 400 and "text metadata is too large" in error.message


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (hostile_images.truncated_png(), 400),
        (hostile_images.png()[:40], 415),  # cut inside its header: not identifiable
        (b"hello, I am not a picture", 415),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", 415),
        (b"", 415),
    ],
)
def test_damaged_and_foreign_files(data: bytes, status: int) -> None:
    error = image_error(data)
    assert error.status_code == status
    assert "/" not in error.message.replace("PNG, JPEG", "")


# -- outputs named by ComfyUI ------------------------------------------------------------------


def _output(filename: str, subfolder: str = "", kind: str = "output") -> AsyncOutputFile:
    return AsyncOutputFile(filename=filename, subfolder=subfolder, type=kind)


@pytest.mark.parametrize(
    ("filename", "subfolder", "kind"),
    [
        ("../../escape.png", "", "output"),
        ("x.png", "../../..", "output"),
        ("x.png", "/etc", "output"),
        ("..\\x.png", "", "output"),
        ("x\x00.png", "", "output"),
        ("x.png", "", "../output"),
    ],
)
async def test_unsafe_outputs_are_refused_before_anything_is_written(
    tmp_path: Path, filename: str, subfolder: str, kind: str
) -> None:
    files = Files(tmp_path / "storage", store=None)  # type: ignore[arg-type]
    files.prepare()
    good = _output("ok.png")
    with pytest.raises(UnsafePathError):
        await files.copy_outputs("job-1", [good, _output(filename, subfolder, kind)])
    assert list((tmp_path / "storage" / "outputs").iterdir()) == []


async def test_a_symlink_out_of_the_storage_dir_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    files = Files(tmp_path / "storage", store=None)  # type: ignore[arg-type]
    files.prepare()
    (files.outputs / "job-2").symlink_to(outside, target_is_directory=True)
    with pytest.raises(StorageError, match="leads out of the storage dir"):
        await files.copy_outputs("job-2", [_output("ok.png")])
    assert list(outside.iterdir()) == []
    with pytest.raises(StorageError):
        files.stored("uploads", "..")
