"""engine.eval and engine.data.topk_text on hand-made result files with known answers."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.data.labels import imagenet_class_names, imagenet_wnids
from engine.data.scoring import accuracy_line
from engine.data.topk_text import format_topk_lines, read_topk_file, write_topk_file
from engine.eval import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, main

REPO = Path(__file__).resolve().parents[2]


def run_eval(*args):
    return subprocess.run([sys.executable, "-m", "engine.eval", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def accuracy_of(stdout: str) -> tuple[float, float]:
    line = next(text for text in stdout.splitlines() if text.startswith("[ENGINE]:"))
    parts = line.split()
    return float(parts[2]), float(parts[4])


def json_after_line(stdout: str) -> dict:
    return json.loads(stdout[stdout.index("{"):])


def test_accuracy_line_keeps_the_seed_layout():
    assert accuracy_line(69.028, 88.626) == "[ENGINE]:  top1_rate: 69.028 top5_rate: 88.626"
    assert accuracy_line(100, 2 / 3 * 100, tag="[VACC]") == "[VACC]:  top1_rate: 100.000 top5_rate: 66.667"


def test_topk_lines_round_trip_names_with_commas_and_colons(tmp_path):
    names = ["tench, Tinca tinca", "crane, bird", "odd: name, with: colons", "plain"]
    lines = format_topk_lines("/data/a: b/img.JPEG", [2, 1, 0], [0.5, 0.25, 0.125], [names[2], names[1], names[0]])
    assert lines[0] == ("/data/a: b/img.JPEG: Relay top-0 id: 2, prob: 0.50000000, "
                        "class name: odd: name, with: colons")
    assert lines[2].endswith("top-2 id: 0, prob: 0.12500000, class name: tench, Tinca tinca")
    assert format_topk_lines("x.png", [7], [1.0], None) == ["x.png: Relay top-0 id: 7, prob: 1.00000000, class name: "]
    with pytest.raises(ValueError, match="do not pair up"):
        format_topk_lines("x.png", [7, 8], [1.0, 0.0], ["seven"])
    out = tmp_path / "r.txt"
    write_topk_file(out, [("/data/a: b/img.JPEG", [2, 1, 0], [0.5, 0.25, 0.125]),
                          ("/x/y.npz", [3], [1.0])], names)
    results = read_topk_file(out)
    assert list(results) == ["/data/a: b/img.JPEG", "/x/y.npz"]
    assert results["/data/a: b/img.JPEG"] == [(2, 0.5, names[2]), (1, 0.25, names[1]), (0, 0.125, names[0])]
    assert results["/x/y.npz"][0].name == "plain"


@pytest.mark.parametrize("text, message", [
    ("/a.JPEG: Relay top-0 id: 1, prob: 0.1, class name: x\n/a.JPEG: Relay top-2 id: 1, prob: 0.1, class name: x\n",
     ":2: top-2 of /a.JPEG where top-1 of /a.JPEG or top-0 was expected"),
    ("/a.JPEG: Relay top-1 id: 1, prob: 0.1, class name: x\n", ":1: top-1 of /a.JPEG where top-0 was expected"),
    ("/a.JPEG: top-0 id 1\n", ":1: not a result line"),
    ("/a.JPEG: Relay top-0 id: 1, prob: high, class name: x\n", ":1: not a result line"),
])
def test_malformed_topk_file_names_file_and_line(tmp_path, text, message):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_topk_file(path)
    proc = run_eval("topk", path, "--labels-from-folders")
    assert proc.returncode == EXIT_USAGE
    assert "bad.txt" + message in proc.stderr


def test_an_item_listed_twice_is_scored_twice(tmp_path):
    wnid = imagenet_wnids()[7]
    item = str(tmp_path / wnid / "x.JPEG")
    result = tmp_path / "r.txt"
    write_topk_file(result, [(item, [7, 1], [0.9, 0.1]), (item, [1, 7], [0.6, 0.4])], imagenet_class_names())
    assert read_topk_file(result)[item][0].class_id == 7  # the dict keeps the first block
    proc = run_eval("topk", result, "--labels-from-folders")
    assert proc.returncode == EXIT_OK and accuracy_of(proc.stdout) == (50.0, 100.0)
    assert json_after_line(proc.stdout)["ranks_per_item"] == 2
    assert "only 2 ranked classes" in proc.stderr


def write_four_image_results(tmp_path: Path) -> Path:
    """Four images in wnid folders: top-1 right twice, top-5 right three times."""
    wnids, names = imagenet_wnids(), imagenet_class_names()
    ranked = {
        "0/a.JPEG": (0, [0, 5, 6, 7, 8]),       # top-1 hit
        "1/b.JPEG": (1, [1, 2, 3, 4, 9]),       # top-1 hit
        "2/c.JPEG": (2, [7, 8, 2, 4, 5]),       # top-5 hit only
        "3/d.JPEG": (3, [10, 11, 12, 13, 14]),  # miss
    }
    items = []
    for rel, (_cls, ids) in ranked.items():
        folder, name = rel.split("/")
        path = tmp_path / "val" / wnids[int(folder)] / name
        probs = np.linspace(0.5, 0.1, 5)
        items.append((str(path), ids, probs))
    result = tmp_path / "result.txt"
    write_topk_file(result, items, names)
    return result


def test_topk_four_images_from_folders(tmp_path):
    result = write_four_image_results(tmp_path)
    per_class = tmp_path / "per_class.csv"
    proc = run_eval("topk", result, "--labels-from-folders", "--per-class", per_class)
    assert proc.returncode == EXIT_OK, proc.stderr
    assert accuracy_of(proc.stdout) == (50.0, 75.0)
    summary = json_after_line(proc.stdout)
    assert (summary["scored"], summary["top1_correct"], summary["top5_correct"]) == (4, 2, 3)
    rows = per_class.read_text().splitlines()
    assert rows[0].startswith("class_id,class_name,count")
    assert rows[1] == '0,"tench, Tinca tinca",1,1,1,100.000,100.000'
    assert rows[3].startswith("2,") and rows[3].endswith(",1,0,1,0.000,100.000")


def test_topk_with_label_file_lists_unlabelled_items(tmp_path):
    result = write_four_image_results(tmp_path)
    labels = tmp_path / "val_label.txt"
    labels.write_text("a.JPEG 0\nb.JPEG 9\nc.JPEG 2\n")  # d has no label, b is now wrong
    report = tmp_path / "report.json"
    proc = run_eval("topk", result, "--label", labels, "--json", report)
    assert proc.returncode == EXIT_PARTIAL
    assert accuracy_of(proc.stdout) == (pytest.approx(33.333), 100.0)
    assert "not scored, no label: 1" in proc.stderr and "d.JPEG" in proc.stderr
    assert "scored 3 of 4 items" in proc.stderr
    summary = json.loads(report.read_text())
    assert summary["scored"] == 3 and summary["top5_correct"] == 3
    assert summary["skipped_by_reason"]["no label"]["items"] == [str(tmp_path / "val" / imagenet_wnids()[3] / "d.JPEG")]


def test_topk_usage_errors(tmp_path):
    assert run_eval("topk", tmp_path / "none.txt", "--labels-from-folders").returncode == EXIT_USAGE
    proc = run_eval("topk", tmp_path / "none.txt")
    assert proc.returncode == 2 and "--label" in proc.stderr


def write_outputs(result_dir: Path, logits_by_index: dict[int, np.ndarray]) -> None:
    result_dir.mkdir(parents=True, exist_ok=True)
    for i, logits in logits_by_index.items():
        np.savez(result_dir / f"output_{i:06d}.npz", output_0=logits.astype(np.float32))


def one_hot_logits(ranked: list[int], classes: int = 10) -> np.ndarray:
    logits = np.zeros((1, classes), np.float32)
    for rank, cls in enumerate(ranked):
        logits[0, cls] = 10.0 - rank
    return logits


def test_imagenet_pairs_outputs_by_datalist_position(tmp_path):
    """output_000002 is missing: a sorted-glob pairing would shift items 3 and 4 onto the
    wrong results and score them as misses; datalist pairing scores them right."""
    items = [f"/npz/img{i}.npz" for i in range(6)]
    (tmp_path / "datalist.txt").write_text("".join(f"{p}\n" for p in items))
    labels = {0: 1, 1: 2, 2: 3, 3: 4, 4: 5}          # img5 has no label
    (tmp_path / "val_label.txt").write_text("".join(f"img{i}.JPEG {c}\n" for i, c in labels.items()))
    outputs = {0: one_hot_logits([1]),               # top-1
               1: one_hot_logits([0, 2]),            # top-5 only
               3: one_hot_logits([4]),               # top-1
               4: np.zeros((1, 7), np.float32),      # wrong class count
               5: one_hot_logits([0]),
               7: one_hot_logits([0])}               # pairs with no datalist entry
    write_outputs(tmp_path / "out", outputs)
    report = tmp_path / "report.json"
    proc = run_eval("imagenet", "--result_path", tmp_path / "out", "--datalist", tmp_path / "datalist.txt",
                    "--label", tmp_path / "val_label.txt", "--json", report)
    assert proc.returncode == EXIT_PARTIAL, proc.stderr
    assert accuracy_of(proc.stdout) == (pytest.approx(66.667), 100.0)
    summary = json.loads(report.read_text())
    assert (summary["items"], summary["scored"], summary["skipped"]) == (6, 3, 3)
    assert summary["num_classes"] == 10
    reasons = summary["skipped_by_reason"]
    assert reasons["missing result"]["items"] == ["/npz/img2.npz (output_000002.npz)"]
    assert reasons["no label"]["items"] == ["/npz/img5.npz"]
    assert reasons["result with a class count other than 10"]["items"] == ["/npz/img4.npz (output_000004.npz)"]
    assert summary["unpaired_results"] == ["output_000007.npz"]
    assert "img2.npz (output_000002.npz)" in proc.stderr and "output_000007.npz" in proc.stderr


def test_imagenet_all_scored_from_folders_exits_zero(tmp_path):
    wnids = imagenet_wnids()
    items = [f"/npz/{wnids[c]}/x{c}.npz" for c in (3, 999)]
    (tmp_path / "datalist.txt").write_text("\n".join(items) + "\n")
    logits = np.random.default_rng(0).normal(size=(1, 1000)).astype(np.float32)
    logits[0, 3] = 50.0
    write_outputs(tmp_path / "out", {0: logits, 1: logits})
    assert main(["imagenet", "--result-path", str(tmp_path / "out"), "--datalist", str(tmp_path / "datalist.txt"),
                 "--labels-from-folders", "--json", str(tmp_path / "r.json")]) == EXIT_OK
    summary = json.loads((tmp_path / "r.json").read_text())
    assert (summary["scored"], summary["top1_correct"]) == (2, 1)


def test_imagenet_bad_shape_and_unreadable_results_are_listed(tmp_path):
    items = ["/n/a.npz", "/n/b.npz", "/n/c.npz"]
    (tmp_path / "datalist.txt").write_text("\n".join(items))
    (tmp_path / "val_label.txt").write_text("a 1\nb 1\nc 1\n")
    write_outputs(tmp_path / "out", {0: one_hot_logits([1]), 1: np.zeros((2, 10))})
    (tmp_path / "out" / "output_000002.npz").write_bytes(b"not a zip")
    proc = run_eval("imagenet", "--result_path", tmp_path / "out", "--datalist", tmp_path / "datalist.txt",
                    "--label", tmp_path / "val_label.txt")
    assert proc.returncode == EXIT_PARTIAL
    assert accuracy_of(proc.stdout) == (100.0, 100.0)
    summary = json_after_line(proc.stdout)
    assert summary["scored"] == 1
    assert list(summary["skipped_by_reason"]) == ["result not of shape (1, C)", "unreadable result (not an npz file)"]


def test_imagenet_nothing_scored_prints_no_rates(tmp_path):
    (tmp_path / "datalist.txt").write_text("/n/a.npz\n")
    (tmp_path / "out").mkdir()
    proc = run_eval("imagenet", "--result_path", tmp_path / "out", "--datalist", tmp_path / "datalist.txt",
                    "--labels-from-folders")
    assert proc.returncode == EXIT_PARTIAL
    assert "[ENGINE]" not in proc.stdout and "no item could be scored" in proc.stderr
    assert run_eval("imagenet", "--result_path", tmp_path / "nowhere", "--datalist", tmp_path / "datalist.txt",
                    "--labels-from-folders").returncode == EXIT_USAGE
