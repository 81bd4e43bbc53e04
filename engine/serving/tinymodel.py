"""A tiny seeded ONNX classifier with its model-info JSON, for tests and the serving benchmark.

It costs well under a millisecond per image, so latency measured through the server is
almost all server overhead.
"""
from __future__ import annotations

import warnings
from pathlib import Path

from engine.dataconfig import DataConfig, ModelInfo


def make_tiny_model(save_dir, *, num_classes: int = 10, seed: int = 0, resize: int = 256,
                    crop: int = 224, name: str = "tiny") -> Path:
    """Export ``<save_dir>/<name>_<crop>.onnx`` (dynamic batch) and its model info; return the path."""
    import torch

    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, kernel_size=3, stride=4, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, num_classes),
    ).eval()
    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    path = save_dir / f"{name}_{crop}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            model, (torch.zeros(1, 3, crop, crop),), str(path), input_names=["input"], output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, dynamo=False,
        )
    info = ModelInfo(
        name=name, library="test", model_file=path.name,
        input_shape=["batch", 3, crop, crop], output_shapes=[["batch", num_classes]],
        data_config=DataConfig(input_size=(3, crop, crop), resize=resize, crop=crop, num_classes=num_classes),
        class_names=[f"tiny class {i}" for i in range(num_classes)],
        weights={"seed": seed, "file": None},
    )
    info.save(ModelInfo.path_for(path))
    return path
