"""Fixtures the serving tests share: the tiny seeded model every server here runs."""
from __future__ import annotations

import pytest
from tinynet import write_tiny_onnx

NUM_CLASSES = 10


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    return write_tiny_onnx(tmp_path_factory.mktemp("tiny") / "tiny_224.onnx", size=224, resize=256,
                           classes=NUM_CLASSES, seed=3)
