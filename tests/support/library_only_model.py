"""A tiny ONNX model whose data config only its library's transform reproduces: timm's eval
transform with lanczos resampling, which the fused kernel does not have, so the engine's
preprocessing must take the library path for it."""
from __future__ import annotations

import json
from pathlib import Path

from tinynet import write_tiny_onnx

from engine.data.dataconfig import ModelInfo

SIZE = 32
LANCZOS_TIMM = {"input_size": [3, SIZE, SIZE], "interpolation": "lanczos", "mean": [0.5] * 3, "std": [0.5] * 3,
                "crop_pct": 0.875, "crop_mode": "center"}


def write_lanczos_model(folder: Path, name: str) -> Path:
    """The tiny seeded net as ``folder/tiny.onnx``, named ``name`` in its model-info JSON,
    with the lanczos timm data config; returns the ONNX path."""
    model = write_tiny_onnx(Path(folder) / "tiny.onnx", size=SIZE, classes=10)
    info_path = ModelInfo.path_for(model)
    info = json.loads(info_path.read_text())
    info["name"] = name
    info["data_config"].update(resize=36, interpolation="lanczos", mean=[0.5] * 3, std=[0.5] * 3,
                               library_transform={"library": "timm", "config": LANCZOS_TIMM},
                               source="a lanczos test config")
    info_path.write_text(json.dumps(info))
    return model
