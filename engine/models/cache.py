"""Zoo models exported once: ``--model NAME`` in engine.run and engine.serve.

A model is exported (with its model-info JSON) into
``$XDG_CACHE_HOME/vgg-stream-engine/onnx/<library>-<name>-<weights key>/`` on first use
and reused afterwards; the weights key is the checkpoint's sha256, or the seed of the
random weights. Torch is imported only when an export is actually needed; an unknown
name is refused (:class:`engine.models.catalog.UnknownModelError`) before that.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from engine.data.dataconfig import ModelInfo
from engine.models import catalog

CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vgg-stream-engine" / "onnx"


def cached_onnx(name: str, library: str | None = None, weights: str | None = None, seed: int = 0,
                size: int = 224) -> Path:
    """The ONNX file of zoo model ``name``, exporting it into the cache when missing."""
    from engine.models.checkpoints import sha256_file

    catalog.resolve(name, library)
    if weights is not None and not Path(weights).is_file():
        raise FileNotFoundError(f"weights {weights}: no such file")
    key = f"sha256-{sha256_file(weights)[:16]}" if weights else f"seed{seed}"
    folder = CACHE_DIR / f"{library or 'default'}-{name}-{key}"
    path = folder / f"{name}_{size}.onnx"
    if path.exists() and ModelInfo.path_for(path).exists():
        return path
    from engine.models.onnx_export import export_onnx
    from engine.models.zoo import create

    print(f"engine: exporting {library or 'default'}/{name} to {folder} (first use)", file=sys.stderr, flush=True)
    return Path(export_onnx(create(name, library=library, weights=weights, seed=seed), folder, size=size))
