"""engine.serve --fast-decode: a real server process; a JPEG far above the model's resize
target is answered from the reduced decode, a smaller one from the exact decode."""
from __future__ import annotations

import io

import msgpack
import numpy as np
import zmq
from photos import photo_image
from served_reference import reference_probs
from server_process import ServerProcess

from engine.data.dataconfig import ModelInfo
from engine.data.decode import decode_image
from engine.data.fast_decode import MARGIN, Draft


def _jpeg(size) -> bytes:
    buffer = io.BytesIO()
    photo_image("astronaut", size=size).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _probs(onnx_path, data: bytes, draft) -> np.ndarray:
    return reference_probs(onnx_path, decode_image(data, draft=draft))


def test_serve_fast_decode_reduces_only_big_jpegs(tiny_onnx):
    resize = ModelInfo.load(ModelInfo.path_for(tiny_onnx)).data_config.resize
    draft = Draft.for_resize(resize)
    big, small = _jpeg((4 * MARGIN * resize, 3 * MARGIN * resize)), _jpeg((300, 2 * MARGIN * resize - 1))
    context = zmq.Context()
    with ServerProcess(["--onnx", str(tiny_onnx), "--threads", "1", "--fast-decode"]) as server:
        sock = context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(server.endpoint)
        for name, data, expected_draft in (("big", big, draft), ("small", small, None)):
            sock.send_multipart([msgpack.packb({"id": name, "encoding": "jpeg", "topk": 10}), data])
            assert sock.poll(20_000), "no reply from the server"
            reply = msgpack.unpackb(sock.recv_multipart()[-1], raw=False)
            assert reply["ok"], reply
            expected = _probs(tiny_onnx, data, expected_draft)
            got = np.zeros_like(expected)
            for entry in reply["topk"]:
                got[entry["class"]] = entry["prob"]
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
        assert not np.allclose(_probs(tiny_onnx, big, draft), _probs(tiny_onnx, big, None), rtol=1e-4, atol=1e-6)
        sock.close()
    context.destroy(linger=0)
