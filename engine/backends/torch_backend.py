"""torch backend: a zoo model (or any ``nn.Module``) on the CPU or a CUDA GPU.

On CUDA it offers what makes a GPU fast for fixed-shape classifiers: ``channels_last``
memory layout, fp16/bf16 autocast, CUDA graphs captured once per batch size (a replay
launches the whole network at once, no per-layer Python; a smaller batch replays the
smallest captured graph that holds it, zero-padded), optional ``torch.compile``, one CUDA
stream per backend (so instances in one process overlap their copies and kernels), and
``run_uint8``: the host sends the uint8 crop (a quarter of the bytes of float32 over
PCIe) and the GPU does the to-float and normalize step.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from engine.backends.base import Backend
from engine.data.dataconfig import DataConfig

PRECISIONS = ("fp32", "fp16", "bf16")
_CAPTURE_LOCK = threading.Lock()


@dataclass
class _CapturedGraph:
    """A CUDA graph with its static device input and output tensors."""

    cuda_graph: object
    device_input: object
    outputs: list


class TorchBackend(Backend):
    """A torch module on ``device`` ("cpu", "cuda" or "cuda:N").

    ``module=`` is the ``nn.Module`` to run, ``data_config=`` its preprocessing and ``label``
    the name ``describe()`` reports. This backend builds no model itself (runtimes do not
    depend on the model registry): :func:`engine.pipeline.model_backend.open_model_backend`
    builds the zoo module a model-info JSON names.

    Options: ``precision`` fp32 | fp16 | bf16 (autocast; fp16 needs CUDA),
    ``channels_last`` (default True), ``cuda_graphs`` (CUDA only: one graph per batch
    size, captured on first use), ``compile`` (``torch.compile``).
    ``threads`` sets ``torch.set_num_threads`` on the CPU, which is process-wide.
    """

    def __init__(
        self,
        *,
        device: str = "cpu",
        threads: int = 1,
        module=None,
        data_config: DataConfig | None = None,
        label: str | None = None,
        precision: str = "fp32",
        channels_last: bool = True,
        cuda_graphs: bool = False,
        compile: bool = False,
        input_name: str = "input",
        output_names: list[str] | None = None,
    ):
        import torch

        base = device.partition(":")[0]
        if base not in ("cpu", "cuda"):
            raise ValueError(f"torch backend: device {device!r} must be cpu, cuda or cuda:N")
        if base == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"torch backend: device {device!r} requested but torch sees no CUDA GPU")
        if precision not in PRECISIONS:
            raise ValueError(f"torch backend: precision {precision!r}, expected one of {PRECISIONS}")
        if precision == "fp16" and base == "cpu":
            raise ValueError("torch backend: fp16 needs a CUDA device; use fp32 or bf16 on the CPU")
        if cuda_graphs and base == "cpu":
            raise ValueError("torch backend: cuda_graphs needs a CUDA device")
        if threads < 1:
            raise ValueError(f"threads {threads}: must be >= 1")

        if module is None:
            raise ValueError("torch backend: give module= (an nn.Module); open_model_backend builds "
                             "one from a model file")
        self.data_config = data_config or DataConfig()
        self.model_label = label or type(module).__name__

        self.torch = torch
        self.device = device
        self.threads = threads
        self._dev = torch.device(device)
        if base == "cpu":
            torch.set_num_threads(threads)
        self.channels_last = channels_last
        self.precision = precision
        self._autocast_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)

        module = module.eval().to(self._dev)
        if channels_last:
            module = module.to(memory_format=torch.channels_last)
        self._param_mb = sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers())) / 2**20
        self._use_graphs = cuda_graphs and not compile
        if compile:
            module = torch.compile(module, mode="reduce-overhead" if cuda_graphs else "default")
        self.module = module
        self._graphs: dict = {}
        self._stream = torch.cuda.Stream(self._dev) if base == "cuda" else None

        self.name = f"torch-{base}"
        self.input_name = input_name
        self.output_names = list(output_names or ["output"])
        self.input_shape = tuple(self.data_config.input_size)
        std = np.asarray(self.data_config.std, np.float32)
        mean = np.asarray(self.data_config.mean, np.float32)
        self._u8_scale = torch.from_numpy(1.0 / (255.0 * std)).view(1, 3, 1, 1).to(self._dev)
        self._u8_bias = torch.from_numpy(-mean / std).view(1, 3, 1, 1).to(self._dev)

    # -- forward functions (the parts a CUDA graph captures) --------------------------
    def _forward(self, x):
        torch = self.torch
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            if self._autocast_dtype is not None:
                with torch.autocast(self._dev.type, dtype=self._autocast_dtype):
                    out = self.module(x)
            else:
                out = self.module(x)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return [o.float() for o in outs]

    def _forward_uint8(self, x_u8):
        x = x_u8.float() * self._u8_scale + self._u8_bias
        return self._forward(x)

    def _call(self, fn, kind: str, host: np.ndarray) -> list[np.ndarray]:
        torch = self.torch
        x = torch.from_numpy(host)
        if self._stream is None:
            with torch.inference_mode():
                return [o.numpy() for o in fn(x)]
        # A batch gathered into input_buffer() is page-locked: its copy to the card is a DMA
        # with no staging copy. The outputs' .cpu() waits for the stream, so the buffer is
        # free again when this returns.
        with torch.cuda.stream(self._stream):
            if not self._use_graphs:
                with torch.inference_mode():
                    outs = fn(x.to(self._dev, non_blocking=True))
                return [o.cpu().numpy() for o in outs]
            n = host.shape[0]
            graph = self._graph_for(fn, kind, host)
            graph.device_input[:n].copy_(x, non_blocking=True)
            graph.cuda_graph.replay()
            return [o[:n].cpu().numpy() for o in graph.outputs]

    def _graph_for(self, fn, kind: str, host: np.ndarray) -> _CapturedGraph:
        """The smallest graph of this input kind that holds the batch, captured if none does."""
        n, sample_shape = host.shape[0], host.shape[1:]
        fits = [g for (k, shape, size), g in self._graphs.items() if k == kind and shape == sample_shape and size >= n]
        if fits:
            return min(fits, key=lambda g: g.device_input.shape[0])
        graph = self._capture(fn, host)
        self._graphs[(kind, sample_shape, n)] = graph
        return graph

    def _capture(self, fn, example: np.ndarray) -> _CapturedGraph:
        """Capture ``fn`` on a static device input of ``example``'s shape and dtype.

        One capture at a time per process, in thread-local error mode: instances in other
        threads keep running their own streams (copies, replays) meanwhile.
        """
        torch = self.torch
        device_input = torch.from_numpy(example).to(self._dev)
        with _CAPTURE_LOCK:
            with torch.inference_mode():
                for _ in range(3):  # let cuDNN pick its algorithms before capture
                    fn(device_input)
            self._stream.synchronize()
            cuda_graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(cuda_graph, stream=self._stream, capture_error_mode="thread_local"), \
                    torch.inference_mode():
                outputs = fn(device_input)
        return _CapturedGraph(cuda_graph, device_input, outputs)

    def input_buffer(self, batch: int, dtype=np.float32) -> np.ndarray:
        """A page-locked ``(batch, C, H, W)`` host array on CUDA, a plain one on the CPU."""
        if self._stream is None:
            return super().input_buffer(batch, dtype)
        torch = self.torch
        torch_dtype = {np.dtype(np.float32): torch.float32, np.dtype(np.uint8): torch.uint8}[np.dtype(dtype)]
        return torch.empty((batch, *self.input_shape), dtype=torch_dtype, pin_memory=True).numpy()

    # -- the Backend interface --------------------------------------------------------
    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        batch = self.check_batch(batch)
        return self._call(self._forward, "f32", batch)

    def run_uint8(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run a uint8 crop batch, ``(N, 3, H, W)`` or ``(N, H, W, 3)``, not yet normalized.

        The to-float and ``(x / 255 - mean) / std`` happen on the device with the model's
        data config, so only uint8 bytes cross PCIe. An NHWC batch becomes a
        channels_last view without a copy.
        """
        if not isinstance(batch, np.ndarray) or batch.dtype != np.uint8 or batch.ndim != 4:
            raise ValueError(f"{self.name}: run_uint8 needs a 4-d uint8 numpy array, got "
                             f"{getattr(batch, 'dtype', type(batch).__name__)} {getattr(batch, 'shape', '')}")
        c, h, w = self.input_shape
        batch = np.ascontiguousarray(batch)
        if batch.shape[1:] == (c, h, w):
            return self._call(self._forward_uint8, "u8-nchw", batch)
        if batch.shape[1:] == (h, w, c):
            return self._call(self._forward_uint8_nhwc, "u8-nhwc", batch)
        raise ValueError(f"{self.name}: uint8 batch shape {batch.shape} matches neither "
                         f"(N, {c}, {h}, {w}) nor (N, {h}, {w}, {c})")

    def _forward_uint8_nhwc(self, x_u8):
        return self._forward_uint8(x_u8.permute(0, 3, 1, 2))

    def describe(self) -> dict:
        torch = self.torch
        if self._dev.type == "cuda":
            device_name = torch.cuda.get_device_name(self._dev)
            memory = torch.cuda.memory_allocated(self._dev) / 2**20
        else:
            from engine.backends.devices import cpu_model

            device_name, memory = cpu_model(), self._param_mb
        return {
            "backend": self.name,
            "device": self.device,
            "device_name": device_name,
            "providers": [f"torch {torch.__version__}"],
            "threads": self.threads if self._dev.type == "cpu" else None,
            "memory_mb": round(memory, 3),
            "precision": self.precision,
            "model": self.model_label,
            "channels_last": self.channels_last,
            "cuda_graphs": self._use_graphs,
        }

    def close(self) -> None:
        self._graphs.clear()
        self.module = None
        if self._dev.type == "cuda":
            self.torch.cuda.empty_cache()
