"""Open a backend for a model file, whichever runtime it is.

onnxruntime reads the ONNX file itself; the torch backend runs an ``nn.Module``, so for it
the zoo model that the file's model-info JSON names is built here (the runtimes do not
depend on the model registry; the pipeline, which uses both, joins them).
"""
from __future__ import annotations

from engine.backends import Backend, open_backend


def open_model_backend(kind: str, model_path, *, device: str = "cpu", threads: int = 1, **options) -> Backend:
    """``open_backend`` for ``model_path``; for ``kind="torch"`` the module is the zoo model
    that ``model_path``'s model-info JSON names (unless ``module=`` is given)."""
    if kind != "torch" or "module" in options:
        return open_backend(kind, None if kind == "torch" else model_path, device=device, threads=threads,
                            **options)
    from engine.models.zoo import create_from_model_info

    model, info = create_from_model_info(model_path)
    return open_backend("torch", device=device, threads=threads, module=model.module,
                        data_config=model.data_config, label=model.name, input_name=info.input_name,
                        output_names=info.output_names, **options)
