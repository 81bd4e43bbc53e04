"""The served model: its data config, class names, and one backend session per instance."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.data.dataconfig import DataConfig, ModelInfo
from engine.kernels import softmax_topk
from engine.models.preprocessing import Preprocessing, announce


def class_names_for(info: ModelInfo | None, num_classes: int) -> list[str]:
    """Names from the model-info JSON, ImageNet's for a 1000-class model, else ``class_<i>``."""
    if info is not None and info.class_names:
        if len(info.class_names) != num_classes:
            raise ValueError(
                f"model info lists {len(info.class_names)} class names for {num_classes} classes"
            )
        return list(info.class_names)
    if num_classes == 1000:
        from engine.data.labels import imagenet_class_names

        return list(imagenet_class_names())
    return [f"class_{i}" for i in range(num_classes)]


BACKENDS = ("ort", "openvino")


def add_backend_arguments(parser) -> None:
    """engine.serve's --backend and --precision (dests ``backend``, ``precision``)."""
    parser.add_argument("--backend", choices=BACKENDS,
                        help="runtime of the ONNX model: ort (onnxruntime, default) or openvino (CPU; the openvino "
                             "extra)")
    parser.add_argument("--precision", choices=("fp32", "bf16"),
                        help="--backend openvino: inference precision (default: the file's own, fp32 for an export)")


class ServedModel:
    """An ONNX model and its preprocessing, opened ``instances`` times on ``device``.

    ``preprocess`` is called from several worker threads at once; the numba kernel
    releases the GIL, so they run in parallel.
    """

    def __init__(self, onnx_path, *, instances: int = 1, threads: int = 1, device: str = "cpu",
                 spinning: bool = False, torch_module=None, backend: str = "ort", precision: str | None = None):
        """``torch_module``: run this ``nn.Module`` on the torch backend instead (a zoo model
        that could not be exported; ``onnx_path`` is then its model-info JSON). ``backend``
        ``openvino`` runs the ONNX file on OpenVINO at ``precision`` (fp32 or bf16; default:
        the file's own)."""
        from engine.backends import open_backend

        if instances < 1:
            raise ValueError(f"instances {instances}: must be >= 1")
        self.path = Path(onnx_path)
        info_path = ModelInfo.path_for(self.path)
        self.info = ModelInfo.load(info_path) if info_path.is_file() else None
        self.config: DataConfig = self.info.data_config if self.info else DataConfig()
        self.name = self.info.name if self.info else self.path.stem
        self.preprocessing = Preprocessing(self.config, self.name)
        announce(self.preprocessing.notice)
        onnx_options = ({"spinning": spinning} if backend == "ort" else
                        {"precision": precision} if precision else {})
        self.backends = [
            open_backend(backend, self.path, device=device, threads=threads, **onnx_options)
            if torch_module is None else
            open_backend("torch", device=device, threads=threads, module=torch_module, data_config=self.config,
                         label=self.name, input_name=self.info.input_name, output_names=self.info.output_names)
            for _ in range(instances)
        ]
        expected = tuple(self.config.input_size)
        self.input_shape = tuple(self.backends[0].input_shape)
        if self.input_shape != expected:
            self.close()
            raise ValueError(
                f"model {self.path}: input {self.input_shape} does not match its data config "
                f"(input_size {expected})"
            )
        probe = self.backends[0].run(np.zeros((1, *self.input_shape), np.float32))[0]
        if probe.ndim != 2:
            self.close()
            raise ValueError(f"model {self.path}: first output has shape {probe.shape}, expected (N, classes)")
        self.num_classes = int(probe.shape[1])
        self.class_names = class_names_for(self.info, self.num_classes)
        self.outputs_probabilities = bool(self.info and self.info.extra.get("softmax"))

    def preprocess(self, image_hwc: np.ndarray, out: np.ndarray) -> np.ndarray:
        """The model's preprocessing (its data config's) into ``out``, a (3, H, W) float32 slot."""
        return self.preprocessing(image_hwc, out)

    def topk(self, outputs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Best ``k`` classes and their probabilities per row (class -1 for non-finite rows).

        Softmax is applied unless the model was exported with its own softmax layer.
        """
        outputs = np.ascontiguousarray(outputs, np.float32)
        if not self.outputs_probabilities:
            return softmax_topk(outputs, k)
        indices = np.argsort(-outputs, axis=1, kind="stable")[:, :k]
        probs = np.take_along_axis(outputs, indices, axis=1)
        indices[~np.isfinite(outputs).all(axis=1)] = -1
        return indices, probs

    def probabilities(self, scores: np.ndarray) -> np.ndarray:
        """One output row as class probabilities (float32): softmax unless the model has its own."""
        scores = np.asarray(scores, np.float32)
        if self.outputs_probabilities:
            return scores
        shifted = np.exp(scores.astype(np.float64) - scores.max())
        return (shifted / shifted.sum()).astype(np.float32)

    def warmup(self, max_batch: int) -> None:
        """Compile the kernels and let every session allocate for the largest batch."""
        resize = self.config.resize
        image = np.zeros((*((resize, resize) if isinstance(resize, int) else resize), 3), np.uint8)
        self.preprocess(image, np.empty(self.input_shape, np.float32))
        for backend in self.backends:
            backend.warmup(max_batch)
            if max_batch > 1:
                backend.warmup(1)

    def runs_on(self) -> str:
        """The backend and the precision it runs the model at, e.g. ``openvino-cpu bf16``."""
        ran = self.backends[0].describe()
        return f"{ran['backend']} {ran['precision']}"

    def triton_runtime(self) -> dict:
        """What Triton's model metadata and configuration say of the runtime: its platform,
        its backend, and the precision it runs at (a configuration parameter)."""
        ran = self.backends[0].describe()
        runtime = ran["backend"].partition("-")[0]
        platform, backend = {"openvino": ("openvino", "openvino"), "torch": ("pytorch_libtorch", "pytorch")}.get(
            runtime, ("onnxruntime_onnx", "onnxruntime"))
        return {"platform": platform, "backend": backend, "precision": ran["precision"]}

    def describe(self) -> dict:
        return {
            "name": self.name,
            "path": str(self.path),
            "num_classes": self.num_classes,
            "input_shape": list(self.input_shape),
            "instances": len(self.backends),
            "backend": self.backends[0].describe(),
        }

    def close(self) -> None:
        for backend in self.backends:
            backend.close()
