"""A command refused for any argument leaves no output folder behind: the output checks make
and write in the folders they probe, then remove them; the writers make them when they write."""
from __future__ import annotations

import json


def test_image2npz_refused_for_its_datalist_leaves_no_target_folder(cli, one_line_error, photo_folder, tmp_path):
    target = tmp_path / "new" / "npz"
    one_line_error(cli("image2npz", "--dataset_path", photo_folder, "--target_path", target,
                       "--text_path", tmp_path, "--quiet"), f"--text_path {tmp_path}", "is a directory")
    assert not (tmp_path / "new").exists()


def test_eval_refused_for_per_class_leaves_no_json_folder_and_writes_it_when_accepted(cli, one_line_error,
                                                                                     tmp_path):
    results = tmp_path / "topk.txt"
    results.write_text("a.jpg: Relay top-0 id: 1, prob: 0.90000000, class name: x\n")
    labels = tmp_path / "labels.txt"
    labels.write_text("a.jpg 1\n")
    summary = tmp_path / "new" / "deeper" / "s.json"
    one_line_error(cli("eval", "topk", results, "--label", labels, "--json", summary, "--per-class", "/proc/x/c.csv"),
                   "--per-class /proc/x/c.csv", "cannot create folder /proc/x")
    assert not (tmp_path / "new").exists()
    per_class = tmp_path / "other" / "c.csv"
    proc = cli("eval", "topk", results, "--label", labels, "--json", summary, "--per-class", per_class)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(summary.read_text())["top1_rate"] == 100.0
    assert per_class.read_text().startswith("class_id,")


def test_image2npz_refused_for_an_empty_dataset_leaves_neither_folder(cli, one_line_error, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    target, datalist = tmp_path / "new" / "npz", tmp_path / "lists" / "dl.txt"
    one_line_error(cli("image2npz", "--dataset_path", empty, "--target_path", target, "--text_path", datalist,
                       "--quiet"), "no images", empty)
    assert not (tmp_path / "new").exists() and not (tmp_path / "lists").exists()
