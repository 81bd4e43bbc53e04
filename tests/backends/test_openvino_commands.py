"""--backend openvino as a user meets it: engine.run, engine.serve and engine.tune as real
processes on a tiny seeded model and real photos; a missing openvino is one line."""
from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from hidden_packages import environment
from photos import PHOTOS, write_photo
from server_process import ServerProcess
from tinynet import write_tiny_onnx

from engine.data.topk_text import read_topk_file
from engine.serving.client import Client

ROOT = Path(__file__).resolve().parents[2]
SIZE = 32


def cli(tool: str, *args, env=None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"engine.{tool}", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ovcmd")
    for photo in PHOTOS:
        for j in range(4):
            write_photo(root / "photos" / f"{photo}_{j}.jpg", photo, size=(60 + 10 * j, 48 + 4 * j))
    return root, write_tiny_onnx(root / "tiny.onnx", size=SIZE, classes=10, seed=4)


def top1(topk_file: Path) -> dict[str, int]:
    return {item: entries[0].class_id for item, entries in read_topk_file(topk_file).items()}


def test_run_at_bf16_reports_the_precision_and_agrees_with_onnxruntime(setup):
    root, model = setup
    runs = {}
    for name, flags in (("ort", []), ("ov", ["--backend", "openvino", "--precision", "bf16"])):
        report, topk = root / f"{name}.json", root / f"{name}_topk.txt"
        done = cli("run", "--images", root / "photos", "--onnx", model, "-b", 4, "--quiet", "--report", report,
                   "--save-topk", topk, *flags)
        assert done.returncode == 0, done.stderr
        runs[name] = (json.loads(report.read_text()), top1(topk))
    ov_report, ov_top1 = runs["ov"]
    assert ov_report["model"]["precision"] == "bf16"
    assert {b["backend"] for b in ov_report["backends"]} == {"openvino-cpu"}
    assert {b["inference_precision"] for b in ov_report["backends"]} == {"bf16"}
    assert runs["ort"][0]["model"]["precision"] == "fp32"
    assert ov_report["counts"]["done"] == 3 * 4
    assert len(ov_top1) == 12 and ov_top1.keys() == runs["ort"][1].keys()
    agree = np.mean([ov_top1[k] == v for k, v in runs["ort"][1].items()])
    assert agree >= 0.9


@pytest.mark.parametrize("flags, message", [
    (["--backend", "openvino", "--precision", "fp16"], "--backend openvino runs fp32 or bf16"),
    (["--backend", "ort", "--precision", "bf16"], "use --backend openvino"),
    (["--max-accuracy-loss", "1"], "--max-accuracy-loss applies to --auto"),
])
def test_run_refuses_precisions_a_backend_does_not_run(setup, flags, message):
    root, model = setup
    done = cli("run", "--images", root / "photos", "--onnx", model, "--quiet", *flags)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr


def test_without_openvino_the_backend_is_one_line_naming_the_extra(setup, tmp_path):
    root, model = setup
    env = environment(tmp_path / "hide", ("openvino",))
    config = tmp_path / "bf16.yaml"
    config.write_text(f"model: {{onnx: {model}}}\ndtype: bf16\ncheck: {{path: {root / 'photos'}, count: 4}}\n")
    for tool, args in (("run", ["--images", root / "photos", "--onnx", model, "--backend", "openvino"]),
                       ("serve", ["--onnx", model, "--backend", "openvino"]),
                       ("tune", [model, "--backend", "openvino"]),
                       ("build", [config, "--output", tmp_path / "out", "--no-progress"])):
        done = cli(tool, *args, env=env, timeout=120)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2, (tool, done.stderr)
        assert len(lines) == 1 and "pip install 'vgg-stream-engine[openvino]'" in lines[0], (tool, done.stderr)


def test_serve_on_openvino_bf16_answers_like_onnxruntime(setup):
    root, model = setup
    photos = sorted((root / "photos").iterdir())
    answers = {}
    configs = {}
    for name, flags in (("ort", []), ("ov", ["--backend", "openvino", "--precision", "bf16"])):
        with ServerProcess(["--onnx", str(model), "--max-batch", "4", "--threads", "1", "--http", "127.0.0.1:0",
                            *flags]) as server:
            with Client(server.endpoint, timeout_ms=30_000) as client:
                answers[name] = [client.classify(p, topk=3)["topk"] for p in photos]
            with urllib.request.urlopen(f"{server.fronts['http']}/v2/models/tinynet/config", timeout=30) as reply:
                configs[name] = json.loads(reply.read())
    # Triton's model configuration says which runtime serves the model, and at which precision
    assert (configs["ov"]["backend"], configs["ov"]["parameters"]["precision"]["string_value"]) == ("openvino", "bf16")
    assert (configs["ort"]["backend"], configs["ort"]["parameters"]["precision"]["string_value"]) == \
        ("onnxruntime", "fp32")
    for ort_top, ov_top in zip(answers["ort"], answers["ov"], strict=True):
        assert ov_top[0]["class"] == ort_top[0]["class"]
        assert abs(ov_top[0]["prob"] - ort_top[0]["prob"]) < 0.02


def test_tune_sweeps_backend_and_precision_within_what_is_allowed(setup, tmp_path):
    root, model = setup
    grid = ["--instances", "1", "--threads", "1", "--batch", "2", "4", "--budget", "2"]
    out = tmp_path / "fp32.json"
    done = cli("tune", model, *grid, "--json", out)
    assert done.returncode == 0, done.stderr
    saved = json.loads(out.read_text())
    # No precision allowed: both runtimes measured, at fp32 only.
    assert {(r["backend"], r["precision"]) for r in saved["candidates"]} == {("ort", "fp32"), ("openvino", "fp32")}
    assert {r["backend"] for r in saved["table"]} == {"ort", "openvino"}
    assert saved["best"]["precision"] == "fp32" and "images/s on " in done.stdout

    out = tmp_path / "loss.json"
    done = cli("tune", model, *grid, "--max-accuracy-loss", "100", "--check-items", root / "photos", "--json", out)
    assert done.returncode == 0, done.stderr
    saved = json.loads(out.read_text())
    bf16 = [r for r in saved["candidates"] if r["precision"] == "bf16"]
    assert [r["backend"] for r in bf16] == ["openvino"]
    assert bf16[0]["top1_disagreement_pct"] <= 100 and bf16[0]["output_snr_db"] > 20
    assert "top-1 disagreement" in done.stdout

    out = tmp_path / "bf16.json"
    done = cli("tune", model, *grid, "--precision", "bf16", "--json", out)
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["best"]["backend"] == "openvino" and "on openvino bf16" in done.stdout
    done = cli("tune", model, "--max-accuracy-loss", "1")
    assert done.returncode == 2 and "--check-items" in done.stderr


def test_run_auto_picks_backend_and_precision_and_says_so(setup):
    root, model = setup
    report = root / "auto.json"
    done = cli("run", "--images", root / "photos", "--onnx", model, "--auto", "--auto-budget", "2", "--quiet",
               "--precision", "bf16", "--report", report)
    assert done.returncode == 0, done.stderr
    assert "--auto picked --backend openvino --precision bf16" in done.stderr
    saved = json.loads(report.read_text())
    assert saved["config"]["backend"] == "openvino" and saved["model"]["precision"] == "bf16"


def test_run_auto_with_a_loss_bound_measures_bf16_and_says_what_else_it_measured(setup):
    root, model = setup
    done = cli("run", "--images", root / "photos", "--onnx", model, "--auto", "--auto-budget", "2", "--quiet",
               "--max-accuracy-loss", "0")
    assert done.returncode == 0, done.stderr
    picked = next(line for line in done.stderr.splitlines() if "--auto picked" in line)
    # fp32 on both runtimes, and bf16 either picked, measured or left out by its measured disagreement
    bf16_named = "openvino bf16" in picked or "--backend openvino --precision bf16" in picked
    assert "also measured:" in picked and bf16_named
    assert ("ort fp32" in picked) != ("--backend ort --precision fp32" in picked)


def test_a_bf16_deploy_folder_runs_on_openvino_without_flags_and_onnxruntime_refuses_it(setup, tmp_path):
    root, model = setup
    config = tmp_path / "bf16.yaml"
    config.write_text(f"model: {{onnx: {model}}}\ndtype: bf16\ncheck: {{path: {root / 'photos'}, count: 6}}\n")
    done = cli("build", config, "--output", tmp_path, "--no-progress")
    assert done.returncode == 0, done.stderr
    assert "checked on openvino" in done.stdout and "check on 6 held-out images" in done.stdout
    built = tmp_path / f"tinynet-bf16-none-3_{SIZE}_{SIZE}-openvino" / "tinynet.onnx"
    report = tmp_path / "report.json"
    done = cli("run", "--images", root / "photos", "--onnx", built, "--quiet", "--report", report)
    assert done.returncode == 0, done.stderr
    saved = json.loads(report.read_text())
    assert saved["config"]["backend"] == "openvino" and saved["model"]["precision"] == "bf16"
    done = cli("run", "--images", root / "photos", "--onnx", built, "--quiet", "--backend", "ort")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1 and "use --backend openvino" in lines[0], done.stderr
