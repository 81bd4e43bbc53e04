"""Real WebDataset tar shards for tests and benchmarks, written with tarfile from real files.

``write_shard(path, samples)`` writes ``samples`` (``(key, {extension: bytes})``, in order)
as a plain tar, each member named ``key.extension``. ``mixed_dataset(root)`` lays out the
same images twice, as a folder (``root/folder/<wnid>/<name>.<ext>``) and as two shards
(``root/shards/data-00000{0,1}.tar``) with ``cls`` labels: JPEG, PNG and npz members, one
corrupt JPEG, and a third shard cut short in the middle of a member.
"""
from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from photos import write_photo

WNIDS = ("n01440764", "n01443537")  # class 0 and class 1 of ImageNet's sorted wnids


def write_shard(path: Path, samples) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for key, members in samples:
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                info.mtime = 0
                tar.addfile(info, io.BytesIO(data))
    return path


def npz_bytes(path: Path) -> bytes:
    """The image at ``path`` as engine.image2npz stores it (uint8 CHW under input_0)."""
    from engine.data.decode import decode_image

    buf = io.BytesIO()
    np.savez(buf, input_0=np.ascontiguousarray(decode_image(path).transpose(2, 0, 1)))
    return buf.getvalue()


@dataclass
class MixedDataset:
    folder: Path  # the good images as files, val/<wnid>/ style
    shards: list[Path]  # data-000000.tar, data-000001.tar (complete), data-000002.tar (truncated)
    folder_items: list[str]  # the files, in the shards' member order
    sources: list[str]  # SHARD#MEMBER of every item the shards give, in order
    corrupt: str  # SHARD#MEMBER of the corrupt JPEG
    truncated: str  # SHARD#MEMBER of the member cut short


def mixed_dataset(root: Path, per_shard: int = 6) -> MixedDataset:
    folder, shard_dir = root / "folder", root / "shards"
    photos = ("chelsea", "coffee", "astronaut")
    shards, folder_items, sources, corrupt = [], [], [], ""
    for s in range(2):
        samples = []
        shard = shard_dir / f"data-{s:06d}.tar"
        for i in range(per_shard):
            n = s * per_shard + i
            label = n % 2
            ext = ("jpg", "png", "npz")[n % 3]
            key = f"{WNIDS[label]}/img_{n:04d}"
            image = folder / WNIDS[label] / f"img_{n:04d}.{'jpg' if ext == 'npz' else ext}"
            write_photo(image, photos[n % 3], size=(40 + 3 * n, 36 + n))
            data = npz_bytes(image) if ext == "npz" else image.read_bytes()
            if ext == "npz":
                image = image.with_suffix(".npz")
                image.write_bytes(data)
            samples.append((key, {ext: data, "cls": str(label).encode()}))
            folder_items.append(str(image))
            sources.append(f"{shard.resolve()}#{key}.{ext}")
        bad_key = f"{WNIDS[0]}/broken_{s}"
        samples.insert(2, (bad_key, {"jpg": b"\xff\xd8\xff\xe0 not really a jpeg", "cls": b"0"}))
        sources.insert(s * (per_shard + 1) + 2, f"{shard.resolve()}#{bad_key}.jpg")
        corrupt = corrupt or f"{shard.resolve()}#{bad_key}.jpg"
        shards.append(write_shard(shard, samples))
    cut = shard_dir / "data-000002.tar"
    write_shard(cut, [(f"{WNIDS[1]}/cut_{i}", {"png": (folder / WNIDS[1] / "img_0001.png").read_bytes(),
                                                 "cls": b"1"}) for i in range(2)])
    whole = cut.read_bytes()
    second = whole.index(f"{WNIDS[1]}/cut_1.png".encode())  # a header starts with its member's name
    cut.write_bytes(whole[:second + 512 + 100])  # its header, then 100 bytes of its data
    sources += [f"{cut.resolve()}#{WNIDS[1]}/cut_0.png", f"{cut.resolve()}#{WNIDS[1]}/cut_1.png"]
    shards.append(cut)
    return MixedDataset(folder, shards, folder_items, sources, corrupt, f"{cut.resolve()}#{WNIDS[1]}/cut_1.png")
