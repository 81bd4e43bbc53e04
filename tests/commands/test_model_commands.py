"""engine.zoo, engine.export, engine.serve and engine.tune: usage errors in one line, exit 2;
the zoo's static facts answer without building a model (issue 21, items 2-5, 9, 10)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import timm
import torchvision

ROOT = Path(__file__).resolve().parents[2]


def test_zoo_list_and_info_answer_in_under_two_seconds(cli):
    for args in (("list",), ("info", "vgg11")):
        start = time.perf_counter()
        proc = cli("zoo", *args)
        elapsed = time.perf_counter() - start
        assert proc.returncode == 0, proc.stderr
        assert elapsed < 2.0, (args, elapsed)
    assert "timm vgg11: 132.863 M params, 7.609 GMACs, random weights (seed 0)" in proc.stdout


def test_zoo_info_unknown_model_is_a_usage_error(cli, one_line_error):
    one_line_error(cli("zoo", "info", "resnet5O"), "model 'resnet5O' is not in the zoo")


def test_export_refuses_bad_sizes_and_save_dirs_before_torch(cli, one_line_error, tmp_path):
    for size in ("0", "-5"):
        one_line_error(cli("export", "--model-name", "vgg11", "--size", size),
                       f"--size must be at least 32, got {size}")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    one_line_error(cli("export", "--model-name", "vgg11", "--save_dir", a_file), f"--save-dir {a_file}: is a file")
    one_line_error(cli("export", "--model-name", "vgg12"), "model 'vgg12' is not in the zoo")
    one_line_error(cli("export", "--model-name", "vgg11", "--weights", tmp_path / "w.pth"), "--weights", "no such file")


def test_serve_and_tune_say_a_directory_is_a_directory(cli, one_line_error, tmp_path):
    one_line_error(cli("serve", "--onnx", tmp_path), f"--onnx {tmp_path}: is a directory, not a file")
    one_line_error(cli("serve", "--model", "resnet5O"), "model 'resnet5O' is not in the zoo")
    one_line_error(cli("tune", tmp_path), f"model {tmp_path}: is a directory, not a file")


def test_client_endpoint_without_scheme_and_no_server(cli, one_line_error, photo_folder):
    image = next(photo_folder.rglob("*.jpg"))
    one_line_error(cli("client", "--connect", "localhost:5599", image),
                   "--connect localhost:5599: not a ZeroMQ endpoint")
    one_line_error(cli("client", "--connect", "tcp://127.0.0.1:5599", photo_folder / "nope.jpg"),
                   "nope.jpg: no such file")
    start = time.perf_counter()
    proc = cli("client", "--connect", "tcp://127.0.0.1:5599", image)
    assert time.perf_counter() - start < 15
    one_line_error(proc, "nothing answered at tcp://127.0.0.1:5599", code=1)


def test_zoo_list_all_names_every_classifier_with_its_preprocessing(tmp_path):
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path))
    timings = []
    for _ in range(2):  # the second listing reads the first one's cache
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "engine.zoo", "list", "--all", "--json"], cwd=ROOT,
                              capture_output=True, text=True, timeout=300, env=env)
        timings.append(time.perf_counter() - start)
        assert proc.returncode == 0, proc.stderr
    listed = json.loads(proc.stdout)
    rows = {(r["name"], r["library"]): r for r in listed}
    assert len(rows) == len(listed)  # the table's VGGs are not listed again as timm's / torchvision's
    timm_names = set(timm.list_models()) | set(timm.list_pretrained())
    assert {name for name, library in rows if library == "timm"} == timm_names
    assert {name for name, library in rows if library == "torchvision"} == \
        set(torchvision.models.list_models(module=torchvision.models))
    assert ("efficientnet_lite0", "efficientnet_lite_pytorch") in rows and ("vgg19_bn", "mmcls") in rows
    assert rows[("vgg11", "mmcls")]["crop"] == "256->224"
    assert rows[("resnet50.a1_in1k", "timm")]["interpolation"] == "bicubic"
    assert rows[("resnet50.a1_in1k", "timm")]["crop"] == "235->224"  # floor(224 / 0.95), timm's own arithmetic
    assert rows[("vit_base_patch16_384.augreg_in21k_ft_in1k", "timm")]["input_size"] == [3, 384, 384]
    assert rows[("resnet50", "torchvision")]["crop"] == "232->224"  # IMAGENET1K_V2's transforms()
    assert timings[1] < 5.0, timings


def test_zoo_show_prints_a_library_model_data_config_and_counts(cli):
    proc = cli("zoo", "show", "convnext_atto", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert (info["name"], info["library"]) == ("convnext_atto", "timm")
    assert info["data_config"]["interpolation"] == "bicubic" and info["data_config"]["crop"] == 224
    assert round(info["params_m"], 3) == round(sum(p.numel() for p in timm.create_model("convnext_atto").parameters())
                                               / 1e6, 3)
    text = cli("zoo", "show", "shufflenet_v2_x0_5")
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("torchvision shufflenet_v2_x0_5: 1.367 M params")
    assert '"library_transform": {"library": "torchvision"' in text.stdout


def test_unknown_classifiers_and_wrong_libraries_are_usage_errors(cli, one_line_error):
    one_line_error(cli("zoo", "show", "convnext_atoo"), "model 'convnext_atoo'", "close matches:", "convnext_atto")
    one_line_error(cli("export", "--model-name", "mobilenet_v3_small", "--model-library", "timm"),
                   "'mobilenet_v3_small' is not offered by timm", "it is by torchvision")
    one_line_error(cli("run", "--images", ROOT, "--model", "resnet18", "--model-library", "mmcls"),
                   "'resnet18' is not offered by 'mmcls'")
