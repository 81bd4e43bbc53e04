"""The core install (``pip install vgg-stream-engine``, no extras) as its user meets it.

Every command runs as a real subprocess in which the extras' packages cannot be imported,
in it nor in the workers it starts (tests/support/hidden_packages.py): the ONNX path on
the CPU works end to end, with the same outputs as on the full install, and each feature
that needs an extra refuses in one line naming the extra to install.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hidden_packages import environment
from photos import write_class_folders
from server_process import ServerProcess
from tinynet import write_tiny_onnx

from engine.data.extras import DISTRIBUTION, EXTRA_MODULES

ROOT = Path(__file__).resolve().parents[1]
# every extra's import names, and what the extras' packages pull in that the core must not need
HIDDEN = tuple(m for modules in EXTRA_MODULES.values() for m in modules) + (
    "onnxscript", "starlette", "fastapi", "pyarrow", "pandas", "openvino", "matplotlib")


@pytest.fixture(scope="module")
def core_env(tmp_path_factory):
    return environment(tmp_path_factory.mktemp("core-site"), tuple(m.partition(".")[0] for m in HIDDEN))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return write_tiny_onnx(tmp_path_factory.mktemp("model") / "tiny.onnx", size=32, classes=10, seed=5)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return write_class_folders(tmp_path_factory.mktemp("photos"))


def engine(tool: str, *args, env=None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"engine.{tool}", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_the_hidden_packages_cannot_be_imported(core_env):
    probe = ("import importlib.util, sys\n"
             "for name in sys.argv[1:]:\n"
             "    assert importlib.util.find_spec(name) is None, name\n"
             "    try:\n        __import__(name)\n    except ModuleNotFoundError:\n        continue\n"
             "    raise SystemExit(f'{name} imported')\n")
    names = ("torch", "torchvision", "timm", "ray", "uvicorn", "grpc", "tritonclient", "prometheus_client")
    proc = subprocess.run([sys.executable, "-c", probe, *names], env=core_env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    # the same probe on the full install finds them: the hiding, not this venv, made them vanish
    assert subprocess.run([sys.executable, "-c", probe, "torch"], capture_output=True).returncode != 0


def _outputs(folder: Path) -> dict[str, dict[str, np.ndarray]]:
    return {p.name: dict(np.load(p)) for p in sorted(folder.glob("output_*.npz"))}


def test_onnx_run_image2npz_and_eval_on_the_core_install(core_env, tiny, photos, tmp_path):
    datalist = tmp_path / "npz_datalist.txt"
    proc = engine("image2npz", "--dataset_path", photos, "--target_path", tmp_path / "npz", "--text_path", datalist,
                  "--quiet", env=core_env)
    assert proc.returncode == 0, proc.stderr
    runs = {}
    for name, env in (("core", core_env), ("full", None)):
        out = tmp_path / name
        proc = engine("run", "--onnx", tiny, "--datalist", datalist, "-b", "2", "--path_output", out,
                      "--report", tmp_path / f"{name}.json", "--labels-from-folders", "--quiet", env=env)
        assert proc.returncode == 0, proc.stderr
        runs[name] = _outputs(out)
    assert len(runs["core"]) == 6 and runs["core"].keys() == runs["full"].keys()
    for file, arrays in runs["core"].items():
        assert arrays.keys() == runs["full"][file].keys()
        for name, array in arrays.items():
            np.testing.assert_array_equal(array, runs["full"][file][name])
    counts = json.loads((tmp_path / "core.json").read_text())["counts"]
    assert counts["done"] == 6 and counts["failed"] == 0, counts
    proc = engine("eval", "imagenet", "--result_path", tmp_path / "core", "--datalist", datalist,
                  "--labels-from-folders", env=core_env)
    assert proc.returncode == 0 and "top1_rate" in proc.stdout, proc.stderr


def test_serve_over_zeromq_and_the_client_on_the_core_install(core_env, tiny, photos):
    photo = next(photos.rglob("*.jpg"))
    with ServerProcess(["--onnx", str(tiny), "--max-batch", "2"], env=core_env) as server:
        proc = engine("client", "--connect", server.endpoint, photo, env=core_env)
        status = server.stop()
    assert proc.returncode == 0, proc.stderr
    assert photo.name in proc.stdout and "tiny class" in proc.stdout, proc.stdout
    assert status == 0, server.read_stderr()


def _refusals(tiny: Path, photos: Path, tmp: Path):
    run = ("run", "--onnx", tiny, "--images", photos)
    zoo_build, adaround_build = tmp / "zoo.yaml", tmp / "adaround.yaml"
    zoo_build.write_text(f"model: {{name: vgg11}}\ndtype: fp32\noutput: {tmp / 'zoo_build'}\n")
    adaround_build.write_text(f"model: {{onnx: {tiny}}}\ndtype: int8\nquantization: {{adaround: true}}\n"
                              f"calibration: {{path: {photos}}}\noutput: {tmp / 'adaround_build'}\n")
    return [
        (("run", "--model", "vgg11", "--images", photos), "torch", "--model"),
        (("run", "--model", "resnet18.a1_in1k", "--images", photos), "torch", "--model"),
        ((*run, "--backend", "torch"), "torch", "--backend torch"),
        ((*run, "--ray", "auto"), "ray", "--ray"),
        ((*run, "--backend", "openvino"), "openvino", "--backend openvino"),
        ((*run, "--results", tmp / "results.parquet"), "results", "--results"),
        (("serve", "--model", "vgg11"), "torch", "--model"),
        (("serve", "--onnx", tiny, "--http", "127.0.0.1:0"), "serve", "--http"),
        (("serve", "--onnx", tiny, "--grpc", "127.0.0.1:0"), "serve", "--grpc"),
        (("export", "--model-name", "vgg11", "--save-dir", tmp / "export"), "torch", "engine.export"),
        (("zoo", "show", "efficientnet_lite0"), "torch", "engine.zoo show efficientnet_lite0"),
        (("zoo", "show", "resnet18"), "torch", "a timm model"),
        (("zoo", "list", "--all"), "torch", "engine.zoo list --all"),
        (("tune", tiny, "--backend", "torch"), "torch", "--backend torch"),
        (("build", zoo_build), "torch", "model.name: vgg11 (a zoo model, exported first)"),
        (("build", adaround_build), "torch", "quantization.adaround"),
    ]


def test_each_feature_that_needs_an_extra_names_it_in_one_line(core_env, tiny, photos, tmp_path):
    cases = _refusals(tiny, photos, tmp_path)
    assert {extra for _, extra, _ in cases} == set(EXTRA_MODULES)  # a new extra gets a case here
    procs = [subprocess.Popen([sys.executable, "-m", f"engine.{args[0]}", *map(str, args[1:])], cwd=ROOT,
                              env=core_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for args, _, _ in cases]
    for (args, extra, feature), proc in zip(cases, procs):
        _, err = proc.communicate(timeout=180)
        lines = err.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in err, (args, proc.returncode, err)
        assert f"{feature} needs the {extra} extra: pip install '{DISTRIBUTION}[{extra}]'" in lines[0], (args, err)
    assert not any((tmp_path / name).exists() for name in ("export", "zoo_build", "adaround_build", "results.parquet"))


def test_the_zoo_table_needs_no_extra(core_env):
    proc = engine("zoo", "list", env=core_env)
    assert proc.returncode == 0 and "vgg16_bn" in proc.stdout, proc.stderr
    proc = engine("zoo", "show", "vgg11", env=core_env)
    assert proc.returncode == 0 and "vgg11" in proc.stdout and "GMACs" in proc.stdout, proc.stderr


API_ON_THE_CORE = """
import sys
import numpy as np
import engine
from engine.data.extras import MissingExtra

onnx, photo = sys.argv[1], sys.argv[2]
frame = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
with engine.Classifier(onnx=onnx, batch_size=2, topk=3) as clf:
    results = clf.classify([photo, frame, b"not an image"])
assert [r.index for r in results] == [0, 1, 2]
assert results[0].error is None and results[1].error is None and results[2].error, results
assert len(results[0].topk) == 3 and results[0].logits.shape == (10,)
try:
    engine.Classifier(model="vgg11")
except MissingExtra as e:
    print(e)
else:
    raise SystemExit("Classifier(model=...) ran without torch")
"""


def test_the_python_api_on_the_core_install(core_env, tiny, photos):
    photo = next(photos.rglob("*.jpg"))
    proc = subprocess.run([sys.executable, "-c", API_ON_THE_CORE, str(tiny), str(photo)], cwd=ROOT, env=core_env,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert f"needs the torch extra: pip install '{DISTRIBUTION}[torch]'" in proc.stdout
