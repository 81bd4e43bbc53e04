"""A served model whose data config gives resize and crop as (height, width) pairs: the warm-up
and the KServe metadata and config take their sizes from the pairs and from input_size."""
from __future__ import annotations

import json
from dataclasses import replace

from tinynet import write_tiny_onnx

from engine.data.dataconfig import ModelInfo
from engine.serving import kserve
from engine.serving.deployment import Batching, Deployment
from engine.serving.jobs import Limits
from engine.serving.model import ServedModel


def test_pair_sizes_warm_up_and_describe_the_image(tmp_path):
    path = write_tiny_onnx(tmp_path / "tiny_64.onnx", size=64, resize=72, classes=10, seed=1)
    info = ModelInfo.load(ModelInfo.path_for(path))
    config = replace(info.data_config, resize=(72, 80), crop=(64, 64))
    replace(info, data_config=config).save(ModelInfo.path_for(path))
    model = ServedModel(path)
    try:
        model.warmup(2)
        deployment = Deployment("tiny", "1", model, Batching(4, 100, 1), Limits())
        metadata = json.loads(json.dumps(kserve.model_metadata(deployment, ["1"])))
        assert metadata["inputs"][0]["shape"] == [-1, 64, 64, 3]
        config = json.loads(json.dumps(kserve.model_config(deployment)))
        assert config["input"][0]["dims"] == [64, 64, 3] and config["max_batch_size"] == 4
    finally:
        model.close()
