"""engine.image2npz --shards and engine.eval table as a user runs them (issue 29): a val/<wnid>/
folder written as tar shards runs to the same results as the folder itself, item for item,
and a results table scores as the top-k text of the same run does."""
from __future__ import annotations

import json
import tarfile

import numpy as np
import pandas as pd
import pytest
from photos import write_photo

from engine.data.datalist import scan_images


@pytest.fixture(scope="module")
def val_folder(tmp_path_factory):
    """Seven photos in two class folders (JPEG, PNG, WebP), one unreadable file, one name with dots."""
    root = tmp_path_factory.mktemp("val")
    for i in range(7):
        folder = ("n01440764", "n01443537")[i % 2]
        suffix = (".jpg", ".png", ".webp")[i % 3]
        write_photo(root / folder / f"photo.{i}{suffix}", ("chelsea", "coffee", "astronaut")[i % 3],
                    size=(40 + 5 * i, 36 + 3 * i))
    (root / "n01440764" / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    return root


def test_image2npz_shards_then_run_gives_the_folder_runs_results(cli, tiny_model, val_folder, tmp_path):
    made = cli("image2npz", "--dataset_path", val_folder, "--shards", tmp_path / "sh" / "val", "--shard-size", "3",
               "--text_path", tmp_path / "shards.txt", "--quiet", "--workers", "1")
    assert made.returncode == 3, made.stderr
    assert "broken.jpg" in made.stderr and "7 images into 3 shard(s)" in made.stderr
    shards = (tmp_path / "shards.txt").read_text().split()
    assert shards == [str(tmp_path / "sh" / f"val-{n:06d}.tar") for n in range(3)]
    with tarfile.open(shards[0]) as tar:
        assert tar.getnames() == ["n01440764/photo_0.jpg", "n01440764/photo_0.cls", "n01440764/photo_2.webp",
                                  "n01440764/photo_2.cls", "n01440764/photo_4.png", "n01440764/photo_4.cls"]
        stored = tar.extractfile("n01440764/photo_0.jpg").read()
        assert stored == (val_folder / "n01440764" / "photo.0.jpg").read_bytes()
    common = ("--onnx", tiny_model, "--quiet", "--threads", "1", "-b", "4", "--results-logits", "float32")
    folder_list = tmp_path / "folder.txt"
    folder_list.write_text("\n".join(i for i in scan_images(val_folder) if "broken" not in i) + "\n")
    by_folder = cli("run", "--datalist", folder_list, "--labels-from-folders", "--results", tmp_path / "f.parquet",
                    *common)
    by_shard = cli("run", "--shards", tmp_path / "shards.txt", "--results", tmp_path / "s.parquet", *common,
                   "--save-topk", tmp_path / "topk.txt")
    assert by_folder.returncode == by_shard.returncode == 0, (by_folder.stderr, by_shard.stderr)
    f = pd.read_parquet(tmp_path / "f.parquet").sort_values("index").reset_index(drop=True)
    s = pd.read_parquet(tmp_path / "s.parquet").sort_values("index").reset_index(drop=True)
    assert len(f) == len(s) == 7 and f["label"].tolist() == s["label"].tolist() == [0, 0, 0, 0, 1, 1, 1]
    np.testing.assert_array_equal(np.stack(f["logits"]), np.stack(s["logits"]))
    assert [list(v) for v in f["topk_index"]] == [list(v) for v in s["topk_index"]]
    scored = cli("eval", "table", tmp_path / "s.parquet", "--json", tmp_path / "eval.json")
    assert scored.returncode == 0, scored.stderr
    summary = json.loads((tmp_path / "eval.json").read_text())
    assert summary["scored"] == 7 and summary["mode"] == "table"
    by_topk = cli("eval", "topk", tmp_path / "topk.txt", "--labels-from-folders")
    from_folders = cli("eval", "table", tmp_path / "s.parquet", "--labels-from-folders")
    rate = [p.stdout.splitlines()[0] for p in (scored, by_topk, from_folders)]
    assert rate[0] == rate[1] == rate[2] and rate[0].startswith("[ENGINE]:  top1_rate:"), rate


def test_eval_table_lists_failed_rows_and_refuses_what_is_not_a_table(cli, tiny_model, tmp_path, one_line_error):
    write_photo(tmp_path / "val" / "n01443537" / "a.jpg", "coffee", size=(40, 40))
    (tmp_path / "val" / "n01443537" / "b.jpg").write_bytes(b"nope")
    run = cli("run", "--images", tmp_path / "val", "--onnx", tiny_model, "--quiet", "--labels-from-folders",
              "--results", tmp_path / "r")
    assert run.returncode == 3, run.stderr
    scored = cli("eval", "table", tmp_path / "r", "--labels-from-folders")
    assert scored.returncode == 3 and "not scored, failed item: 1" in scored.stderr, scored.stderr
    (tmp_path / "x.parquet").write_text("not parquet")
    one_line_error(cli("eval", "table", tmp_path / "x.parquet"), "x.parquet", "not a readable Parquet table")
    one_line_error(cli("eval", "table", tmp_path / "none.parquet"), "none.parquet", "no such file")
