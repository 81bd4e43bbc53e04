"""The seed's preprocess_ops against a data config whose resize and crop are (height, width) pairs."""
from __future__ import annotations

import pytest

from engine.builder.config import ConfigError, check_preprocess_ops
from engine.data.dataconfig import DataConfig

PAIRS = DataConfig(input_size=(3, 224, 192), resize=(256, 219), crop=(224, 192))


def test_ops_that_match_pair_sizes_pass():
    check_preprocess_ops([{"type": "Resize", "size": [256, 219]}, {"type": "CenterCrop", "crop_size": [224, 192]}],
                         PAIRS)
    check_preprocess_ops([{"type": "Resize", "size": 256}, {"type": "CenterCrop", "size": 224}], DataConfig())


@pytest.mark.parametrize("op, message", [
    ({"type": "Resize", "size": [256, 256]}, r"size \[256, 256\] but the model's data config resizes to \(256, 219\)"),
    ({"type": "CenterCrop", "crop_size": 224}, r"crop 224 but the model's data config crops \(224, 192\)"),
])
def test_ops_that_contradict_pair_sizes_are_refused(op, message):
    with pytest.raises(ConfigError, match=message):
        check_preprocess_ops([op], PAIRS)
