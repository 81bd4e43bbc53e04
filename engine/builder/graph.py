"""An onnxruntime session of a model that also returns some of its intermediate tensors:
what the build reads to correct biases, count multiply-accumulates and fold Pads."""
from __future__ import annotations

import onnx
from onnx import helper


def session_with_outputs(model: onnx.ModelProto, tensors: list[str]):
    """A CPU session of a copy of ``model`` whose outputs also include ``tensors``."""
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    present = {o.name for o in probe.graph.output}
    probe.graph.output.extend(helper.make_empty_tensor_value_info(t) for t in tensors if t not in present)
    return ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
