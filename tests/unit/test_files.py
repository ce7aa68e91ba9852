"""The one save rule: folders, names that exist, identical bytes, and errors naming the
destination the caller gave."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from comfykit import ComfyError, FileSaveError
from comfykit._files import FileWriter, check_writable_dir, is_folder, save_bytes, target_path


def test_what_counts_as_a_folder(tmp_path: Path) -> None:
    (tmp_path / "exists").mkdir()
    (tmp_path / "plain").write_bytes(b"x")
    assert is_folder(f"{tmp_path}/new/")  # a trailing separator
    assert is_folder(tmp_path / "exists")  # an existing folder
    assert is_folder(tmp_path / "out")  # no extension, not there yet
    assert not is_folder(tmp_path / "cat.png")
    assert not is_folder(tmp_path / "plain")  # an existing file stays a file
    assert target_path(f"{tmp_path}/new/", "a.png") == tmp_path / "new" / "a.png"
    assert target_path(tmp_path / "cat.png", "a.png") == tmp_path / "cat.png"
    assert target_path(tmp_path / "exists", "sub/../b.png") == tmp_path / "exists" / "b.png"


def test_a_trailing_separator_makes_the_folder(tmp_path: Path) -> None:
    path = save_bytes(b"one", f"{tmp_path}/out/", "img.png")
    assert path == tmp_path / "out" / "img.png" and path.read_bytes() == b"one"
    assert (tmp_path / "out").is_dir()


def test_an_existing_name_is_never_overwritten_unless_asked(tmp_path: Path) -> None:
    first = save_bytes(b"one", tmp_path, "img.png")
    second = save_bytes(b"two", tmp_path, "img.png")
    third = save_bytes(b"three", tmp_path, "img.png")
    assert [p.name for p in (first, second, third)] == ["img.png", "img-1.png", "img-2.png"]
    assert first.read_bytes() == b"one" and second.read_bytes() == b"two"
    forced = save_bytes(b"four", tmp_path, "img.png", overwrite=True)
    assert forced == first and first.read_bytes() == b"four"


def test_identical_bytes_are_not_written_twice(tmp_path: Path) -> None:
    first = save_bytes(b"same", tmp_path, "img.png")
    save_bytes(b"other", tmp_path, "img.png")  # img-1.png
    assert save_bytes(b"same", tmp_path, "img.png") == first
    assert save_bytes(b"other", tmp_path, "img.png") == tmp_path / "img-1.png"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img-1.png", "img.png"]


def test_saved_files_get_the_usual_mode_and_no_temporary_file_is_left(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    os.umask(umask)
    path = save_bytes(b"x", tmp_path, "img.png")
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["img.png"]


def test_an_aborted_write_leaves_the_target_as_it_was(tmp_path: Path) -> None:
    (tmp_path / "img.png").write_bytes(b"before")
    writer = FileWriter(tmp_path, "img.png", overwrite=True).open()
    writer.write(b"half")
    writer.abort()
    assert (tmp_path / "img.png").read_bytes() == b"before"
    assert [p.name for p in tmp_path.iterdir()] == ["img.png"]


def test_file_system_errors_are_typed_and_name_the_callers_destination(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_bytes(b"x")
    dest = tmp_path / "a-file" / "out"
    with pytest.raises(FileSaveError) as info:
        save_bytes(b"x", dest, "img.png")
    err = info.value
    assert isinstance(err, ComfyError) and isinstance(err, OSError)
    assert err.path == dest and str(dest) in str(err) and ".part" not in str(err)
    assert isinstance(err.__cause__, OSError)
    with pytest.raises(FileSaveError, match="Not a directory"):
        check_writable_dir(dest)
    with pytest.raises(FileSaveError, match=r"Not a directory \(.*a-file is a file\)"):
        check_writable_dir(dest / "deeper", create=False)
    look = tmp_path / "look" / "only"
    assert check_writable_dir(look, create=False) == look
    assert not (tmp_path / "look").exists()  # looking creates nothing
    assert check_writable_dir(tmp_path / "new" / "deep") == tmp_path / "new" / "deep"
