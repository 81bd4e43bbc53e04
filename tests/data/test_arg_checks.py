"""engine.data.arg_checks' output probes: the check_ ones leave nothing behind, whatever they find;
output_dir and output_file keep the folders they made."""
from __future__ import annotations

import os

import pytest

from engine.data.arg_checks import UsageError, check_output_dir, check_output_file, output_dir, output_file


def test_checks_of_missing_folders_leave_nothing_behind(tmp_path):
    assert check_output_dir("--out", tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert check_output_file("--file", tmp_path / "c" / "d" / "f.txt") == tmp_path / "c" / "d" / "f.txt"
    assert list(tmp_path.iterdir()) == []


def test_an_existing_folder_is_kept_and_left_as_it_was(tmp_path):
    (tmp_path / "kept").mkdir()
    check_output_dir("--out", tmp_path / "kept")
    check_output_file("--file", tmp_path / "kept" / "new" / "f.txt")
    assert [p.name for p in tmp_path.rglob("*")] == ["kept"]


def test_refusals_leave_nothing_behind(tmp_path):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(UsageError, match=r"--out .*/a_file/sub/x: .*/a_file is a file, not a folder"):
        check_output_dir("--out", tmp_path / "a_file" / "sub" / "x")
    with pytest.raises(UsageError, match="cannot create folder /proc/x/y"):
        check_output_dir("--out", "/proc/x/y")
    with pytest.raises(UsageError, match=r"--file .*: is a directory, not a file"):
        check_output_file("--file", tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["a_file"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in a read-only folder")
def test_a_read_only_folder_is_refused_and_leaves_nothing(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(UsageError, match="cannot create folder"):
            check_output_file("--file", locked / "new" / "f.txt")
        with pytest.raises(UsageError, match="cannot write in"):
            check_output_dir("--out", locked)
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


def test_output_dir_and_output_file_keep_the_folders(tmp_path):
    output_dir("--out", tmp_path / "a" / "b")
    output_file("--file", tmp_path / "c" / "f.txt")
    assert (tmp_path / "a" / "b").is_dir() and (tmp_path / "c").is_dir() and not (tmp_path / "c" / "f.txt").exists()
