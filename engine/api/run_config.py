"""From an options record and a resolved model to the pipeline's :class:`RunConfig`: the
device resolved, the default instances for it, and ``-i``/``--threads``/``-b`` replaced by
the ``--auto`` sweep's pick."""
from __future__ import annotations

import os

from engine.api.options import EngineOptions
from engine.backends import resolve_device
from engine.data.dataconfig import ModelInfo
from engine.data.labels import imagenet_class_names
from engine.models.resolve import backend_for
from engine.pipeline.config import RunConfig
from engine.pipeline.run_options import autotuned, backend_options, normalize_on


def build_run_config(options: EngineOptions, model_path: str, info: ModelInfo, *, iterations: int = 1,
                     warmup: int | None = None, output_dtype: str = "float32", quiet: bool = True,
                     loss_items: list[str] | None = None) -> RunConfig:
    """``loss_items``: what ``--auto`` measures a lower precision's accuracy loss on."""
    backend = backend_for(info, options.backend)
    device = resolve_device(options.device, backend)
    instances = options.instances or (3 if device.startswith("cuda") else 1)
    threads, batch = options.threads, options.batch_size
    backend_opts = backend_options(options.precision, options.cuda_graphs, options.compile)
    if options.auto:
        best = autotuned(model_path, device, options.backend or (None if backend == "ort" else backend),
                         options.auto_budget, backend_opts, max_loss=options.max_accuracy_loss,
                         data_config=info.data_config, items=loss_items)
        instances, threads, batch = best["instances"], best["threads"], best["batch"]
        backend, backend_opts = best["backend"], best["backend_options"]
    num_classes = info.data_config.num_classes
    return RunConfig(
        model_path=model_path, data_config=info.data_config,
        class_names=info.class_names or (imagenet_class_names() if num_classes == 1000 else None),
        model_label=info.extra.get("weights_label", "weights not recorded in the model info"),
        backend=backend, device=device, backend_options=backend_opts,
        normalize_on=normalize_on(options.normalize_on, backend, device, info.data_config),
        instances=instances, processes=options.processes, batch=batch,
        threads=threads or max(1, (os.cpu_count() or 1) // instances),
        workers=options.workers, topk=options.topk, iterations=iterations, warmup=warmup,
        slots=options.slots, batch_delay_ms=options.batch_delay_ms, transport=options.transport,
        tcp_host=options.tcp_host, tcp_port=options.tcp_port, max_pixels=options.max_pixels or None,
        fast_decode=options.fast_decode, output_dtype=output_dtype, quiet=quiet)
