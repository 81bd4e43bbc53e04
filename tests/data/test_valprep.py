"""engine.valprep on a synthetic flat val folder of a few classes."""
import subprocess
import sys
from pathlib import Path

import pytest

from engine.data.labels import imagenet_class_names, imagenet_wnid_index, imagenet_wnids
from engine.valprep import main

REPO = Path(__file__).resolve().parents[2]
WNIDS = imagenet_wnids()
TRUTH = {1: WNIDS[0], 2: WNIDS[417], 3: WNIDS[0], 4: WNIDS[999], 5: WNIDS[417]}


def stem(n: int) -> str:
    return f"ILSVRC2012_val_{n:08d}"


def make_val(root: Path, numbers=TRUTH) -> Path:
    val = root / "val"
    val.mkdir(parents=True)
    for n in numbers:
        (val / f"{stem(n)}.JPEG").write_bytes(f"image {n}".encode())
    return val


def write_solution(path: Path, truth=TRUTH) -> Path:
    rows = ["ImageId,PredictionString"]
    rows += [f"{stem(n)},{wnid} 10 20 30 40 {wnid} 1 2 3 4" for n, wnid in truth.items()]
    path.write_text("\n".join(rows) + "\n")
    return path


def valprep(*args):
    return subprocess.run([sys.executable, "-m", "engine.valprep", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): (f"-> {p.readlink()}" if p.is_symlink() else p.read_text())
            for p in sorted(root.rglob("*")) if p.is_file() or p.is_symlink()}


def expected_labels() -> str:
    index = imagenet_wnid_index()
    return "".join(f"{stem(n)}.JPEG {index[w]}\n" for n, w in sorted(TRUTH.items()))


def test_solution_csv_moves_into_wnid_folders_and_writes_labels(tmp_path):
    val = make_val(tmp_path)
    (val / "extra_photo.JPEG").write_bytes(b"x")  # no ground-truth line: left alone
    proc = valprep(val, "--solution", write_solution(tmp_path / "LOC_val_solution.csv"))
    assert proc.returncode == 0, proc.stderr
    for n, wnid in TRUTH.items():
        assert (val / wnid / f"{stem(n)}.JPEG").read_text() == f"image {n}"
        assert not (val / f"{stem(n)}.JPEG").exists()
    assert (val / "extra_photo.JPEG").exists() and "1 images in" in proc.stderr
    assert (tmp_path / "val_label.txt").read_text() == expected_labels()
    names = (tmp_path / "label.txt").read_text().splitlines()
    assert names == list(imagenet_class_names()) and names[0] == "tench, Tinca tinca"

    before = tree(tmp_path)  # idempotent: a second run finds everything in place
    again = valprep(val, "--solution", tmp_path / "LOC_val_solution.csv")
    assert again.returncode == 0 and "5 already in place, 0 to move" in again.stdout
    assert tree(tmp_path) == before


def test_missing_file_moves_nothing_and_names_the_line(tmp_path):
    val = make_val(tmp_path, numbers=[1, 2, 3, 5])  # image 4 is missing
    solution = write_solution(tmp_path / "LOC_val_solution.csv")
    before = tree(tmp_path)
    proc = valprep(val, "--solution", solution)
    assert proc.returncode == 2
    assert "nothing was moved" in proc.stderr
    assert f"LOC_val_solution.csv:5 names {stem(4)}, which is not in {val}" in proc.stderr
    assert tree(tmp_path) == before


def test_image_in_the_wrong_class_folder_is_refused(tmp_path):
    val = make_val(tmp_path, numbers=[1, 2, 3, 4])
    (val / WNIDS[5]).mkdir()
    (val / WNIDS[5] / f"{stem(5)}.JPEG").write_text("image 5")
    solution = write_solution(tmp_path / "s.csv")
    before = tree(tmp_path)
    proc = valprep(val, "--solution", solution)
    assert proc.returncode == 2 and f"is in folder {WNIDS[5]} but" in proc.stderr
    assert tree(tmp_path) == before


def test_existing_label_file_with_other_content_is_not_replaced(tmp_path):
    val = make_val(tmp_path)
    solution = write_solution(tmp_path / "s.csv")
    (tmp_path / "val_label.txt").write_text("someone's own labels\n")
    before = tree(tmp_path)
    proc = valprep(val, "--solution", solution)
    assert proc.returncode == 2 and "val_label.txt exists with other content" in proc.stderr
    assert tree(tmp_path) == before
    assert valprep(val, "--solution", solution, "--overwrite").returncode == 0
    assert (tmp_path / "val_label.txt").read_text() == expected_labels()


def test_dry_run_changes_nothing(tmp_path):
    val = make_val(tmp_path)
    solution = write_solution(tmp_path / "s.csv")
    before = tree(tmp_path)
    proc = valprep(val, "--solution", solution, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "0 already in place, 5 to move into 3 class folders" in proc.stdout
    assert f"would move {val / (stem(1) + '.JPEG')} -> {val / WNIDS[0] / (stem(1) + '.JPEG')}" in proc.stdout
    assert tree(tmp_path) == before


def test_link_into_target_leaves_sources_and_is_idempotent(tmp_path):
    val = make_val(tmp_path)
    target = tmp_path / "arranged" / "val"
    args = [str(val), "--solution", str(write_solution(tmp_path / "s.csv")), "--link", "--target", str(target)]
    assert main(args) == 0
    for n, wnid in TRUTH.items():
        link = target / wnid / f"{stem(n)}.JPEG"
        assert link.is_symlink() and link.readlink() == val / f"{stem(n)}.JPEG"
        assert link.read_text() == f"image {n}"
        assert (val / f"{stem(n)}.JPEG").is_file()
    assert (tmp_path / "arranged" / "val_label.txt").read_text() == expected_labels()
    before = tree(tmp_path)
    assert main(args) == 0
    assert tree(tmp_path) == before


def test_devkit_ground_truth_with_id_map(tmp_path):
    val = make_val(tmp_path)
    # devkit ids in meta.mat order differ from the sorted-wnid index: map them explicitly
    devkit_id = {WNIDS[0]: 449, WNIDS[417]: 12, WNIDS[999]: 1000}
    (tmp_path / "gt.txt").write_text("".join(f"{devkit_id[TRUTH[n]]}\n" for n in sorted(TRUTH)))
    (tmp_path / "map.txt").write_text("".join(f"{i} {w}\n" for w, i in devkit_id.items()))
    proc = valprep(val, "--ground-truth", tmp_path / "gt.txt", "--id-map", tmp_path / "map.txt",
                   "--out-dir", tmp_path / "labels")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "labels" / "val_label.txt").read_text() == expected_labels()
    assert (val / WNIDS[999] / f"{stem(4)}.JPEG").is_file()


@pytest.mark.parametrize("extra, message", [
    (["--ground-truth", "gt.txt"], "--ground-truth needs --id-map"),
    (["--solution", "s.csv", "--link"], "--link needs --target"),
])
def test_usage_errors(tmp_path, extra, message):
    val = make_val(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "engine.valprep", str(val), *extra], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, env={"PYTHONPATH": str(REPO)})
    assert proc.returncode == 2 and message in proc.stderr


def test_unknown_wnid_and_conflicting_lines_are_errors(tmp_path):
    val = make_val(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text(f"ImageId,PredictionString\n{stem(1)},n99999999 1 2 3 4\n")
    proc = valprep(val, "--solution", bad)
    assert proc.returncode == 2 and "bad.csv:2: 'n99999999' is not one of the 1000" in proc.stderr
    bad.write_text(f"{stem(1)},{WNIDS[0]} 1\n{stem(1)},{WNIDS[1]} 1\n")
    proc = valprep(val, "--solution", bad)
    assert proc.returncode == 2 and f"bad.csv:2: {stem(1)} is {WNIDS[1]} but" in proc.stderr
