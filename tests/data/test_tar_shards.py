"""Tar shards (WebDataset layout) read as references into real tar files: shard specs, the
header scan, labels, every kind of damage as an item's error naming shard and member, and
members decoding to the pixels their files decode to (issue 29)."""
from __future__ import annotations

import collections
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
from shard_files import mixed_dataset, write_shard

from engine.data.arg_checks import UsageError
from engine.data.decode import DecodeError, load_item
from engine.data.labels import LabelSource
from engine.data.shard_spec import expand_shards, read_shards
from engine.data.tar_shards import parse_ref, scan_shard, source_name, split_key


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return mixed_dataset(tmp_path_factory.mktemp("mixed"))


def _spec(dataset) -> str:
    return str(dataset.shards[0].parent / "data-{000000..000002}.tar")


def test_members_are_grouped_by_key_in_shard_then_member_order(dataset):
    found = read_shards(_spec(dataset))
    assert [source_name(i) for i in found.items] == dataset.sources
    assert found.shards == [str(p.resolve()) for p in dataset.shards]
    labels = LabelSource(embedded=True)
    good = [i for i in found.items if "broken" not in i and "cut_" not in i]
    assert [labels(i) for i in good] == [int("n01443537" in i) for i in good]


def test_members_decode_to_the_pixels_of_their_files(dataset):
    items = [i for i in read_shards(_spec(dataset)).items if "broken" not in i and "cut_" not in i]
    assert len(items) == len(dataset.folder_items) == 12
    for item, path in zip(items, dataset.folder_items, strict=True):
        np.testing.assert_array_equal(load_item(item), load_item(path))


def test_damage_is_the_items_error_naming_shard_and_member(dataset):
    items = read_shards(_spec(dataset)).items
    broken = [i for i in items if dataset.corrupt in i]
    with pytest.raises(DecodeError, match="corrupt JPEG") as e:
        load_item(broken[0])
    assert e.value.name == dataset.corrupt
    cut = [i for i in items if source_name(i) == dataset.truncated]
    with pytest.raises(DecodeError, match="truncated shard") as e:
        load_item(cut[0])
    assert e.value.name == dataset.truncated
    assert source_name(items[-2]).endswith("cut_0.png") and load_item(items[-2]).shape[2] == 3


def _one_member_shard(path: Path) -> Path:
    return write_shard(path, [("k0", {"jpg": b"\xff\xd8 x" * 100, "cls": b"3"}), ("k1", {"png": b"y" * 700})])


def test_a_missing_or_non_tar_shard_is_one_error_record(tmp_path):
    good = _one_member_shard(tmp_path / "s-0.tar")
    (tmp_path / "s-2.tar").write_bytes(b"hello" * 300)
    found = read_shards(str(tmp_path / "s-{0..2}.tar"))
    assert [source_name(i) for i in found.items] == [f"{good}#k0.jpg", f"{good}#k1.png",
                                                     f"{tmp_path}/s-1.tar#<shard>", f"{tmp_path}/s-2.tar#<shard>"]
    with pytest.raises(DecodeError, match="cannot open the shard"):
        load_item(found.items[2])
    with pytest.raises(DecodeError, match="not a readable tar file"):
        load_item(found.items[3])


def test_a_damaged_header_mid_shard_is_found_though_tarfile_stops_quietly(tmp_path):
    shard = _one_member_shard(tmp_path / "s.tar")
    data = bytearray(shard.read_bytes())
    second = data.index(b"k1.png")
    data[second + 100] ^= 0xFF  # the header's mode field: its checksum no longer holds
    shard.write_bytes(bytes(data))
    with tarfile.open(shard) as tar:
        assert [m.name for m in tar] == ["k0.jpg", "k0.cls"]  # tarfile takes it for the end of the archive
    items = scan_shard(str(shard)).items
    assert source_name(items[-1]) == f"{shard}#<header at byte {second}>"
    with pytest.raises(DecodeError, match="corrupt tar header"):
        load_item(items[-1])


def test_a_shard_cut_at_a_member_boundary_says_members_may_be_missing(tmp_path):
    shard = _one_member_shard(tmp_path / "s.tar")
    data = shard.read_bytes()
    end_of_k1 = data.index(b"k1.png") + 512 + 1024  # header, then 700 bytes padded to 1024
    shard.write_bytes(data[:end_of_k1])
    items = scan_shard(str(shard)).items
    assert [source_name(i).rpartition("#")[2] for i in items] == ["k0.jpg", "k1.png", "<end of archive>"]
    with pytest.raises(DecodeError, match="no end-of-archive blocks"):
        load_item(items[-1])


def test_json_labels_and_unreadable_label_members(tmp_path):
    shard = write_shard(tmp_path / "s.tar", [("a", {"jpg": b"1", "json": b'{"class": 7, "caption": "x"}'}),
                                             ("b", {"cls": b"not a number", "png": b"2"}),
                                             ("c", {"webp": b"3", "json": b'{"label": 2}'}),
                                             ("d", {"txt": b"no image here"})])
    found = read_shards(str(shard))
    assert [parse_ref(i).label for i in found.items] == [7, None, 2]
    assert len(found.warnings) == 1 and "s.tar#b.cls: not a label" in found.warnings[0]


def test_label_files_and_folders_match_a_members_name(tmp_path):
    shard = write_shard(tmp_path / "s.tar", [("n01443537/x_1", {"jpg": b"1", "cls": b"5"})])
    item = read_shards(str(shard)).items[0]
    assert LabelSource(from_folders=True)(item) == 1
    (tmp_path / "labels.txt").write_text("x_1.JPEG 4\n")
    assert LabelSource(tmp_path / "labels.txt")(item) == 4
    assert LabelSource(embedded=True)(item) == 5
    assert LabelSource()(item) is None
    (tmp_path / "n01440764").mkdir()
    top = write_shard(tmp_path / "n01440764" / "t.tar", [("y", {"jpg": b"1"})])
    assert LabelSource(from_folders=True)(read_shards(str(top)).items[0]) is None, "the member's folder counts"


def test_one_descriptor_per_shard_whatever_the_member_count(dataset):
    items = [i for i in read_shards(_spec(dataset)).items if "broken" not in i and "cut_" not in i]
    for item in items * 3:
        load_item(item)
    open_files = [os.path.realpath(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")]
    shard_fds = collections.Counter(f for f in open_files if f.endswith(".tar"))
    assert shard_fds[str(dataset.shards[0].resolve())] == shard_fds[str(dataset.shards[1].resolve())] == 1


def test_shard_specs_brace_glob_and_list_file(tmp_path):
    for i in range(3):
        _one_member_shard(tmp_path / f"d-{i:03d}.tar")
    names = [str(tmp_path / f"d-{i:03d}.tar") for i in range(3)]
    assert expand_shards(str(tmp_path / "d-{000..002}.tar")) == names
    assert expand_shards(str(tmp_path / "d-{002,000}.tar")) == [names[2], names[0]]
    assert expand_shards(str(tmp_path / "d-*.tar")) == names
    (tmp_path / "list.txt").write_text("# shards\nd-001.tar\n\n" + names[0] + "\n")
    assert expand_shards(str(tmp_path / "list.txt")) == [names[1], names[0]]
    with pytest.raises(UsageError, match="names no shard"):
        expand_shards(str(tmp_path / "x-*.tar"))
    with pytest.raises(UsageError, match="no such shard"):
        expand_shards(str(tmp_path / "e-{0..3}.tar"))
    with pytest.raises(UsageError, match="not a .tar shard"):
        expand_shards(str(tmp_path / "d-{000..001}.tgz"))


def test_many_shards_scan_in_processes_in_order(tmp_path):
    for i in range(9):
        write_shard(tmp_path / f"d-{i}.tar", [(f"k{i}_{j}", {"jpg": bytes([i, j]), "cls": str(i).encode()})
                                              for j in range(3)])
    items = read_shards(str(tmp_path / "d-{0..8}.tar"), workers=2).items
    assert [source_name(i).rpartition("#")[2] for i in items] == [f"k{i}_{j}.jpg" for i in range(9) for j in range(3)]


def test_split_key_is_webdatasets():
    assert split_key("n0144/img.0001.JPEG") == ("n0144/img", "0001.jpeg")
    assert split_key("a.b/c.png") == ("a.b/c", "png")
    assert split_key("noext") == ("noext", "")
