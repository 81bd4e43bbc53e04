"""Preprocessing suite: the fused resize+crop+normalize kernel against its baselines, and
``--fast-decode`` on 12 MP photos.

One core (numba, torch and OpenCV set to one thread), a photo (scikit-image's astronaut,
resized once with Pillow) to a (3, 224, 224) float32 tensor, median ms per image, all in
one run, at three sizes: 500x375 (ImageNet-sized), 2000x1500 (3 MP) and 4000x3000 (12 MP,
a camera or phone photo). At 500x375:

- the kernel (``kernels.resize_crop_normalize``) on an HWC array, on the engine's input
  (an npz CHW array seen as HWC through ``transpose(1, 2, 0)``), and its uint8 variant;
  the same with ``interpolation="bicubic"`` (timm's usual eval resampling);
- torchvision ``Compose([Resize(256), CenterCrop(224), ToTensor(), Normalize()])`` on a
  PIL image (stock Pillow: what the kernel reproduces bit for bit);
- stock Pillow's ``Image.resize`` alone;
- pillow-simd's ``Image.resize`` alone (BILINEAR and BICUBIC), and BILINEAR followed by a
  numpy crop + normalize (in ``.venv-simd`` through ``bench/simd_resize.py --serve``:
  pillow-simd replaces PIL);
- OpenCV ``cv2.resize`` (INTER_AREA and INTER_LINEAR) + crop + normalize: fast, but NOT
  the same pixels (no antialiasing for LINEAR, a different filter for AREA).

At 2000x1500 and 4000x3000, the kernel (bilinear, bicubic) against pillow-simd's resize
alone. Goal at every size: kernel / pillow-simd <= 0.75.

All rows of one size are timed in interleaved rounds (``fixtures.interleaved_medians``),
so that on a shared machine every row meets the same background load. Plus the batch
form's images/s on 1 and 2 worker threads, and ``--fast-decode`` on 12 MP JPEGs
(``bench/fast_decode_check.py``): ``engine.run`` images/s with a cheap model against the
exact path, with what it changes (crop pixels, EfficientNet-Lite0 top-1 agreement and
logit SNR). Run alone with ``python -m bench.suite_preprocess [--quick]``: prints the
result and saves it under the git-ignored bench/results/raw/ with the machine, date and
command (committed results come from ``python -m bench``).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bench.fast_decode_check import decode_times, effect, end_to_end
from bench.fixtures import ROOT, Goal, camera_jpegs, interleaved_medians, one_core, photo_at, ratio, timed
from bench.results_files import RAW_DIR
from bench.simd_resize import median_ms
from engine.backends.devices import cpu_model
from engine.kernels.resample_plan import resized_size

SIMD_PYTHON = ROOT / ".venv-simd" / "bin" / "python"
SIMD_SCRIPT = Path(__file__).resolve().parent / "simd_resize.py"
RESIZE, CROP = 256, 224
SIZES = ((500, 375), (2000, 1500), (4000, 3000))  # (width, height)
SIMD_GOAL = Goal("<=", 0.75)

if TYPE_CHECKING:
    from PIL import Image


class _PillowSimd:
    """pillow-simd in .venv-simd, timed on request (``simd_resize.py --serve``)."""

    def __init__(self, photo: np.ndarray):
        self.proc, self.info, self.reason = None, None, None
        if not SIMD_PYTHON.exists():
            self.reason = f"{SIMD_PYTHON} missing: run bench/make_simd_env.sh"
            return
        self._tmp = tempfile.TemporaryDirectory()
        path = Path(self._tmp.name) / f"photo-{photo.shape[1]}x{photo.shape[0]}.npy"
        np.save(path, photo)
        self.proc = subprocess.Popen(
            [str(SIMD_PYTHON), str(SIMD_SCRIPT), str(path), "--serve", "--resize", str(RESIZE),
             "--crop", str(CROP)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
        line = self.proc.stdout.readline()
        if not line:
            self.reason = (f"{SIMD_SCRIPT.name} failed in .venv-simd: "
                           f"{self.proc.stderr.read().strip()[-300:]}")
            self.close()
            return
        self.info = json.loads(line)
        if not self.info.get("simd"):
            self.reason = f".venv-simd has PIL {self.info.get('pil_version')}, not pillow-simd"
            self.close()

    @property
    def ok(self) -> bool:
        return self.proc is not None

    def times(self, job: str, count: int) -> list[float]:
        self.proc.stdin.write(f"{job} {count}\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self):
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
            self.proc = None


@dataclass
class Inputs:
    """The photo in each form a candidate takes, and the output buffers."""

    photo: np.ndarray  # HWC uint8
    chw_view: np.ndarray  # the engine's input: an npz CHW array seen as HWC
    pil: Image.Image
    size: tuple[int, int]  # (width, height) after the resize of the shorter side
    out: np.ndarray
    out8: np.ndarray

    @classmethod
    def make(cls, size: tuple[int, int] = SIZES[0]) -> Inputs:
        from PIL import Image

        photo = photo_at(size)
        height, width = resized_size(*photo.shape[:2], RESIZE)
        return cls(photo, np.ascontiguousarray(photo.transpose(2, 0, 1)).transpose(1, 2, 0), Image.fromarray(photo),
                   (width, height), np.empty((3, CROP, CROP), np.float32), np.empty((3, CROP, CROP), np.uint8))


def _cv2_pipeline(inputs: Inputs, interpolation):
    """cv2.resize, then a numpy crop and normalize into ``inputs.out``."""
    import cv2

    from engine.kernels import IMAGENET_MEAN, IMAGENET_STD

    mean = np.asarray(IMAGENET_MEAN, np.float32)[:, None, None]
    std = np.asarray(IMAGENET_STD, np.float32)[:, None, None]
    size, out = inputs.size, inputs.out
    left, top = int(round((size[0] - CROP) / 2.0)), int(round((size[1] - CROP) / 2.0))

    def job():
        resized = cv2.resize(inputs.photo, size, interpolation=interpolation)
        crop = resized[top:top + CROP, left:left + CROP].transpose(2, 0, 1)
        np.divide(crop, np.float32(255), out=out, dtype=np.float32)
        out.__isub__(mean).__itruediv__(std)
        return out
    return job


def _compose(interpolation: str = "bilinear"):
    from torchvision import transforms

    from engine.kernels import IMAGENET_MEAN, IMAGENET_STD

    mode = transforms.InterpolationMode(interpolation)
    return transforms.Compose([transforms.Resize(RESIZE, interpolation=mode), transforms.CenterCrop(CROP),
                               transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def _exactness_note(inputs: Inputs, interpolation: str) -> str:
    """Whether the kernel reproduces torchvision on this photo, checked in the run that is timed."""
    from engine.kernels import resize_crop_normalize

    out = resize_crop_normalize(inputs.photo, interpolation=interpolation)
    exact = np.array_equal(out, _compose(interpolation)(inputs.pil).numpy())
    exact_view = np.array_equal(resize_crop_normalize(inputs.chw_view, interpolation=interpolation), out)
    return f"{interpolation} kernel output == torchvision Compose output bit for bit: {exact and exact_view}"


def _local_candidates(inputs: Inputs, compose) -> dict:
    """``name -> times(count)`` of every candidate timed in this process."""
    import cv2
    from PIL import Image

    from engine.kernels import resize_crop_normalize, resize_crop_uint8

    def local(fn):
        return lambda count: timed(fn, count)

    photo, chw_view, out = inputs.photo, inputs.chw_view, inputs.out
    return {
        "kernel float32 (HWC input)": local(lambda: resize_crop_normalize(photo, out)),
        "kernel float32 (CHW npz view input)": local(lambda: resize_crop_normalize(chw_view, out)),
        "kernel uint8 (HWC input)": local(lambda: resize_crop_uint8(photo, inputs.out8)),
        "kernel float32 bicubic (HWC input)":
            local(lambda: resize_crop_normalize(photo, out, interpolation="bicubic")),
        "kernel float32 bicubic (CHW npz view input)":
            local(lambda: resize_crop_normalize(chw_view, out, interpolation="bicubic")),
        "torchvision Compose (stock Pillow)": local(lambda: compose(inputs.pil)),
        "stock Pillow resize alone": local(lambda: inputs.pil.resize(inputs.size, Image.BILINEAR)),
        "cv2 INTER_AREA + crop/normalize (not equivalent)": local(_cv2_pipeline(inputs, cv2.INTER_AREA)),
        "cv2 INTER_LINEAR + crop/normalize (not equivalent)": local(_cv2_pipeline(inputs, cv2.INTER_LINEAR)),
    }


def _add_pillow_simd(candidates: dict, simd: _PillowSimd, notes: list[str]) -> None:
    if simd.ok:
        candidates["pillow-simd resize alone"] = lambda count: simd.times("resize", count)
        candidates["pillow-simd bicubic resize alone"] = lambda count: simd.times("resize_bicubic", count)
        candidates["pillow-simd resize + numpy crop/normalize"] = \
            lambda count: simd.times("resize_crop_normalize", count)
        notes.append(f"pillow-simd {simd.info['pil_version']} built with CC='cc -mavx2' "
                     f"(bench/make_simd_env.sh), timed in .venv-simd (bench/simd_resize.py)")
    else:
        notes.append(f"pillow-simd baseline skipped: {simd.reason}")


def _batch_rates(inputs: Inputs, batch: int, quick: bool) -> dict[int, float]:
    """Images/s of the batch form on 1 and 2 worker threads, HWC and CHW-view inputs mixed."""
    from engine.kernels import resize_crop_normalize_batch

    images = [inputs.photo if i % 2 else inputs.chw_view for i in range(batch)]
    batch_out = np.empty((batch, 3, CROP, CROP), np.float32)
    per_second = {}
    for workers in (1, 2):
        ms = median_ms(lambda workers=workers: resize_crop_normalize_batch(images, batch_out, workers=workers),
                       5 if quick else 20, warmup=2)
        per_second[workers] = batch / (ms / 1e3)
    return per_second


# Each kernel row against the pillow-simd row doing the same resampling (at 500x375).
SIMD_BASELINES = {
    "kernel float32 (HWC input)": "pillow-simd resize alone",
    "kernel float32 (CHW npz view input)": "pillow-simd resize alone",
    "kernel float32 bicubic (HWC input)": "pillow-simd bicubic resize alone",
    "kernel float32 bicubic (CHW npz view input)": "pillow-simd bicubic resize alone",
}
# The README's rows: the kernel against pillow-simd on an ImageNet-sized and a 12 MP photo.
README_PAIRS = {("kernel float32 (HWC input)", "pillow-simd resize alone"),
                ("kernel float32 bilinear, 4000x3000", "pillow-simd resize alone, 4000x3000")}


def _simd_ratios(timings: dict, best_rounds: dict, pairs: dict) -> list[dict]:
    """Each kernel row / its pillow-simd row. Met only when the best rounds meet the goal
    too: on a loaded machine one side's median can be inflated by a burst of background
    load that the other side missed."""
    ratios = []
    for name, baseline in pairs.items():
        if baseline not in timings:
            continue
        best = best_rounds[name] / best_rounds[baseline]
        ratios.append(ratio(f"{name} / {baseline}", timings[name] / timings[baseline], SIMD_GOAL, also=(best,),
                            readme=(name, baseline) in README_PAIRS))
        ratios.append(ratio(f"{name} / {baseline}, best rounds", best))
    return ratios


def _large_candidates(inputs: Inputs, simd: _PillowSimd, label: str) -> tuple[dict, dict]:
    """The kernel and pillow-simd on a large photo: candidates, and kernel -> baseline pairs."""
    from engine.kernels import resize_crop_normalize

    photo, out = inputs.photo, inputs.out
    candidates, pairs = {}, {}
    for interpolation, job, simd_name in (("bilinear", "resize", "pillow-simd resize alone"),
                                          ("bicubic", "resize_bicubic", "pillow-simd bicubic resize alone")):
        name = f"kernel float32 {interpolation}, {label}"
        candidates[name] = lambda count, i=interpolation: timed(
            lambda: resize_crop_normalize(photo, out, interpolation=i), count)
        if simd.ok:
            candidates[f"{simd_name}, {label}"] = lambda count, j=job: simd.times(j, count)
            pairs[name] = f"{simd_name}, {label}"
    return candidates, pairs


def _time_size(size: tuple[int, int], quick: bool, notes: list[str]) -> tuple[dict, dict, dict, Inputs]:
    """Median and best-round ms of every candidate at ``size``, and the kernel/baseline pairs."""
    inputs = Inputs.make(size)
    label = f"{size[0]}x{size[1]}"
    simd = _PillowSimd(inputs.photo)
    if size == SIZES[0]:
        notes += [_exactness_note(inputs, "bilinear"), _exactness_note(inputs, "bicubic")]
        candidates, pairs = _local_candidates(inputs, _compose()), dict(SIMD_BASELINES)
        _add_pillow_simd(candidates, simd, notes)
        rounds, block = (4, 15) if quick else (12, 40)
    else:
        candidates, pairs = _large_candidates(inputs, simd, label)
        rounds, block = (3, 3) if quick else (8, 8)
    try:
        timings, best_rounds = interleaved_medians(candidates, rounds, block)
    finally:
        simd.close()
    notes.append(f"{label}: median of {rounds * block} runs per row, in {rounds} interleaved rounds")
    return timings, best_rounds, pairs, inputs


def _fast_decode_part(quick: bool, notes: list[str]) -> tuple[list[dict], list[dict]]:
    """--fast-decode on 12 MP JPEGs: engine.run images/s against the exact path, and its effect."""
    photos, rounds = (8, 2) if quick else (24, 3)
    with tempfile.TemporaryDirectory() as tmp:
        paths = camera_jpegs(Path(tmp) / "photos", photos)
        rates = end_to_end(paths, Path(tmp), rounds)
        medians, best = decode_times(paths, rounds)
        changed = effect(paths)
    exact, fast = float(np.median(rates["exact"])), float(np.median(rates["fast"]))
    rows = [{"name": f"engine.run, cheap model, {photos} 12 MP JPEGs, {mode}", "value": round(v, 2),
             "unit": "images/s"} for mode, v in (("exact", exact), ("--fast-decode", fast))]
    rows += [{"name": name, "value": round(ms, 2), "unit": "ms/image", "best_round_ms": round(best[name], 2)}
             for name, ms in medians.items()]
    rows += [{"name": f"--fast-decode against exact: {key}", "value": value, "unit": ""}
             for key, value in asdict(changed).items()]
    notes.append(f"--fast-decode: {photos} 12 MP JPEGs made from scikit-image's photos (no 12 MP set exists "
                 f"offline: bench/fixtures.py camera_jpegs), {changed.reduced} decoded at a reduced scale; "
                 f"top-1 agreement and logit SNR with the trained EfficientNet-Lite0 (torch, fp32)")
    return rows, [ratio("engine.run images/s on 12 MP JPEGs, --fast-decode / exact", fast / exact,
                        top1_agreement=changed.top1_agreement, logit_snr_db=changed.logit_snr_db,
                        crop_mean_abs_diff=changed.crop_mean_abs_diff)]


def run(quick: bool) -> dict:
    one_core()
    notes, rows, ratios, series = [], [], [], {}
    for size in SIZES:
        timings, best_rounds, pairs, inputs = _time_size(size, quick, notes)
        rows += [{"name": name, "value": round(ms, 4), "unit": "ms/image", "best_round_ms": round(best_rounds[name], 4)}
                 for name, ms in timings.items()]
        ratios += _simd_ratios(timings, best_rounds, pairs)
        series[f"{size[0]}x{size[1]}"] = {"timings_ms": timings, "best_round_ms": best_rounds}
        if size == SIZES[0]:
            kernel_ms = timings["kernel float32 (HWC input)"]
            ratios.append(ratio("kernel float32 (HWC input) / torchvision Compose",
                                kernel_ms / timings["torchvision Compose (stock Pillow)"]))
            batch = 16 if quick else 64
            per_second = _batch_rates(inputs, batch, quick)
            rows += [{"name": f"kernel batch of {batch}, {n} worker thread{'s' * (n > 1)}",
                      "value": round(v, 1), "unit": "images/s"} for n, v in per_second.items()]
            ratios.append(ratio("batch images/s, 2 workers / 1 worker", per_second[2] / per_second[1]))
            series["batch_images_per_s"] = per_second
    fast_rows, fast_ratios = _fast_decode_part(quick, notes)
    rows += fast_rows
    ratios += fast_ratios
    notes.append(f"photo -> shorter side {RESIZE} -> (3, {CROP}, {CROP}); one core for the per-image rows; "
                 "first-call compile excluded")
    notes.append("batch rows: on a machine shared with other jobs the 2-worker figure says "
                 "little about scaling; see machine.load_average")
    notes.append("cv2 rows are not equivalent: different pixels from the Pillow/torchvision "
                 "reference (shown for scale only)")
    return {
        "suite": "preprocess",
        "title": "fused resize+crop+normalize kernel vs torchvision, Pillow(-simd) and OpenCV; --fast-decode",
        "rows": rows,
        "ratios": ratios,
        "notes": notes,
        "series": series,
    }


def _machine() -> dict:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"host": socket.gethostname(), "cpu": cpu_model(), "cores": os.cpu_count(),
            "python": platform.python_version(), "load_average": load}


def main():
    parser = argparse.ArgumentParser(description="Run the preprocess benchmark suite alone.")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args()
    started = datetime.datetime.now(datetime.timezone.utc)
    result = run(args.quick)
    result["machine"] = _machine()
    result["date"] = started.isoformat(timespec="seconds")
    result["command"] = " ".join([Path(sys.executable).name, "-m", "bench.suite_preprocess"]
                                 + sys.argv[1:])
    text = json.dumps(result, indent=2)
    print(text)
    if not args.no_save:
        path = ROOT / "bench" / "results" / RAW_DIR / (
            f"preprocess-{started:%Y%m%d-%H%M}-{result['machine']['host']}.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
        print(f"saved {path.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
