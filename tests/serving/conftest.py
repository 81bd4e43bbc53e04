"""Fixtures the serving tests share: the tiny seeded model every server here runs, and a model
repository of several tiny models (good, broken, badly configured)."""
from __future__ import annotations

import pytest
from tinynet import write_tiny_onnx

NUM_CLASSES = 10


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    return write_tiny_onnx(tmp_path_factory.mktemp("tiny") / "tiny_224.onnx", size=224, resize=256,
                           classes=NUM_CLASSES, seed=3)


ALPHA_CONFIG = """name: "alpha"
max_batch_size: 4
version_policy { all {} }
dynamic_batching { max_queue_delay_microseconds: 100 }
instance_group [{ count: 1 kind: KIND_CPU }]
"""


def write_repository(root):
    """A Triton model repository: ``alpha`` (versions 1 and 2, different seeds, a config.pbtxt serving
    both), ``beta`` (one version, 5 classes, another input size, no config), ``broken`` (an ONNX file
    that is not one) and ``badconfig`` (a config.pbtxt with a field Triton does not know)."""
    write_tiny_onnx(root / "alpha" / "1" / "model.onnx", size=32, classes=NUM_CLASSES, seed=1)
    write_tiny_onnx(root / "alpha" / "2" / "model.onnx", size=32, classes=NUM_CLASSES, seed=2)
    (root / "alpha" / "config.pbtxt").write_text(ALPHA_CONFIG)
    write_tiny_onnx(root / "beta" / "1" / "model.onnx", size=48, classes=5, seed=3)
    (root / "broken" / "1").mkdir(parents=True)
    (root / "broken" / "1" / "model.onnx").write_bytes(b"this is not an ONNX file")
    write_tiny_onnx(root / "badconfig" / "1" / "model.onnx", size=32, classes=NUM_CLASSES, seed=4)
    (root / "badconfig" / "config.pbtxt").write_text("max_batch_size: 4\nfrobnicate: 3\n")
    return root


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    return write_repository(tmp_path_factory.mktemp("repository"))
