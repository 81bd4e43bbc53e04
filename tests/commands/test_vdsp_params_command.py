"""The seed's step-5 command as written: ``engine.run -m DEPLOY/NAME --vdsp_params FILE -i 1
-p 1 -b 1 --datalist npz_datalist.txt --path_output output``, on a deploy folder and npz
items made here, in each of the vendor's three file layouts. Every output equals a
reference computed here without the engine: the npz array, OpenCV's INTER_LINEAR resize,
the crop, the normalisation with the values the file encodes, onnxruntime."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest
from photos import write_photo
from PIL import Image
from tinynet import write_tiny_onnx

SEED_MEAN_BITS = (14275, 14156, 13951)
SEED_STD_BITS = (13140, 13099, 13107)
DEPLOY = "tiny-int8-percentile-3_224_224-ort"


def vamp_file(**changes) -> dict:
    """The seed commit's VGG file (vamp layout), with ``changes`` to some properties' values."""
    values = {"iimage_format": "RGB_PLANAR", "iimage_width": 256, "iimage_height": 256,
              "iimage_width_pitch": 256, "iimage_height_pitch": 256, "short_edge_threshold": 256,
              "crop_size": 224, **dict(zip(("meanr", "meang", "meanb"), SEED_MEAN_BITS)),
              **dict(zip(("stdr", "stdg", "stdb"), SEED_STD_BITS)), "norma_type": "DIV255_MINUSMEAN_DIVSTD",
              "resize_type": "BILINEAR_CV", "color_cvt_code": "COLOR_NO_CHANGE", "color_space": "COLOR_SPACE_BT709"}
    values.update(changes)
    dtypes = {"iimage_format": "UINT_32", "crop_size": "UINT_32"}
    return {"vdsp_op_type": "RGB_RESIZE_CVTCOLOR_CROP_NORMALIZATION_TENSORIZATION_U8",
            "config": [{"Property": k, "DType": "UINT_16" if k.startswith(("mean", "std")) else dtypes.get(k, "INT"),
                        "ParamType": "ELEMENT", "Value": v} for k, v in values.items()]}


SDK10 = {"vdsp_op_type": 300, "iimage_format": 5000, "iimage_width": 256, "iimage_height": 256,
         "iimage_width_pitch": 256, "iimage_height_pitch": 256, "short_edge_threshold": 256, "resize_type": 1,
         "color_cvt_code": 2, "color_space": 0, "crop_size": 224,
         **dict(zip(("meanr", "meang", "meanb"), SEED_MEAN_BITS)),
         **dict(zip(("stdr", "stdg", "stdb"), SEED_STD_BITS)), "norma_type": 4}
CURRENT = {"OpType": "FUSION_OP_RGB_RESIZE_CVTCOLOR_CROP_NORM_TENSOR", "OpConfig": {
    "IimageFormat": "RGB_PLANAR", "IimageWidth": 256, "IimageHeight": 256, "ResizeWidth": 256, "ResizeHeight": 256,
    "CropX": 16, "CropY": 16, "OimageWidth": 224, "OimageHeight": 224, "Mean": [123.6875, 116.25, 103.5],
    "Std": [58.40625, 57.125, 57.375], "NormaType": "MINUSMEAN_DIVSTD", "ColorCvtCode": "NO_CHANGE",
    "ResizeType": "BILINEAR_CV"}}


def float16_values(bits) -> np.ndarray:
    return np.array(bits, np.uint16).view(np.float16).astype(np.float64)


def opencv_bilinear(img: np.ndarray, width: int, height: int) -> np.ndarray:
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR)


def pillow_bilinear(img: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.asarray(Image.fromarray(img).resize((width, height), Image.Resampling.BILINEAR))


def short_edge_reference(chw: np.ndarray, mean: np.ndarray, std: np.ndarray, resize=opencv_bilinear) -> np.ndarray:
    """Short side to 256 (the long one truncated, as torchvision's Resize), centre 224 crop, (x/255 - mean)/std."""
    img = np.ascontiguousarray(chw.transpose(1, 2, 0))
    h, w = img.shape[:2]
    new_h, new_w = (int(256 * h / w), 256) if w <= h else (256, int(256 * w / h))
    resized = resize(img, new_w, new_h)
    top, left = round((new_h - 224) / 2), round((new_w - 224) / 2)
    crop = resized[top:top + 224, left:left + 224].astype(np.float64)
    return ((crop / 255 - mean) / std).transpose(2, 0, 1).astype(np.float32)


def both_sides_reference(chw: np.ndarray, mean_255: np.ndarray, std_255: np.ndarray) -> np.ndarray:
    """Both sides to 256 x 256, the crop at (16, 16), (x - mean)/std on the 0-255 scale."""
    resized = cv2.resize(np.ascontiguousarray(chw.transpose(1, 2, 0)), (256, 256), interpolation=cv2.INTER_LINEAR)
    crop = resized[16:240, 16:240].astype(np.float64)
    return ((crop - mean_255) / std_255).transpose(2, 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def step5(tmp_path_factory):
    """A working folder as the seed's step 5 has it: a deploy folder and npz_datalist.txt
    made by engine.image2npz from photos of several sizes and aspect ratios."""
    root = tmp_path_factory.mktemp("step5")
    write_tiny_onnx(root / DEPLOY / "tiny.onnx", size=224, classes=10, seed=3)
    for i, (name, size) in enumerate((("chelsea", (300, 260)), ("coffee", (260, 333)), ("astronaut", (410, 290)))):
        write_photo(root / "val" / "n01440764" / f"{i}_{name}.jpg", name, size=size)
    return root


@pytest.fixture(scope="module")
def datalist(step5) -> list[Path]:
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "engine.image2npz", "--dataset_path", "val", "--target_path", "npz",
                    "--text_path", "npz_datalist.txt", "--quiet"], cwd=step5, check=True, capture_output=True)
    return [Path(line) for line in (step5 / "npz_datalist.txt").read_text().split()]


def run_step5(cli, step5: Path, params: dict, name: str):
    (step5 / name).write_text(json.dumps(params, indent=2))
    out = step5 / f"output-{Path(name).stem}"
    proc = cli("run", "-m", f"{DEPLOY}/tiny", "--vdsp_params", name, "-i", 1, "-p", 1, "-b", 1,
               "--datalist", "npz_datalist.txt", "--path_output", out.name, cwd=step5)
    assert proc.returncode == 0, proc.stderr
    return proc, [np.load(out / f"output_{i:06d}.npz")["output_0"][0] for i in range(3)]


def expected_logits(step5: Path, inputs: list[np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(str(step5 / DEPLOY / "tiny.onnx"), providers=["CPUExecutionProvider"])
    return [session.run(None, {"input": x[None]})[0][0] for x in inputs]


def test_the_seed_step5_command_with_a_vamp_file_runs_opencv_bilinear_and_the_float16_values(cli, step5, datalist):
    proc, outputs = run_step5(cli, step5, vamp_file(), "timm-tiny-vdsp_params.json")
    mean, std = float16_values(SEED_MEAN_BITS), float16_values(SEED_STD_BITS)
    assert np.allclose(mean, (0.4851, 0.4561, 0.4060), atol=1e-4) and np.allclose(std, (0.2290, 0.2240, 0.2250),
                                                                                   atol=1e-4)
    arrays = [np.load(p)["input_0"] for p in datalist]
    for got, want in zip(outputs, expected_logits(step5, [short_edge_reference(a, mean, std) for a in arrays])):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    start = next(line for line in proc.stderr.splitlines() if line.startswith("engine: 3 items"))
    assert "preprocessing from vdsp_params timm-tiny-vdsp_params.json (vamp layout" in start
    assert "replacing the model's data config; differs from the model's own transform" in start
    assert "interpolation 'opencv_bilinear' (model: 'bilinear')" in start
    # Pillow's antialiased resize (the model's own transform) gives other logits: the file is what ran.
    pillow = expected_logits(step5, [short_edge_reference(a, mean, std, pillow_bilinear) for a in arrays])
    assert not any(np.allclose(got, other, atol=1e-3) for got, other in zip(outputs, pillow))


def test_the_sdk10_layout_runs_the_same_preprocessing(cli, step5, datalist):
    _, outputs = run_step5(cli, step5, SDK10, "sdk10-vdsp_params.json")
    mean, std = float16_values(SEED_MEAN_BITS), float16_values(SEED_STD_BITS)
    want = expected_logits(step5, [short_edge_reference(np.load(p)["input_0"], mean, std) for p in datalist])
    for got, ref in zip(outputs, want):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_the_current_layout_resizes_both_sides_and_crops_at_its_offsets(cli, step5, datalist):
    _, outputs = run_step5(cli, step5, CURRENT, "current-vdsp_params.json")
    mean, std = np.array(CURRENT["OpConfig"]["Mean"]), np.array(CURRENT["OpConfig"]["Std"])
    want = expected_logits(step5, [both_sides_reference(np.load(p)["input_0"], mean, std) for p in datalist])
    for got, ref in zip(outputs, want):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("params, names", [
    (vamp_file(norma_type="DIV256_MINUSMEAN"), ("norma_type", "'DIV256_MINUSMEAN'")),
    (vamp_file(resize_type="BILINEAR_SMOOTH"), ("resize_type", "'BILINEAR_SMOOTH'")),
    ({**SDK10, "resize_type": 7}, ("resize_type", "7")),
    ({**SDK10, "color_cvt_code": 3}, ("color_cvt_code", "3")),
    (vamp_file(color_cvt_code="COLOR_BGR2RGB"), ("color_cvt_code", "COLOR_BGR2RGB", "gives RGB")),
    ({"OpType": CURRENT["OpType"], "OpConfig": {**CURRENT["OpConfig"], "NormaType": "EQUAL"}},
     ("NormaType", "'EQUAL'")),
    ({"OpType": CURRENT["OpType"], "OpConfig": {**CURRENT["OpConfig"], "OimageWidth": 200}},
     ("crop gives 224x200", "the model takes 224x224")),
    ({"vdsp_op_type": "RGB_RESIZE_CVTCOLOR_CROP_NORMALIZATION_TENSORIZATION_U8", "config": {"a": 1}},
     ("'config' must be a list",)),
    ({"layers": []}, ("not a vdsp_params file",)),
])
def test_what_cannot_be_mapped_is_refused_in_one_line(cli, step5, datalist, one_line_error, params, names):
    (step5 / "bad.json").write_text(json.dumps(params))
    shutil.rmtree(step5 / "output-bad", ignore_errors=True)
    proc = cli("run", "-m", f"{DEPLOY}/tiny", "--vdsp_params", "bad.json", "--datalist", "npz_datalist.txt",
               "--path_output", "output-bad", cwd=step5)
    one_line_error(proc, "--vdsp_params bad.json", *names)
    if "the model takes 224x224" not in names:  # refused with the flags, before the output folder is made
        assert not (step5 / "output-bad").exists()


def test_a_file_that_is_not_json_is_refused_in_one_line(cli, step5, datalist, one_line_error):
    (step5 / "broken.json").write_text('{"vdsp_op_type": 300, "iimage_format": ')
    proc = cli("run", "-m", f"{DEPLOY}/tiny", "--vdsp_params", "broken.json", "--datalist", "npz_datalist.txt",
               cwd=step5)
    one_line_error(proc, "--vdsp_params broken.json", "not a JSON file")


def test_m_names_a_deploy_prefix_or_an_onnx_file_and_nothing_else(cli, step5, datalist, one_line_error):
    proc = cli("run", "-m", f"{DEPLOY}/tiny.onnx", "-b", 1, "--datalist", "npz_datalist.txt", cwd=step5)
    assert proc.returncode == 0, proc.stderr
    proc = cli("run", "-m", f"{DEPLOY}/vgg11", "--datalist", "npz_datalist.txt", cwd=step5)
    one_line_error(proc, f"-m {DEPLOY}/vgg11", f"no model {DEPLOY}/vgg11.onnx")
    proc = cli("run", "-m", f"{DEPLOY}/tiny", "--onnx", f"{DEPLOY}/tiny.onnx", "--datalist", "npz_datalist.txt",
               cwd=step5)
    assert proc.returncode == 2 and "not allowed with argument" in proc.stderr
    (step5 / "both.json").write_text(json.dumps(SDK10))
    proc = cli("run", "-m", f"{DEPLOY}/tiny", "--vdsp_params", "both.json", "--preprocess", "both.json",
               "--datalist", "npz_datalist.txt", cwd=step5)
    one_line_error(proc, "--preprocess and --vdsp_params")
