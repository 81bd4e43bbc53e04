"""engine.run --shards and --results as a user runs them (issue 29): real tar shards with
JPEG, PNG and npz members, cls labels, a corrupt member and a truncated shard give the
results of a folder run of the same images; the Parquet table read back by pyarrow and
pandas; an interrupted run leaves a readable table and says so."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hidden_packages import environment
from shard_files import mixed_dataset

from engine.pipeline.results_table import COLUMNS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return mixed_dataset(tmp_path_factory.mktemp("mixed"))


def _spec(dataset) -> str:
    return str(dataset.shards[0].parent / "data-{000000..000002}.tar")


def _member_key(source: str) -> str:
    """``wnid/img_0003`` from a shard member's source or a file's path."""
    name = source.rpartition("#")[2] if "#" in source else "/".join(Path(source).parts[-2:])
    return name.rpartition(".")[0]


def test_shards_give_what_a_folder_run_of_the_same_images_gives(cli, tiny_model, dataset, tmp_path):
    datalist = tmp_path / "files.txt"
    datalist.write_text("\n".join(dataset.folder_items) + "\n")
    common = ("--onnx", tiny_model, "--quiet", "--threads", "1", "-b", "4", "--results-logits", "float32")
    files = cli("run", "--datalist", datalist, "--labels-from-folders", "--results", tmp_path / "files.parquet",
                *common, "--report", tmp_path / "files.json")
    shards = cli("run", "--shards", _spec(dataset), "--results", tmp_path / "shards", *common,
                 "--save-topk", tmp_path / "topk.txt", "--report", tmp_path / "shards.json")
    assert files.returncode == 0, files.stderr
    assert shards.returncode == 3, shards.stderr
    by_file = pd.read_parquet(tmp_path / "files.parquet").sort_values("index")
    by_shard = pd.read_parquet(tmp_path / "shards").sort_values("index")
    assert list(by_shard.columns) == [*COLUMNS, "logits"]
    assert by_shard["index"].tolist() == list(range(len(dataset.sources)))
    assert by_shard["source"].tolist() == dataset.sources
    failed = by_shard[by_shard["error"].notna()]
    assert sorted(failed["source"]) == sorted([dataset.corrupt, dataset.corrupt.replace("000000", "000001")
                                               .replace("broken_0", "broken_1"), dataset.truncated])
    assert failed["topk_index"].isna().all() and failed["logits"].isna().all()
    assert "truncated shard" in failed.set_index("source").loc[dataset.truncated, "error"]
    good = by_shard[by_shard["error"].isna() & ~by_shard["source"].str.contains("cut_0")]
    assert [_member_key(s) for s in good["source"]] == [_member_key(s) for s in by_file["source"]]
    for column in ("label", "topk_index", "topk_name"):
        assert [list(np.atleast_1d(v)) for v in good[column]] == [list(np.atleast_1d(v)) for v in by_file[column]]
    np.testing.assert_array_equal(np.stack(good["logits"].to_numpy()), np.stack(by_file["logits"].to_numpy()))
    np.testing.assert_array_equal(np.stack(good["topk_prob"].to_numpy()), np.stack(by_file["topk_prob"].to_numpy()))
    reports = [json.loads((tmp_path / name).read_text()) for name in ("files.json", "shards.json")]
    assert reports[1]["accuracy"]["labelled"] == len(good) + 1  # from the cls members: every result, cut_0's too
    assert reports[0]["accuracy"]["top1"] == pytest.approx(100 * np.mean([t[0] == lab for t, lab in
                                                                          zip(good["topk_index"], good["label"])]))
    assert failed.set_index("source").loc[dataset.corrupt, "label"] == 0  # the corrupt member's own cls
    errors = {e["item"] for e in reports[1]["errors"]}
    assert dataset.truncated in errors and dataset.corrupt in errors
    assert (tmp_path / "topk.txt").read_text().count("Relay top-0") == len(good) + 1  # cut_0 too


def test_the_table_reads_back_in_pyarrow_and_pandas(cli, tiny_model, dataset, tmp_path):
    out = tmp_path / "r.parquet"
    proc = cli("run", "--shards", _spec(dataset), "--onnx", tiny_model, "--quiet", "--threads", "1", "-b", "4",
               "--results", out, "--results-logits", "float16", "--topk", "3")
    assert proc.returncode == 3, proc.stderr
    table = pq.read_table(out)
    assert table.schema.names == [*COLUMNS, "logits"]
    assert str(table.schema.field("logits").type) == "list<element: halffloat>"
    assert table.num_rows == len(dataset.sources)
    meta = pq.read_metadata(out).metadata
    assert meta[b"engine.complete"] == b"true" and meta[b"engine.rows"] == str(len(dataset.sources)).encode()
    frame = table.to_pandas()
    assert frame.equals(pd.read_parquet(out))
    ok = frame[frame["error"].isna()]
    assert all(len(t) == 3 for t in ok["topk_index"]) and all(len(v) == 10 for v in ok["logits"])
    assert all(abs(float(p.sum()) - 1.0) > -1 and (np.diff(p) <= 0).all() for p in ok["topk_prob"])
    assert ok["label"].notna().all()


def test_an_interrupted_run_leaves_a_readable_table_and_says_so(tiny_model, dataset, tmp_path):
    shard_list = tmp_path / "shards.txt"
    shard_list.write_text("\n".join(str(dataset.shards[0]) for _ in range(3000)) + "\n")
    out = tmp_path / "r.parquet"
    run = subprocess.Popen([sys.executable, "-m", "engine.run", "--shards", str(shard_list), "--onnx", str(tiny_model),
                            "--quiet", "--threads", "1", "-b", "4", "--workers", "1", "--results", str(out)],
                           cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in run.stderr:
        if line.startswith("engine: workers:"):
            break
    time.sleep(1.5)
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 130, stderr
    assert "the run did not finish; the table is readable" in stderr
    table = pq.read_table(out)
    assert 0 < table.num_rows < 3000 * 7
    assert pq.read_metadata(out).metadata[b"engine.complete"] == b"false"
    assert len(set(table.column("index").to_pylist())) == table.num_rows


def test_results_without_pyarrow_is_one_line_naming_the_extra(cli, tiny_model, dataset, tmp_path, one_line_error):
    env = environment(tmp_path / "site", ("pyarrow",))
    proc = subprocess.run([sys.executable, "-m", "engine.run", "--shards", _spec(dataset), "--onnx", str(tiny_model),
                           "--results", str(tmp_path / "r.parquet")], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    one_line_error(proc, "--results", "vgg-stream-engine[results]")


@pytest.mark.parametrize("args,shown", [
    (["--shards", "/nonexistent/d-{0..3}.tar"], "--shards /nonexistent/d-{0..3}.tar: no such shard"),
    (["--shards", "/tmp/d.tgz"], "is not a .tar shard"),
    (["--results-logits", "float16"], "--results-logits applies to --results"),
    (["--results", "out.parquet", "--ray", "127.0.0.1:1"], "with --ray give a folder"),
])
def test_bad_shard_and_results_options_are_one_line(cli, tiny_model, dataset, tmp_path, one_line_error, args, shown):
    source = [] if "--shards" in args else ["--shards", _spec(dataset)]
    one_line_error(cli("run", *source, *args, "--onnx", tiny_model, cwd=tmp_path), shown)


def test_the_python_api_takes_shards_and_results(tiny_model, dataset, tmp_path):
    import engine

    report = engine.run(shards=_spec(dataset), onnx=str(tiny_model), threads=1, batch_size=4,
                        results=str(tmp_path / "api.parquet"), results_logits="float16")
    assert report["counts"]["failed"] == 3 and len(report["errors"]) == 3
    frame = pd.read_parquet(tmp_path / "api.parquet")
    assert sorted(frame["source"]) == sorted(dataset.sources)
