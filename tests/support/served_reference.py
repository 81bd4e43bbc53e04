"""What a served tiny model must answer, computed in-process from the same parts: the model's
own preprocessing (its model-info JSON), one onnxruntime session, a float64 softmax."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort

from engine.data.dataconfig import ModelInfo
from engine.kernels import resize_crop_normalize


def reference_probs(onnx_path, image: np.ndarray) -> np.ndarray:
    """The class probabilities of ``image`` (HxWx3 uint8) under the model at ``onnx_path``."""
    cfg = ModelInfo.load(ModelInfo.path_for(onnx_path)).data_config
    x = resize_crop_normalize(image, resize=cfg.resize, crop=cfg.crop, mean=cfg.mean, std=cfg.std)
    logits = ort.InferenceSession(str(onnx_path)).run(None, {"input": x[None]})[0][0].astype(np.float64)
    probs = np.exp(logits - logits.max())
    return probs / probs.sum()
