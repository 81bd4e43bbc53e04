"""Preprocessing suite: the fused resize+crop+normalize kernel against its baselines.

One core (numba, torch and OpenCV set to one thread), a 500x375 RGB photo (scikit-image's
astronaut, resized once with Pillow) to a (3, 224, 224) float32 tensor, median ms per
image, all in one run:

- the kernel (``kernels.resize_crop_normalize``) on an HWC array, on the engine's input
  (an npz CHW array seen as HWC through ``transpose(1, 2, 0)``), and its uint8 variant;
- torchvision ``Compose([Resize(256), CenterCrop(224), ToTensor(), Normalize()])`` on a
  PIL image (stock Pillow: what the kernel reproduces bit for bit);
- stock Pillow's ``Image.resize`` alone;
- pillow-simd's ``Image.resize`` alone, and followed by a numpy crop + normalize (in
  ``.venv-simd`` through ``bench/simd_resize.py``: pillow-simd replaces PIL);
- OpenCV ``cv2.resize`` (INTER_AREA and INTER_LINEAR) + crop + normalize: fast, but NOT
  the same pixels (no antialiasing for LINEAR, a different filter for AREA).

Plus the batch form's images/s on 1 and 2 worker threads. Run alone with
``python -m bench.suite_preprocess [--quick]``: prints the result and saves it under
bench/results/ with the machine, date and command.
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
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SIMD_PYTHON = ROOT / ".venv-simd" / "bin" / "python"
SIMD_SCRIPT = Path(__file__).resolve().parent / "simd_resize.py"
RESIZE, CROP = 256, 224


def _photo() -> np.ndarray:
    """A real 500x375 RGB photo: scikit-image's astronaut (ships with the package)."""
    from PIL import Image
    from skimage import data

    return np.asarray(Image.fromarray(data.astronaut()).resize((500, 375), Image.BILINEAR))


def _median_ms(fn, repeat: int, warmup: int = 10) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def _pillow_simd(photo: np.ndarray, repeat: int) -> tuple[dict | None, str | None]:
    """pillow-simd timings from .venv-simd, or (None, reason)."""
    if not SIMD_PYTHON.exists():
        return None, f"{SIMD_PYTHON} missing: run bench/make_simd_env.sh"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "photo.npy"
        np.save(path, photo)
        env = dict(os.environ, OMP_NUM_THREADS="1")
        proc = subprocess.run([str(SIMD_PYTHON), str(SIMD_SCRIPT), str(path), "--repeat",
                               str(repeat), "--resize", str(RESIZE), "--crop", str(CROP)],
                              capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        return None, f"{SIMD_SCRIPT.name} failed in .venv-simd: {proc.stderr.strip()[-300:]}"
    result = json.loads(proc.stdout)
    if not result.get("simd"):
        return None, f".venv-simd has PIL {result.get('pil_version')}, not pillow-simd"
    return result, None


def _one_core():
    import cv2
    import numba
    import torch

    numba.set_num_threads(1)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def run(quick: bool) -> dict:
    import cv2
    import torch
    from PIL import Image
    from torchvision import transforms

    from kernels import (IMAGENET_MEAN, IMAGENET_STD, resize_crop_normalize,
                         resize_crop_normalize_batch, resize_crop_uint8)

    _one_core()
    repeat = 60 if quick else 400
    photo = _photo()
    chw_view = np.ascontiguousarray(photo.transpose(2, 0, 1)).transpose(1, 2, 0)
    pil = Image.fromarray(photo)
    h, w = photo.shape[:2]
    size = (int(RESIZE * w / h), RESIZE) if w > h else (RESIZE, int(RESIZE * h / w))
    out = np.empty((3, CROP, CROP), np.float32)
    out8 = np.empty((3, CROP, CROP), np.uint8)
    compose = transforms.Compose([transforms.Resize(RESIZE), transforms.CenterCrop(CROP),
                                  transforms.ToTensor(),
                                  transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    mean = np.asarray(IMAGENET_MEAN, np.float32)[:, None, None]
    std = np.asarray(IMAGENET_STD, np.float32)[:, None, None]
    left, top = int(round((size[0] - CROP) / 2.0)), int(round((size[1] - CROP) / 2.0))

    def cv2_pipeline(interpolation):
        def job():
            resized = cv2.resize(photo, size, interpolation=interpolation)
            crop = resized[top:top + CROP, left:left + CROP].transpose(2, 0, 1)
            np.divide(crop, np.float32(255), out=out, dtype=np.float32)
            out.__isub__(mean).__itruediv__(std)
            return out
        return job

    notes = []
    simd_before, reason = _pillow_simd(photo, repeat)
    # Exactness on this photo, checked in the same run that is timed.
    exact = np.array_equal(resize_crop_normalize(photo, out), compose(pil).numpy())
    exact_view = np.array_equal(resize_crop_normalize(chw_view), out)
    notes.append(f"kernel output == torchvision Compose output bit for bit: {exact and exact_view}")

    timings = {
        "kernel float32 (HWC input)": _median_ms(lambda: resize_crop_normalize(photo, out), repeat),
        "kernel float32 (CHW npz view input)":
            _median_ms(lambda: resize_crop_normalize(chw_view, out), repeat),
        "kernel uint8 (HWC input)": _median_ms(lambda: resize_crop_uint8(photo, out8), repeat),
        "torchvision Compose (stock Pillow)": _median_ms(lambda: compose(pil), repeat),
        "stock Pillow resize alone": _median_ms(lambda: pil.resize(size, Image.BILINEAR), repeat),
        "cv2 INTER_AREA + crop/normalize (not equivalent)":
            _median_ms(cv2_pipeline(cv2.INTER_AREA), repeat),
        "cv2 INTER_LINEAR + crop/normalize (not equivalent)":
            _median_ms(cv2_pipeline(cv2.INTER_LINEAR), repeat),
    }
    simd_after, _ = _pillow_simd(photo, repeat) if simd_before else (None, None)
    if simd_before:
        # Timed before and after the in-process rows (the machine may be shared): mean.
        simd_resize = (simd_before["resize_ms"] + simd_after["resize_ms"]) / 2
        simd_full = (simd_before["resize_crop_normalize_ms"]
                     + simd_after["resize_crop_normalize_ms"]) / 2
        timings["pillow-simd resize alone"] = simd_resize
        timings["pillow-simd resize + numpy crop/normalize"] = simd_full
        notes.append(f"pillow-simd {simd_before['pil_version']} (built with CC='cc -mavx2'), "
                     f"resize alone {simd_before['resize_ms']:.3f} ms before / "
                     f"{simd_after['resize_ms']:.3f} ms after the other rows; the mean is used")
    else:
        notes.append(f"pillow-simd baseline skipped: {reason}")

    batch = 16 if quick else 64
    images = [photo if i % 2 else chw_view for i in range(batch)]
    batch_out = np.empty((batch, 3, CROP, CROP), np.float32)
    per_second = {}
    for workers in (1, 2):
        ms = _median_ms(lambda: resize_crop_normalize_batch(images, batch_out, workers=workers),
                        max(repeat // 20, 5), warmup=2)
        per_second[workers] = batch / (ms / 1e3)

    rows = [{"name": name, "value": round(ms, 4), "unit": "ms/image"} for name, ms in timings.items()]
    rows += [{"name": f"kernel batch of {batch}, {n} worker thread{'s' * (n > 1)}",
              "value": round(v, 1), "unit": "images/s"} for n, v in per_second.items()]
    kernel_ms = timings["kernel float32 (HWC input)"]
    ratios = []
    if "pillow-simd resize alone" in timings:
        simd = timings["pillow-simd resize alone"]
        for name in ("kernel float32 (HWC input)", "kernel float32 (CHW npz view input)"):
            value = timings[name] / simd
            ratios.append({"name": f"{name} / pillow-simd resize alone", "value": round(value, 3),
                           "goal": "<= 0.75", "met": bool(value <= 0.75)})
    ratios.append({"name": "kernel float32 (HWC input) / torchvision Compose",
                   "value": round(kernel_ms / timings["torchvision Compose (stock Pillow)"], 3),
                   "goal": None, "met": None})
    ratios.append({"name": "batch images/s, 2 workers / 1 worker",
                   "value": round(per_second[2] / per_second[1], 3), "goal": None, "met": None})
    notes.append(f"{h}x{w} photo -> {size[0]}x{size[1]} -> ({3}, {CROP}, {CROP}); one core for "
                 f"the per-image rows; median of {repeat} runs each; first-call compile excluded")
    notes.append("cv2 rows are not equivalent: different pixels from the Pillow/torchvision "
                 "reference (shown for scale only)")
    return {
        "suite": "preprocess",
        "title": "fused resize+crop+normalize kernel vs torchvision, Pillow(-simd) and OpenCV",
        "rows": rows,
        "ratios": ratios,
        "notes": notes,
        "series": {"timings_ms": timings, "batch_images_per_s": per_second},
    }


def _machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"host": socket.gethostname(), "cpu": cpu, "cores": os.cpu_count(),
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
        path = ROOT / "bench" / "results" / (
            f"preprocess-{started:%Y%m%d-%H%M}-{result['machine']['host']}.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
        print(f"saved {path.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
