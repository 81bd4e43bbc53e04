"""What several suites share: test inputs, the engine run as a command, paired timing, and
goals written once with ``met`` computed from them.

Inputs are made from the photos that ship with scikit-image (nothing is downloaded):
ImageNet-sized npz files, one photo at any size, and camera-sized JPEGs. scikit-image has
no 12 MP photo, so ``camera_jpegs`` makes them: a bundled photo upscaled with Pillow's
bicubic filter, with sensor-like noise (a real camera photo has detail down to the pixel;
an upscaled one would be unrealistically smooth and compress to a third of the size),
saved as a quality-92 JPEG with 4:2:0 chroma, as cameras and phones write them.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
IMAGENET_SIZE = (500, 375)  # (width, height) of a typical ILSVRC2012 val photo
CAMERA_SIZE = (4000, 3000)  # a 12 MP camera or phone photo
CAMERA_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


@dataclass(frozen=True)
class Goal:
    """A ratio's goal, ``op`` ("<=" or ">=") ``bound``: written once, ``met`` computed from it."""

    op: str
    bound: float

    def __str__(self) -> str:
        return f"{self.op} {self.bound:g}"

    def met(self, *values: float) -> bool:
        """Whether every one of ``values`` meets the goal."""
        return all(v <= self.bound if self.op == "<=" else v >= self.bound for v in values)


def ratio(name: str, value: float, goal: Goal | None = None, *, readme: bool = False,
          also: tuple[float, ...] = (), **extra) -> dict:
    """A suite's ratio dict. ``also``: more values the goal must hold for (e.g. the best
    rounds as well as the median); ``readme``: one of the suite's key rows for the README."""
    row = {"name": name, "value": round(float(value), 3), "goal": str(goal) if goal else None,
           "met": goal.met(value, *also) if goal else None, **extra}
    return row | ({"readme": True} if readme else {})


def scikit_photo(name: str) -> np.ndarray:
    import skimage.data

    return np.ascontiguousarray(getattr(skimage.data, name)()[..., :3])


def photo_at(size: tuple[int, int], name: str = "astronaut") -> np.ndarray:
    """A bundled photo resized once with Pillow to ``size`` = (width, height), uint8 HWC."""
    return np.asarray(Image.fromarray(scikit_photo(name)).resize(size, Image.BILINEAR))


def camera_photo(name: str, variant: int = 0, size: tuple[int, int] = CAMERA_SIZE) -> Image.Image:
    """A camera-sized photo made from bundled photo ``name`` (see the module docstring);
    ``variant`` picks a crop and a mirror image, so one photo gives several."""
    image = Image.fromarray(scikit_photo(name))
    w, h = image.size
    rng = np.random.default_rng(variant * 1000 + sum(map(ord, name)))
    cut = 0.12 * (variant % 3)
    box = (int(rng.uniform(0, cut) * w), int(rng.uniform(0, cut) * h), w - int(rng.uniform(0, cut) * w), h)
    image = image.crop(box).resize(size, Image.BICUBIC)
    if variant % 2:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    noisy = np.asarray(image, np.float32) + rng.normal(0.0, 4.0, (size[1], size[0], 3)).astype(np.float32)
    return Image.fromarray(np.clip(noisy + 0.5, 0, 255).astype(np.uint8))


def camera_jpegs(folder: Path, count: int, size: tuple[int, int] = CAMERA_SIZE) -> list[Path]:
    """``count`` camera-sized JPEGs in ``folder`` (made once; kept if already there)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        name = CAMERA_PHOTOS[i % len(CAMERA_PHOTOS)]
        path = folder / f"{name}_{i:03d}_{size[0]}x{size[1]}.jpg"
        if not path.exists():
            camera_photo(name, i // len(CAMERA_PHOTOS), size).save(path, quality=92, subsampling="4:2:0")
        paths.append(path)
    return paths


def imagenet_photos(count: int):
    """``count`` ImageNet-sized (500x375) photos cut from scikit-image's, as PIL images:
    shifted crops of four photos, the same ones every time."""
    photos = [scikit_photo(name) for name in ("chelsea", "coffee", "astronaut", "rocket")]
    rng = np.random.default_rng(0)
    for i in range(count):
        im = Image.fromarray(photos[i % len(photos)])
        w, h = im.size
        x0, y0 = int(rng.integers(0, w // 8)), int(rng.integers(0, h // 8))
        yield im.crop((x0, y0, w - x0 // 2, h - y0 // 2)).resize(IMAGENET_SIZE, Image.BICUBIC)


def make_npz_set(folder: Path, count: int) -> list[str]:
    """``count`` ImageNet-sized npz files (CHW uint8), every other one mirrored."""
    paths = []
    for i, im in enumerate(imagenet_photos(count)):
        if i % 2:
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        path = folder / "n00000000" / f"img_{i:05d}.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, input_0=np.asarray(im).transpose(2, 0, 1).copy())
        paths.append(str(path))
    return paths


def run_engine(datalist: Path, model: Path, report: Path, *extra) -> dict:
    """``python -m engine.run`` on ``datalist`` with ``model``: its report."""
    cmd = [sys.executable, "-m", "engine.run", "--datalist", str(datalist), "--onnx", str(model), "--quiet",
           "--report", str(report), *map(str, extra)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"engine.run failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(report.read_text())


@dataclass
class PairedRounds:
    """A bare loop's and the engine's rates (img/s), measured in alternating rounds so that
    each pair meets the same background load; ``per_round`` the engine/loop ratio of each pair."""

    loop: list[float]
    engine: list[float]
    report: dict  # the last engine run's report (its stage times)

    @property
    def per_round(self) -> list[float]:
        return [e / b for e, b in zip(self.engine, self.loop, strict=True)]

    @property
    def ratio(self) -> float:
        """The median of the paired ratios."""
        return float(np.median(self.per_round))


def paired_rounds(rounds: int, loop_rate, engine_report) -> PairedRounds:
    """``rounds`` pairs of ``loop_rate()`` (img/s) then ``engine_report(round)`` (an engine.run report)."""
    paired = PairedRounds([], [], {})
    for r in range(rounds):
        paired.loop.append(loop_rate())
        paired.report = engine_report(r)
        paired.engine.append(paired.report["throughput_qps"])
    return paired


def timed(fn, count: int) -> list[float]:
    """Seconds of each of ``count`` calls of ``fn``."""
    times = []
    for _ in range(count):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def interleaved_medians(candidates: dict, rounds: int, block) -> tuple[dict[str, float], dict[str, float]]:
    """Median ms of each candidate (``name -> times(count)``), timed in ``rounds`` rounds of
    ``block`` runs each (an int, or ``name -> int``), the candidates taking turns in a
    rotating order, so that on a shared machine every candidate meets the same background
    load; and the best (lowest) round median of each, which bursts of load disturb less."""
    blocks = block if isinstance(block, dict) else dict.fromkeys(candidates, block)
    samples = {name: [] for name in candidates}
    best = dict.fromkeys(candidates, np.inf)
    names = list(candidates)
    for name in names:  # warm-up, not recorded
        candidates[name](2)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times = candidates[name](blocks[name])
            samples[name] += times
            best[name] = min(best[name], float(np.median(times) * 1e3))
    return {name: float(np.median(t) * 1e3) for name, t in samples.items()}, best


def one_core() -> None:
    """numba, torch and OpenCV on one thread: the per-image rows compare one core each."""
    import cv2
    import numba
    import torch

    numba.set_num_threads(1)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
