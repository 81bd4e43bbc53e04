"""Time pillow-simd inside .venv-simd. Run by suite_preprocess.

pillow-simd replaces PIL and is not bit-identical to stock Pillow, so it lives in its own
venv and the engine's benchmark calls this script there:
    .venv-simd/bin/python bench/simd_resize.py IMAGE.npy --repeat 300
prints one JSON object with median times; with ``--serve`` it reads lines
``<job> <count>`` (job: resize, resize_bicubic or resize_crop_normalize) from stdin and answers each
with a JSON list of ``count`` times in seconds, so that the caller can interleave these
timings with its own on a shared machine. IMAGE.npy is a uint8 (height, width, 3) RGB
array. Only numpy and PIL are imported.
"""
import argparse
import json
import sys
import time

import numpy as np
from PIL import Image


def median_ms(fn, repeat: int, warmup: int = 10) -> float:
    """Median milliseconds of ``repeat`` calls after ``warmup`` untimed ones.

    It lives here, in the one bench module that must run in .venv-simd (where the project
    is not installed); suite_preprocess imports it from here.
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", help=".npy uint8 HWC RGB image")
    parser.add_argument("--repeat", type=int, default=300)
    parser.add_argument("--serve", action="store_true", help="answer timing requests on stdin")
    parser.add_argument("--resize", type=int, default=256)
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--mean", type=float, nargs=3, default=(0.485, 0.456, 0.406))
    parser.add_argument("--std", type=float, nargs=3, default=(0.229, 0.224, 0.225))
    args = parser.parse_args()

    arr = np.load(args.image)
    pil = Image.fromarray(arr)
    w, h = pil.size
    if w <= h:
        size = (args.resize, int(args.resize * h / w))
    else:
        size = (int(args.resize * w / h), args.resize)
    left = int(round((size[0] - args.crop) / 2.0))
    top = int(round((size[1] - args.crop) / 2.0))
    box = (left, top, left + args.crop, top + args.crop)
    # uint8 -> normalized float32 per channel, float32 ops in torchvision's order.
    values = np.arange(256, dtype=np.float32) / np.float32(255)
    lut = (values[None, :] - np.asarray(args.mean, np.float32)[:, None]) / np.asarray(
        args.std, np.float32)[:, None]
    out = np.empty((3, args.crop, args.crop), np.float32)

    def resize_only():
        return pil.resize(size, Image.BILINEAR)

    def resize_bicubic_only():
        return pil.resize(size, Image.BICUBIC)

    def resize_crop_normalize():
        crop = np.asarray(pil.resize(size, Image.BILINEAR).crop(box))
        for c in range(3):
            np.take(lut[c], crop[:, :, c], out=out[c])
        return out

    jobs = {"resize": resize_only, "resize_bicubic": resize_bicubic_only,
            "resize_crop_normalize": resize_crop_normalize}
    if args.serve:
        print(json.dumps({"pil_version": Image.__version__, "simd": "post" in Image.__version__,
                          "resized_size": list(size)}), flush=True)
        for _ in range(10):
            resize_crop_normalize()
        for line in sys.stdin:
            job, count = line.split()
            fn, times = jobs[job], []
            for _ in range(int(count)):
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
            print(json.dumps(times), flush=True)
        return

    print(json.dumps({
        "pil_version": Image.__version__,
        "simd": "post" in Image.__version__,
        "resized_size": list(size),
        "resize_ms": median_ms(resize_only, args.repeat),
        "resize_bicubic_ms": median_ms(resize_bicubic_only, args.repeat),
        "resize_crop_normalize_ms": median_ms(resize_crop_normalize, args.repeat),
    }))


if __name__ == "__main__":
    main()
