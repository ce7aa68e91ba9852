"""The service's one traversal check, its display names and its path scrubbing (no server)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from comfykit.server.paths import (
    UnsafePathError,
    check_segment,
    display_name,
    resolve_inside,
    safe_relative_path,
    scrub_paths,
)


@pytest.mark.parametrize(
    ("name", "subfolder"),
    [
        ("x.png", ""),
        ("ComfyUI_00001_.png", "comfykit-server/5f0c/3"),
        ("a b (1).webp", "sub folder"),
        ("10:5_00001_.png", ""),
        ("ünïcødé.png", "日本"),
        ("..x.png", "a..b"),
    ],
)
def test_safe_names_pass(name: str, subfolder: str) -> None:
    path = safe_relative_path(name, subfolder)
    assert path == PurePosixPath(*[p for p in subfolder.split("/") if p], name)
    assert not path.is_absolute()


@pytest.mark.parametrize(
    ("name", "subfolder", "reason"),
    [
        ("..", "", "'..' segment"),
        (".", "", "'.' segment"),
        ("", "", "empty"),
        ("../x.png", "", "path separator"),
        ("/etc/passwd", "", "path separator"),
        ("..\\..\\x.png", "", "backslash"),
        ("x\x00.png", "", "NUL"),
        ("x\n.png", "", "control"),
        ("x\u202egnp.exe", "", "control or formatting"),
        ("x\u200b.png", "", "control or formatting"),
        ("C:x.png", "", "drive letter"),
        ("x" * 256, "", "longer than 255 bytes"),
        ("é" * 128, "", "longer than 255 bytes"),
        ("x.png", "../..", "'..' segment"),
        ("x.png", "a/../../b", "'..' segment"),
        ("x.png", "/etc", "absolute"),
        ("x.png", "a\\..\\b", "backslash"),
        ("x.png", "C:/Windows", "drive letter"),
        ("x.png", "a//b", "empty"),
        ("x.png", "a/\x00", "NUL"),
    ],
)
def test_unsafe_names_are_refused_naming_the_reason(name: str, subfolder: str, reason: str) -> None:
    with pytest.raises(UnsafePathError) as caught:
        safe_relative_path(name, subfolder)
    assert reason in str(caught.value), caught.value
    assert isinstance(caught.value, ValueError)


def test_check_segment_names_what_it_checks() -> None:
    with pytest.raises(UnsafePathError, match=r"^node id '\.\./x' holds a path separator$"):
        check_segment("../x", what="node id")
    assert check_segment("12") == "12"


def test_resolve_inside_keeps_paths_in_the_root(tmp_path: Path) -> None:
    root = tmp_path / "storage"
    (root / "outputs").mkdir(parents=True)
    inside = resolve_inside(root, "outputs/a/0.png")
    assert inside == (root / "outputs" / "a" / "0.png").resolve()
    assert resolve_inside(root, "outputs/../uploads/x.png").parent.name == "uploads"
    for bad in ("../x", "outputs/../../x", "/etc/passwd", "C:/x"):
        with pytest.raises(UnsafePathError):
            resolve_inside(root, bad)


def test_a_symlink_out_of_the_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "storage"
    outside = tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    (root / "file-link").symlink_to(outside / "secret.txt")
    with pytest.raises(UnsafePathError, match="leads out of the storage dir"):
        resolve_inside(root, "link/x.png")
    with pytest.raises(UnsafePathError, match="leads out of the storage dir"):
        resolve_inside(root, "file-link")
    # a symlink that stays inside is fine, and so is a storage dir that is itself a link
    (root / "real").mkdir()
    (root / "inner").symlink_to(root / "real", target_is_directory=True)
    assert resolve_inside(root, "inner/x.png") == (root / "real" / "x.png").resolve()
    alias = tmp_path / "alias"
    alias.symlink_to(root, target_is_directory=True)
    assert resolve_inside(alias, "real/x.png") == (root / "real" / "x.png").resolve()


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("../../etc/passwd.png", "passwd.png"),
        ("..\\..\\x.png", "x.png"),
        ("/etc/x.png", "x.png"),
        ("C:\\Users\\me\\photo.jpg", "photo.jpg"),
        ("a\x00b.png", "ab.png"),
        ("invoice\u202egnp.exe.png", "invoicegnp.exe.png"),
        ("tab\tand\nnewline.png", "tabandnewline.png"),
        ("..", "upload"),
        ("", "upload"),
        ("   ", "upload"),
        (".hidden.png", "hidden.png"),
        ("e\u0301.png", "\u00e9.png"),
        ("lone\ud800.png", "lone.png"),
    ],
)
def test_display_names_are_cleaned(given: str, shown: str) -> None:
    assert display_name(given) == shown


def test_display_names_are_capped_keeping_the_extension() -> None:
    name = display_name("x" * 5000 + ".png")
    assert len(name) == 120 and name.endswith(".png")
    assert len(display_name("y" * 500)) == 120


def test_scrub_paths_keeps_the_last_part_only() -> None:
    text = (
        "No such file: '/root/.cache/comfykit/models/x.safetensors' in "
        'File "/usr/lib/python3.11/site-packages/torch/nn.py", and C:\\Users\\me\\y.png'
    )
    scrubbed = scrub_paths(text)
    assert "/root" not in scrubbed and "site-packages" not in scrubbed and "Users" not in scrubbed
    assert "'.../x.safetensors'" in scrubbed and '".../nn.py"' in scrubbed
    assert "...\\y.png" in scrubbed
    # URLs and relative paths are left alone
    url = "cannot reach http://127.0.0.1:8188/object_info/KSampler (a/b/c.png)"
    assert scrub_paths(url) == url
