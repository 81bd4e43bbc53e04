"""Zoo models exported once: ``--model NAME`` in engine.run and engine.serve.

A model is exported (with its model-info JSON) into
``$XDG_CACHE_HOME/vgg-stream-engine/onnx/<library>-<version>-<name>-<weights key>/`` on first
use and reused afterwards; the library's version is in the key because a new version may
build a different network under the same name, and the weights key is the checkpoint's
sha256, or the seed of the random weights. Torch is imported only when an export is
actually needed; an unknown name is refused (:class:`engine.models.catalog.UnknownModelError`)
before that.

A model whose export fails, or whose ONNX file misses the parity check against torch, is
kept as its model-info JSON alone, marked for the torch backend with the reason: the
commands run it there (with a one-line notice each time) instead of refusing it.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from engine.data.dataconfig import ModelInfo
from engine.data.extras import require
from engine.models.library_models import library_version, resolve_model_ref

CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vgg-stream-engine" / "onnx"
TORCH_BACKEND = "torch"
TORCH_REASON_KEY = "torch_backend_reason"  # in a cached model info: why it has no ONNX file


@dataclass(frozen=True)
class CachedModel:
    """What ``--model NAME`` resolved to: an ONNX file, or (``torch_reason`` set) the model-info
    JSON of a model that runs on the torch backend because it could not be exported."""

    path: Path
    torch_reason: str | None = None

    @property
    def backend(self) -> str:
        return TORCH_BACKEND if self.torch_reason else "ort"

    def torch_module(self):
        """The network to run on the torch backend (built as the model info says), None for an ONNX file."""
        if not self.torch_reason:
            return None
        from engine.models.zoo import create_from_model_info

        return create_from_model_info(self.path)[0].module


def cache_folder(name: str, library: str | None, weights: str | None, seed: int) -> Path:
    """The cache folder of one model, library version and weights."""
    from engine.models.checkpoints import sha256_file

    ref = resolve_model_ref(name, library)
    key = f"sha256-{sha256_file(weights)[:16]}" if weights else f"seed{seed}"
    return CACHE_DIR / f"{ref.library}-{library_version(ref.library)}-{ref.name}-{key}"


def _cached(path: Path) -> CachedModel | None:
    info_path = ModelInfo.path_for(path)
    if not info_path.exists():
        return None
    if path.exists():
        return CachedModel(path)
    reason = ModelInfo.load(info_path).extra.get(TORCH_REASON_KEY)
    return CachedModel(info_path, reason) if reason else None


def _one_line(error: Exception, limit: int = 300) -> str:
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return first if len(first) <= limit else first[:limit] + "..."


def _say_torch(name: str, cached: CachedModel) -> CachedModel:
    if cached.torch_reason:
        print(f"engine: {name} runs on the torch backend: {cached.torch_reason}", file=sys.stderr, flush=True)
    return cached


def cached_model(name: str, library: str | None = None, weights: str | None = None, seed: int = 0,
                 size: int | None = None) -> CachedModel:
    """The ONNX file of zoo model ``name`` (exported into the cache when missing), or the
    model-info JSON to run it on the torch backend when it cannot be exported.
    ``size``: the input size (default: the model's own)."""
    require("torch", "--model")
    if weights is not None and not Path(weights).is_file():
        raise FileNotFoundError(f"weights {weights}: no such file")
    folder = cache_folder(name, library, weights, seed)
    from engine.models.onnx_export import ExportError, export_onnx, onnx_path, write_model_info
    from engine.models.zoo import create, get_spec

    spec = get_spec(name, library)
    size = size or spec.data_config.input_size[-1]
    path = onnx_path(folder, spec.name, size)
    found = _cached(path)
    if found is not None:
        return _say_torch(spec.name, found)
    print(f"engine: exporting {spec.library}/{spec.name} to {folder} (first use)", file=sys.stderr, flush=True)
    model = create(name, library=library, weights=weights, seed=seed)
    try:
        return CachedModel(export_onnx(model, folder, size=size))
    except ExportError as e:
        path.unlink(missing_ok=True)
        reason = f"its ONNX export failed or missed the parity check ({_one_line(e)})"
        info_path = write_model_info(model, path, size, extra={TORCH_REASON_KEY: reason})
        return _say_torch(spec.name, CachedModel(info_path, reason))
