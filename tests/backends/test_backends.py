"""Backends: real onnxruntime sessions and torch modules on a tiny seeded network."""
from __future__ import annotations

import threading

import numpy as np
import pytest
from tinynet import tiny_torch_module, write_tiny_onnx

from engine.backends import available_devices, open_backend, resolve_device
from engine.data.dataconfig import DataConfig

SIZE = 32
CONFIG = DataConfig(input_size=(3, SIZE, SIZE), resize=36, crop=SIZE, num_classes=10)


def has_cuda() -> bool:
    return "cuda" in available_devices()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_onnx(tmp_path_factory.mktemp("tiny") / "tinynet.onnx", size=SIZE)


def batch_of(n, seed=1):
    return np.random.default_rng(seed).standard_normal((n, 3, SIZE, SIZE)).astype(np.float32)


def test_ort_cpu_runs_and_matches_torch(tiny):
    backend = open_backend("ort", tiny, device="cpu", threads=1)
    assert backend.name == "ort-cpu"
    assert backend.input_name == "input" and backend.output_names == ["output"]
    assert backend.input_shape == (3, SIZE, SIZE)
    x = batch_of(4)
    (logits,) = backend.run(x)
    assert logits.shape == (4, 10) and logits.dtype == np.float32
    import torch

    with torch.no_grad():
        expected = tiny_torch_module()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)
    backend.close()


def test_ort_describe_reports_device_threads_precision(tiny):
    with open_backend("ort", tiny, device="auto", threads=2) as backend:
        d = backend.describe()
    assert d["backend"] in ("ort-cpu", "ort-cuda")
    assert d["precision"] == "fp32"
    assert "CPUExecutionProvider" in d["providers"]
    if d["backend"] == "ort-cpu":
        assert d["threads"] == 2 and d["memory_mb"] is not None and d["device_name"]


def test_fixed_batch_model_runs_any_batch_size(tmp_path, tiny):
    fixed = write_tiny_onnx(tmp_path / "fixed.onnx", size=SIZE, batch=1)
    x = batch_of(3)
    (got,) = open_backend("ort", fixed).run(x)
    (want,) = open_backend("ort", tiny).run(x)
    assert got.shape == (3, 10)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_bad_batches_are_refused_with_the_reason(tiny):
    backend = open_backend("ort", tiny)
    with pytest.raises(ValueError, match="shape"):
        backend.run(np.zeros((2, 3, SIZE + 1, SIZE), np.float32))
    with pytest.raises(ValueError, match="float32"):
        backend.run(np.zeros((2, 3, SIZE, SIZE), np.float64))
    with pytest.raises(ValueError, match="empty"):
        backend.run(np.zeros((0, 3, SIZE, SIZE), np.float32))


def test_missing_model_and_unknown_kind(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.onnx"):
        open_backend("ort", tmp_path / "nope.onnx")
    with pytest.raises(ValueError, match="backend 'tf'"):
        open_backend("tf", tmp_path / "nope.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    with pytest.raises(RuntimeError, match="garbage.onnx"):
        open_backend("ort", garbage)


def test_ort_profile_gives_kernel_seconds_per_operator_type(tmp_path, tiny):
    with open_backend("ort", tiny, profile=tmp_path / "tiny_profile") as backend:
        for _ in range(3):
            backend.run(batch_of(4))
        seconds = backend.kernel_seconds()
    assert list(tmp_path.glob("tiny_profile*.json"))
    convolutions = {op for op in seconds if op.endswith("Conv")}
    assert convolutions, seconds
    assert all(t > 0 for t in seconds.values())
    with open_backend("ort", tiny) as backend:
        with pytest.raises(RuntimeError, match="profile=PREFIX"):
            backend.kernel_seconds()


def test_instances_in_threads_give_the_same_answers(tiny):
    """Separate sessions run concurrently in threads (onnxruntime releases the GIL)."""
    x = batch_of(8, seed=3)
    (want,) = open_backend("ort", tiny).run(x)
    backends = [open_backend("ort", tiny, spinning=False) for _ in range(3)]
    results = [None] * 3

    def work(i):
        for _ in range(5):
            results[i] = backends[i].run(x)[0]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        np.testing.assert_array_equal(r, want)


def test_device_resolution():
    assert available_devices()[0] == "cpu"
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if has_cuda() else "cpu")
    with pytest.raises(ValueError, match="device 'tpu'"):
        resolve_device("tpu")
    if not has_cuda():
        with pytest.raises(RuntimeError, match="no usable CUDA GPU"):
            resolve_device("cuda")
        with pytest.raises(RuntimeError, match="no usable CUDA GPU"):
            open_backend("ort", "unused.onnx", device="cuda")


@pytest.mark.parametrize("provider", ["cuda", "tensorrt"])
def test_ort_gpu_session_that_falls_back_to_the_cpu_is_an_error(tiny, monkeypatch, provider):
    """onnxruntime-gpu without the CUDA libraries (or TensorRT's) starts the session on the
    next provider with only a log line; here a CPU build told the GPU providers exist does
    the same, and the backend must refuse rather than run a --device cuda job on the CPU."""
    import onnxruntime as ort

    from engine.backends.ort import OrtBackend

    available = ort.get_available_providers()
    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", *available])
    expected = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}[provider]
    with pytest.warns(UserWarning, match="not in available provider names"):
        with pytest.raises(RuntimeError, match=f"could not start {expected} and ran CPUExecutionProvider instead"):
            OrtBackend(tiny, device="cuda", provider=provider)


def test_torch_cpu_matches_ort_and_uint8_path(tiny):
    torch_backend = open_backend("torch", device="cpu", threads=1, module=tiny_torch_module(), data_config=CONFIG)
    assert torch_backend.name == "torch-cpu"
    x = batch_of(2, seed=5)
    (got,) = torch_backend.run(x)
    (want,) = open_backend("ort", tiny).run(x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)

    crops = np.random.default_rng(7).integers(0, 256, (2, 3, SIZE, SIZE), dtype=np.uint8)
    mean = np.asarray(CONFIG.mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(CONFIG.std, np.float32).reshape(1, 3, 1, 1)
    normalized = ((crops.astype(np.float32) / 255 - mean) / std).astype(np.float32)
    (from_float,) = torch_backend.run(normalized)
    (from_nchw,) = torch_backend.run_uint8(crops)
    (from_nhwc,) = torch_backend.run_uint8(np.ascontiguousarray(crops.transpose(0, 2, 3, 1)))
    np.testing.assert_allclose(from_nchw, from_float, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(from_nhwc, from_float, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="uint8"):
        torch_backend.run_uint8(normalized)
    d = torch_backend.describe()
    assert d["precision"] == "fp32" and d["memory_mb"] > 0


def test_torch_refuses_impossible_settings():
    with pytest.raises(ValueError, match="fp16 needs a CUDA"):
        open_backend("torch", module=tiny_torch_module(), data_config=CONFIG, precision="fp16")
    with pytest.raises(ValueError, match="precision 'int4'"):
        open_backend("torch", module=tiny_torch_module(), data_config=CONFIG, precision="int4")
    with pytest.raises(ValueError, match="give module="):
        open_backend("torch")


@pytest.mark.slow
def test_torch_compile_matches_eager():
    x = batch_of(4, seed=3)
    (eager,) = open_backend("torch", module=tiny_torch_module(), data_config=CONFIG).run(x)
    compiled = open_backend("torch", module=tiny_torch_module(), data_config=CONFIG, compile=True)
    for _ in range(2):
        np.testing.assert_allclose(compiled.run(x)[0], eager, rtol=1e-4, atol=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not has_cuda(), reason="no CUDA GPU")
def test_torch_cuda_graphs_fp16_match_cpu(tiny):
    x = batch_of(4, seed=9)
    (want,) = open_backend("ort", tiny).run(x)
    gpu = open_backend("torch", device="cuda", module=tiny_torch_module(), data_config=CONFIG,
                       precision="fp16", cuda_graphs=True)
    for _ in range(2):  # first call captures, second replays
        (got,) = gpu.run(x)
        np.testing.assert_allclose(got, want, rtol=2e-2, atol=2e-2)
    (part,) = gpu.run(x[:3])  # replays the batch-4 graph, zero-padded
    np.testing.assert_allclose(part, want[:3], rtol=2e-2, atol=2e-2)
    assert len(gpu._graphs) == 1
    assert gpu.describe()["device_name"] and gpu.describe()["cuda_graphs"]


@pytest.mark.gpu
@pytest.mark.skipif(not has_cuda(), reason="no CUDA GPU")
def test_torch_cuda_uint8_input_in_two_threads_matches_cpu():
    """Two instances (one CUDA stream each, graphs captured concurrently) run uint8 crops
    at once; every answer is its own input's, the same each time, and matches the CPU's
    float32 result within TF32 convolution error."""
    rng = np.random.default_rng(5)
    crops = [rng.integers(0, 256, (4, 3, SIZE, SIZE), dtype=np.uint8) for _ in range(2)]
    cpu = open_backend("torch", module=tiny_torch_module(), data_config=CONFIG)
    mean = np.asarray(CONFIG.mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(CONFIG.std, np.float32).reshape(1, 3, 1, 1)
    want = [cpu.run(((c / 255.0 - mean) / std).astype(np.float32))[0] for c in crops]
    gpus = [open_backend("torch", device="cuda", module=tiny_torch_module(), data_config=CONFIG,
                         cuda_graphs=True) for _ in range(2)]
    got = [[] for _ in gpus]

    def work(i):
        for _ in range(20):
            got[i].append(gpus[i].run_uint8(crops[i])[0])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(2):
        assert len(got[i]) == 20
        for g in got[i]:
            np.testing.assert_array_equal(g, got[i][0])
        np.testing.assert_allclose(got[i][0], want[i], rtol=1e-2, atol=1e-2)
    assert np.abs(want[0] - want[1]).max() > 0.5  # the two inputs' answers are far apart


@pytest.mark.gpu
@pytest.mark.skipif("cuda" not in available_devices("ort"), reason="no onnxruntime CUDA provider and GPU")
def test_ort_cuda_matches_cpu(tiny):
    x = batch_of(4, seed=11)
    (want,) = open_backend("ort", tiny).run(x)
    (got,) = open_backend("ort", tiny, device="cuda").run(x)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)


def test_torch_backend_builds_the_zoo_model_named_by_model_info(tmp_path):
    """The model-info JSON beside an ONNX path names the zoo model (here the trained
    EfficientNet-Lite0); the torch backend builds it and classifies a real photo."""
    from photos import write_photo

    from engine.builder.calibration import preprocess_item
    from engine.data.dataconfig import ModelInfo

    onnx_path = tmp_path / "efficientnet_lite0_224.onnx"
    ModelInfo(name="efficientnet_lite0", library="efficientnet_lite_pytorch", model_file=onnx_path.name,
              weights={}).save(ModelInfo.path_for(onnx_path))
    from engine.pipeline.model_backend import open_model_backend

    backend = open_model_backend("torch", onnx_path, threads=2)
    assert backend.describe()["model"] == "efficientnet_lite0"
    config = backend.data_config
    cat = preprocess_item(str(write_photo(tmp_path / "chelsea.jpg", "chelsea")), config)
    (logits,) = backend.run(cat[None])
    assert logits.shape == (1, 1000)
    assert 281 <= int(logits.argmax()) <= 285  # one of ImageNet's domestic cat classes
