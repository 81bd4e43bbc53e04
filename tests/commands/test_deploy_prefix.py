"""engine.build's vdsp_params file, read back by ``engine.run -m DIR/NAME --vdsp_params``,
and ``-m DIR/NAME`` in engine.tune and engine.serve, on a deploy folder built here."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from photos import photo_array
from server_process import ServerProcess

from engine.serving.client import Client


@pytest.fixture(scope="module")
def deploy(tmp_path_factory, tiny_model):
    """An fp32 deploy folder of the tiny model (Pillow bilinear, short side 36, crop 32), and the build's stderr."""
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("deploy")
    (root / "b.yaml").write_text(yaml.safe_dump({"model": {"onnx": str(tiny_model)}, "dtype": "fp32"}))
    proc = subprocess.run([sys.executable, "-m", "engine.build", "b.yaml", "--output", "out", "--no-progress"],
                          cwd=root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return next((root / "out").iterdir()), proc.stderr


def vamp_values(path) -> dict:
    return {e["Property"]: e["Value"] for e in json.loads(path.read_text())["config"]}


def test_the_build_writes_a_vamp_file_that_says_the_models_preprocessing_and_what_it_cannot(deploy):
    folder, stderr = deploy
    vdsp = next(folder.glob("*-vdsp_params.json"))
    values = vamp_values(vdsp)
    assert (values["short_edge_threshold"], values["crop_size"], values["resize_type"]) == (36, 32, "BILINEAR_PILLOW")
    assert values["norma_type"] == "DIV255_MINUSMEAN_DIVSTD" and values["color_cvt_code"] == "COLOR_NO_CHANGE"
    assert [values[k] for k in ("meanr", "meang", "meanb", "stdr", "stdg", "stdb")] == \
        [14275, 14156, 13951, 13140, 13099, 13107]  # the seed's own file's values
    assert f"note: {vdsp.name} cannot say: mean/std as float16" in stderr
    report = json.loads((folder / "build.json").read_text())
    assert report["vdsp_params"]["file"] == vdsp.name and "float16" in report["vdsp_params"]["not_expressed"][0]


def test_engine_run_reads_the_built_file_back_to_the_models_own_preprocessing(cli, deploy, photo_folder):
    folder, _ = deploy
    prefix = folder / "tinynet"
    vdsp = next(folder.glob("*-vdsp_params.json"))
    outputs = {}
    for name, extra in (("own", []), ("vdsp", ["--vdsp_params", vdsp])):
        out = folder.parent / f"run-{name}"
        proc = cli("run", "-m", prefix, "--images", photo_folder, "-b", 2, "--path_output", out, *extra)
        assert proc.returncode == 0, proc.stderr
        outputs[name] = np.stack([np.load(f)["output_0"] for f in sorted(out.glob("output_*.npz"))])
    assert "BILINEAR_PILLOW" not in proc.stderr and "preprocessing from vdsp_params" in proc.stderr
    # Only the float16 mean/std differ (by 1e-4 at most), on the same Pillow-exact kernel.
    np.testing.assert_allclose(outputs["vdsp"], outputs["own"], atol=2e-3)
    assert not np.array_equal(outputs["vdsp"], outputs["own"])


def test_tune_takes_m(cli, deploy, one_line_error):
    folder, _ = deploy
    proc = cli("tune", "-m", folder / "tinynet", "--backend", "ort", "--instances", 1, "--threads", 1,
               "--batch", 1, "--budget", 1)
    assert proc.returncode == 0, proc.stderr
    assert "best: 1 instance(s) x 1 thread(s), batch 1: " in proc.stdout
    one_line_error(cli("tune", "-m", folder / "nothing"), f"-m {folder / 'nothing'}: no model")


def test_serve_takes_m(cli, deploy, tiny_model, one_line_error):
    folder, _ = deploy
    image = photo_array("coffee", (50, 40))
    replies = {}
    for name, flags in (("m", ["-m", folder / "tinynet"]), ("onnx", ["--onnx", tiny_model])):
        with ServerProcess([*map(str, flags), "--max-batch", "1"]) as server, Client(server.endpoint) as client:
            replies[name] = client.classify(image, topk=3)
    assert replies["m"]["ok"], replies["m"]
    assert [e["class"] for e in replies["m"]["topk"]] == [e["class"] for e in replies["onnx"]["topk"]]
    np.testing.assert_allclose([e["prob"] for e in replies["m"]["topk"]],
                               [e["prob"] for e in replies["onnx"]["topk"]], rtol=1e-5)
    one_line_error(cli("serve", "-m", folder / "nothing"), "-m", "no model")
