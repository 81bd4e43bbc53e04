"""Real photos through the whole path, checked against a plain torchvision + torch reference.

scikit-image's coffee and chelsea photos (plus flipped / cropped / rescaled variants,
labelled by their source photo's class) go image files -> engine.image2npz ->
engine.run (trained EfficientNet-Lite0) -> top-k text -> engine.eval, and the printed
top-1 must equal what torchvision's transforms and the torch model give on the same files.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from PIL import Image, ImageOps

from engine.data.labels import imagenet_wnids
from engine.data.topk_text import read_topk_file
from engine.models.zoo import create

ROOT = Path(__file__).resolve().parents[2]
SOURCES = {"coffee": 967, "chelsea": 281}  # espresso; tabby cat


def _write_photo_folder(root: Path) -> dict[str, int]:
    import skimage.data

    labels = {}
    for name, label in SOURCES.items():
        im = Image.fromarray(getattr(skimage.data, name)())
        w, h = im.size
        variants = {"orig.jpg": im, "flip.png": ImageOps.mirror(im),
                    "crop.webp": im.crop((w // 8, h // 8, w - w // 8, h - h // 8)),
                    "half.bmp": im.resize((w // 2, h // 2), Image.BICUBIC)}
        folder = root / imagenet_wnids()[label]
        folder.mkdir(parents=True)
        for suffix, variant in variants.items():
            path = folder / f"{name}_{suffix}"
            variant.save(path)
            labels[str(path)] = label
    return labels


def _cli(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env=env)


def test_photos_through_image2npz_run_eval_match_torchvision(tmp_path):
    labels = _write_photo_folder(tmp_path / "val")
    datalist = tmp_path / "npz_datalist.txt"
    conv = _cli("engine.image2npz", "--dataset_path", tmp_path / "val", "--target_path", tmp_path / "npz",
                "--text_path", datalist, "--quiet")
    assert conv.returncode == 0, conv.stderr
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    run = _cli("engine.run", "--datalist", datalist, "--model", "efficientnet_lite0", "--labels-from-folders",
               "--save-topk", tmp_path / "topk.txt", "-b", "4", "--quiet", env=env)
    assert run.returncode == 0, run.stderr
    ev = _cli("engine.eval", "topk", tmp_path / "topk.txt", "--labels-from-folders")
    assert ev.returncode == 0, ev.stderr
    top1 = float(re.search(r"top1_rate: ([\d.]+)", ev.stdout).group(1))

    model = create("efficientnet_lite0")
    cfg = model.data_config
    transform = T.Compose([T.Resize(cfg.resize), T.CenterCrop(cfg.crop), T.ToTensor(), T.Normalize(cfg.mean, cfg.std)])
    reference = {}
    with torch.no_grad():
        for path in labels:
            x = transform(Image.open(path).convert("RGB"))[None]
            reference[Path(path).stem] = int(model.module(x).argmax())
    expected_top1 = 100.0 * sum(reference[Path(p).stem] == y for p, y in labels.items()) / len(labels)
    assert top1 == pytest.approx(expected_top1, abs=1e-3)

    ranked = read_topk_file(tmp_path / "topk.txt")
    engine_top1 = {Path(item).stem: entries[0].class_id for item, entries in ranked.items()}
    assert engine_top1 == reference
    assert engine_top1["coffee_orig"] == 967


def test_torch_backend_takes_its_precision_from_the_command_line(tmp_path):
    _write_photo_folder(tmp_path / "val")
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    common = ["engine.run", "--images", tmp_path / "val", "--model", "efficientnet_lite0", "--backend", "torch",
              "-b", "4", "--workers", "1", "--quiet"]
    top1, reports = {}, {}
    for precision in ("fp32", "bf16"):
        run = _cli(*common, "--precision", precision, "--save-topk", tmp_path / f"{precision}.txt",
                   "--report", tmp_path / f"{precision}.json", env=env)
        assert run.returncode == 0, run.stderr
        reports[precision] = json.loads((tmp_path / f"{precision}.json").read_text())
        top1[precision] = {Path(item).stem: entries[0].class_id
                           for item, entries in read_topk_file(tmp_path / f"{precision}.txt").items()}
    assert reports["bf16"]["config"]["backend_options"] == {"precision": "bf16"}
    assert [b["precision"] for b in reports["bf16"]["backends"]] == ["bf16"]
    assert [b["precision"] for b in reports["fp32"]["backends"]] == ["fp32"]
    assert top1["bf16"]["coffee_orig"] == top1["fp32"]["coffee_orig"] == 967
    assert sum(top1["bf16"][k] == top1["fp32"][k] for k in top1["fp32"]) >= 7

    fp16 = _cli(*common, "--precision", "fp16", env=env)
    assert fp16.returncode == 1 and "fp16 needs a CUDA device" in fp16.stderr
    ort = _cli("engine.run", "--images", tmp_path / "val", "--model", "efficientnet_lite0", "--precision", "bf16",
               env=env)
    assert ort.returncode == 2 and "--precision bf16: onnxruntime runs an ONNX model at the precision" in ort.stderr
    compiled = _cli("engine.run", "--images", tmp_path / "val", "--model", "efficientnet_lite0", "--compile", env=env)
    assert compiled.returncode == 2 and "--compile apply to --backend torch" in compiled.stderr


def test_torch_backend_normalizes_uint8_crops_on_the_device(tmp_path):
    """--normalize-on device: the slots hold the uint8 crop and the torch backend does the
    to-float and normalize step; the results equal the host-normalized run's."""
    _write_photo_folder(tmp_path / "val")
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    common = ["engine.run", "--images", tmp_path / "val", "--model", "efficientnet_lite0", "--backend", "torch",
              "-b", "3", "--workers", "1", "--quiet"]
    logits = {}
    for where in ("host", "device"):
        run = _cli(*common, "--normalize-on", where, "--path_output", tmp_path / where,
                   "--report", tmp_path / f"{where}.json", env=env)
        assert run.returncode == 0, run.stderr
        assert f"normalize on {where}" in run.stderr
        assert json.loads((tmp_path / f"{where}.json").read_text())["config"]["normalize_on"] == where
        logits[where] = np.concatenate([np.load(f)["output_0"] for f in sorted((tmp_path / where).glob("*.npz"))])
    assert logits["device"].shape == (8, 1000)
    np.testing.assert_allclose(logits["device"], logits["host"], rtol=1e-3, atol=1e-3)
    assert (logits["device"].argmax(1) == logits["host"].argmax(1)).all()

    ort = _cli("engine.run", "--images", tmp_path / "val", "--model", "efficientnet_lite0",
               "--normalize-on", "device", env=env)
    assert ort.returncode == 2 and "--normalize-on device applies to --backend torch" in ort.stderr


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
def test_cuda_fp16_graphs_run_agrees_with_cpu(tmp_path):
    """engine.run on the GPU (fp16, CUDA graphs, uint8 slots, a partial last batch) gives
    the CPU fp32 run's top-1 on the photos."""
    _write_photo_folder(tmp_path / "val")
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    common = ["engine.run", "--images", tmp_path / "val", "--model", "efficientnet_lite0", "--backend", "torch",
              "-b", "3", "--workers", "2", "--quiet"]
    top1 = {}
    for name, extra in (("cpu", ["--device", "cpu"]),
                        ("cuda", ["--device", "cuda", "--precision", "fp16", "--cuda-graphs"])):
        run = _cli(*common, *extra, "--save-topk", tmp_path / f"{name}.txt", "--report", tmp_path / f"{name}.json",
                   env=env)
        assert run.returncode == 0, run.stderr
        top1[name] = {Path(item).stem: entries[0].class_id
                      for item, entries in read_topk_file(tmp_path / f"{name}.txt").items()}
    report = json.loads((tmp_path / "cuda.json").read_text())
    assert report["config"]["normalize_on"] == "device"
    assert report["backends"][0]["cuda_graphs"] and report["backends"][0]["precision"] == "fp16"
    assert len(top1["cuda"]) == 8 and top1["cuda"] == top1["cpu"]
