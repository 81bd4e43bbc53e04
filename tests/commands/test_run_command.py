"""engine.run as a user meets it: bad values, inputs and output paths are refused before
any work with one line and exit 2 (issue 21, items 2-4, 8 and 9)."""
from __future__ import annotations

import fcntl
import os

import pytest
from photos import write_photo

from engine.data.output_lock import FolderLock


@pytest.fixture
def run(cli, tiny_model, photo_folder):
    def go(*args, **kw):
        return cli("run", "--images", photo_folder, "--onnx", tiny_model, "--quiet", *args, **kw)
    return go


@pytest.mark.parametrize("flag,value,shown", [
    ("-b", "0", "-b must be at least 1, got 0"),
    ("-i", "-1", "-i must be at least 1, got -1"),
    ("--topk", "0", "--topk must be at least 1, got 0"),
    ("--iterations", "0", "--iterations must be at least 1, got 0"),
    ("--topk", "11", "--topk 11 exceeds the model's classes (10)"),
])
def test_bad_values_are_usage_errors(run, one_line_error, flag, value, shown):
    one_line_error(run(flag, value), shown)


def test_bad_output_paths_are_refused_before_any_work(run, one_line_error, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    one_line_error(run("--path_output", a_file), "--path_output", a_file, "is a file, not a folder")
    one_line_error(run("--path_output", "/proc/x"), "--path_output /proc/x", "cannot create folder")
    one_line_error(run("--save-topk", "/proc/x"), "--save-topk /proc/x", "cannot write in /proc")
    one_line_error(run("--report", a_file / "r.json"), "--report", a_file, "is a file, not a folder")
    one_line_error(run("--errors", tmp_path), "--errors", tmp_path, "is a directory")


def test_missing_inputs_are_usage_errors(run, cli, one_line_error, tmp_path, tiny_model, photo_folder):
    one_line_error(run("--label", tmp_path / "labels.txt"), "--label", "labels.txt", "no such file")
    one_line_error(cli("run", "--images", photo_folder, "--onnx", tmp_path, "--quiet"),
                   f"--onnx {tmp_path}: is a directory, not a file")
    one_line_error(cli("run", "--datalist", tmp_path / "list.txt", "--onnx", tiny_model),
                   "--datalist", "list.txt", "no such file")
    one_line_error(cli("run", "--images", tmp_path / "none", "--onnx", tiny_model), "--images", "no such folder")


def test_unknown_zoo_model_or_library_is_a_usage_error(cli, one_line_error, photo_folder):
    one_line_error(cli("run", "--images", photo_folder, "--model", "vgg12"),
                   "model 'vgg12' is not in the zoo", "close matches:", "vgg11")
    one_line_error(cli("run", "--images", photo_folder, "--model", "vgg11", "--model-library", "foo"),
                   "model 'vgg11' is not offered by 'foo'", "timm")


def test_a_second_run_into_one_output_folder_is_refused(run, one_line_error, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    holder = FolderLock("--path_output", out)  # a run in progress (this process) holds the folder
    try:
        line = one_line_error(run("--path_output", out), "--path_output", out, f"another run (pid {os.getpid()})")
        assert "choose another folder" in line
    finally:
        holder.release()
    done = run("--path_output", out)
    assert done.returncode == 0, done.stderr
    assert len(list(out.glob("output_*.npz"))) == 6
    with open(out / ".engine.lock") as f:  # released when the run ended
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_without_a_terminal_the_bar_says_100_percent_once(cli, tiny_model, photo_folder):
    proc = cli("run", "--images", photo_folder, "--onnx", tiny_model)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.replace("\r", "\n").count("100%") == 1, proc.stderr


def test_size_limit_error_names_the_flag(run):
    proc = run("--max-pixels", "100")
    assert proc.returncode == 3 and "Traceback" not in proc.stderr + proc.stdout
    assert "above the decompression-bomb limit of 100 (raise --max-pixels to allow it)" in proc.stdout


def test_one_label_line_taken_by_two_files_of_one_name_is_warned(cli, tiny_model, tmp_path):
    for folder in ("a", "b"):
        write_photo(tmp_path / "imgs" / folder / "same.jpg", "chelsea", size=(40, 40))
    labels = tmp_path / "labels.txt"
    labels.write_text("same.jpg 3\n")
    proc = cli("run", "--images", tmp_path / "imgs", "--onnx", tiny_model, "--label", labels, "--quiet")
    assert proc.returncode == 0, proc.stderr
    warning = next(line for line in proc.stderr.splitlines() if "warning" in line)
    assert f"--label {labels}: 1 label lines each label several items with the same file name" in warning
    assert str(tmp_path / "imgs" / "a" / "same.jpg") in warning and str(tmp_path / "imgs" / "b" / "same.jpg") in warning


def test_warmup_longer_than_the_run_is_said(run):
    proc = run("--warmup", "1000")
    assert proc.returncode == 0, proc.stderr
    assert "--warmup 1000 is not less than the 6 item(s) of the run" in proc.stderr
    assert "warm-up:" in proc.stdout
