"""engine.serve --model on a model whose ONNX export fails: served on the torch backend
with a notice, its probabilities the library's own on its own transform."""
from __future__ import annotations

import numpy as np
import timm
import torch
import tritonclient.http as httpclient
from photos import photo_array
from PIL import Image
from server_process import ServerProcess

from engine.models.zoo import create

NAME = "volo_d1_224"  # its exported graph keeps the example's batch of 1: onnxruntime refuses larger batches


def test_a_model_onnx_cannot_hold_is_served_on_the_torch_backend(tmp_path):
    args = ["--model", NAME, "--model-library", "timm", "--http", "127.0.0.1:0", "--threads", "2", "--max-batch", "2"]
    with ServerProcess(args, env={"XDG_CACHE_HOME": str(tmp_path / "cache")}, timeout_s=900) as server:
        client = httpclient.InferenceServerClient(server.fronts["http"].removeprefix("http://"))
        images = [photo_array("chelsea"), photo_array("coffee", (301, 177))]
        served = []
        for image in images:
            tensor = httpclient.InferInput("IMAGE", list(image.shape), "UINT8")
            tensor.set_data_from_numpy(image)
            served.append(client.infer(NAME, [tensor]).as_numpy("PROBABILITIES"))
        client.close()
        stderr = server.read_stderr()
    notices = [line for line in stderr.splitlines() if "runs on the torch backend" in line]
    assert len(notices) == 1 and NAME in notices[0], stderr
    module = create(NAME, library="timm", seed=0).module
    transform = timm.data.create_transform(**timm.data.resolve_data_config(model=module))
    with torch.no_grad():
        batch = torch.stack([transform(Image.fromarray(image)) for image in images])
        expected = torch.softmax(module(batch), dim=1).numpy()
    np.testing.assert_allclose(np.stack(served), expected, atol=1e-5)
