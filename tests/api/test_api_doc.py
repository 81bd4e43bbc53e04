"""Every example of docs/api.md, run as a user's script (no main guard) in a folder holding
what the page says: m.onnx, photos/*.jpg and npz_datalist.txt."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from photos import photo_array, write_photo
from tinynet import write_tiny_onnx

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "api.md").read_text(), flags=re.S)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("user")
    write_tiny_onnx(root / "m.onnx", size=32, classes=10)
    (root / "npz").mkdir()
    for i, name in enumerate(("chelsea", "coffee", "astronaut", "chelsea", "coffee")):
        write_photo(root / "photos" / f"{i}.jpg", name, size=(60 + 4 * i, 48))
        np.savez(root / "npz" / f"{i}.npz", input_0=photo_array(name, size=(60 + 4 * i, 48)).transpose(2, 0, 1))
    (root / "npz_datalist.txt").write_text("".join(f"npz/{i}.npz\n" for i in range(5)))
    return root


def test_the_page_has_an_example_of_every_public_name():
    text = "\n".join(EXAMPLES)
    for name in ("engine.Classifier", "clf.stream", "clf.classify", "clf.stats", "engine.run(", "engine.preprocess",
                 "engine.ray_data.Classify", "engine.UsageError"):
        assert name in text, name


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_example_runs(folder, index, tmp_path):
    script = tmp_path / f"example_{index}.py"
    script.write_text(EXAMPLES[index])
    proc = subprocess.run([sys.executable, script], cwd=folder, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"docs/api.md example {index}:\n{EXAMPLES[index]}\n{proc.stderr[-3000:]}"
