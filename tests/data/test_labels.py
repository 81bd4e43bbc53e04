from pathlib import Path

import pytest

from engine.data.datalist import read_datalist, scan_images
from engine.data.labels import LabelSource, imagenet_class_names, imagenet_wnids, read_label_file


def test_imagenet_lists_line_up():
    wnids = imagenet_wnids()
    names = imagenet_class_names()
    assert len(wnids) == len(names) == 1000
    assert wnids[0] == "n01440764" and names[0] == "tench, Tinca tinca"
    assert names[967] == "espresso"


def test_label_file_matches_on_stem(tmp_path):
    f = tmp_path / "val_label.txt"
    f.write_text("ILSVRC2012_val_00000001.JPEG 65\n\n# comment\nILSVRC2012_val_00000002.JPEG 970\n")
    labels = LabelSource(label_file=f)
    assert labels("/x/n01751748/ILSVRC2012_val_00000001.npz") == 65
    assert labels("/y/ILSVRC2012_val_00000002.JPEG") == 970
    assert labels("/y/other.npz") is None


def test_label_file_errors_name_the_line(tmp_path):
    f = tmp_path / "bad.txt"
    f.write_text("a.JPEG 1\nb.JPEG x\n")
    with pytest.raises(ValueError, match=r"bad.txt:2"):
        read_label_file(f)
    f.write_text("a.JPEG 1\na.png 2\n")
    with pytest.raises(ValueError, match="labelled 1 and 2"):
        read_label_file(f)


def test_folder_labels():
    labels = LabelSource(from_folders=True)
    assert labels("/data/val/n01443537/img.npz") == 1
    assert labels("/data/val/notawnid/img.npz") is None


def test_datalist_skips_comments_and_resolves_relative(tmp_path):
    (tmp_path / "sub").mkdir()
    dl = tmp_path / "sub" / "list.txt"
    dl.write_text("# header\n\n/abs/a.npz\nrel/b.npz\n")
    assert read_datalist(dl) == ["/abs/a.npz", str(tmp_path / "sub" / "rel" / "b.npz")]


def test_scan_images_sorted_any_case(tmp_path):
    for name in ["b/2.JPEG", "a/1.png", "a/3.Jpg", "a/skip.txt"]:
        p = tmp_path / name
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"")
    found = [Path(p).relative_to(tmp_path).as_posix() for p in scan_images(tmp_path)]
    assert found == ["a/1.png", "a/3.Jpg", "b/2.JPEG"]


def test_scan_images_keeps_the_folder_of_a_symlinked_image(tmp_path):
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.jpg").write_bytes(b"")
    (tmp_path / "val" / "n01440764").mkdir(parents=True)
    (tmp_path / "val" / "n01440764" / "a.jpg").symlink_to(tmp_path / "flat" / "a.jpg")
    assert scan_images(tmp_path / "val") == [str(tmp_path / "val" / "n01440764" / "a.jpg")]
