"""engine.run on a model whose preprocessing the kernel cannot do: the preprocess workers run
its library's transform (real processes, a real timm transform, real photo files)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import timm
from library_only_model import LANCZOS_TIMM, write_lanczos_model
from photos import write_photo
from PIL import Image

from engine.data.decode import load_item

ROOT = Path(__file__).resolve().parents[2]


def test_run_preprocesses_through_the_library_and_says_so_once(tmp_path):
    model = write_lanczos_model(tmp_path, "run-lanczos-net")
    items = [str(write_photo(tmp_path / "cat.jpg", "chelsea")),
             str(write_photo(tmp_path / "coffee.png", "coffee", size=(997, 61)))]
    datalist = tmp_path / "list.txt"
    datalist.write_text("\n".join(items) + "\n")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "engine.run", "--quiet", "--datalist", str(datalist),
                           "--onnx", str(model), "-b", "1", "--workers", "2", "--path_output", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    notices = [line for line in proc.stderr.splitlines() if "preprocessing runs through timm's own transform" in line]
    assert len(notices) == 1 and "tiny.onnx" in notices[0] and "lanczos" in notices[0], proc.stderr
    transform = timm.data.create_transform(**LANCZOS_TIMM)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    for i, item in enumerate(items):
        x = transform(Image.fromarray(np.asarray(load_item(item)))).numpy()
        want = session.run(None, {"input": x[None]})[0]
        got = np.load(out / f"output_{i:06d}.npz")["output_0"]
        np.testing.assert_array_equal(got, want)
