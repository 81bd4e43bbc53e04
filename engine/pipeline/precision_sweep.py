"""The ``--auto`` / ``engine.tune`` sweep over backends and precisions, within what the user allows.

    result = auto_sweep(model_path, "cpu", None, budget_s=30, options={}, max_loss=1.0, items=items)

A *candidate* is a backend and the precision it runs the model at. Which candidates a
sweep may try is the user's call, never the sweep's: a lower precision changes the
answers, so without ``--precision`` or ``--max-accuracy-loss`` only full precision (the
file's own: fp32, or the precision ``engine.build`` gave it) is tried. ``--precision``
names the precisions allowed; ``--max-accuracy-loss PCT`` allows a lower one only where
its measured top-1 disagreement with onnxruntime fp32, on the run's own items, is at most
PCT percent. Each allowed candidate then gets its instances x threads x batch sweep
(:func:`engine.pipeline.autotune.autotune`) on an equal share of the budget, and the
fastest wins.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

import numpy as np

from engine.data.arg_checks import UsageError
from engine.data.extras import installed, require

# What each backend can run a float (fp32) ONNX file at, on the CPU and on CUDA.
FLOAT_PRECISIONS = {"ort": ("fp32",), "openvino": ("fp32", "bf16"), "torch": ("fp32", "bf16", "fp16")}
# Images the accuracy-loss measurement runs (the first items of the run that decode).
LOSS_SAMPLE = 64


@dataclass(frozen=True)
class Candidate:
    backend: str
    precision: str  # what runs: fp32/bf16/fp16, or the file's own (int8, fp16) for a built file

    def options(self) -> dict:
        """The backend options that make it run at ``precision``: none for onnxruntime and for a
        built file's own int8/fp16, the precision itself otherwise (never left to a default)."""
        if self.backend == "ort" or self.precision not in FLOAT_PRECISIONS[self.backend]:
            return {}
        return {"precision": self.precision}

    def label(self) -> str:
        return f"{self.backend} {self.precision}"


@dataclass
class SweepResult:
    candidate: Candidate
    setting: dict  # instances, threads, batch, images_per_s
    options: dict = field(default_factory=dict)  # the backend options that run the candidate
    table: list[dict] = field(default_factory=list)  # one row per candidate: rate, loss or why refused
    settings: list[dict] = field(default_factory=list)  # every setting measured, with its candidate

    def picked(self) -> str:
        """The line that says what the sweep picked, and what else it measured or left out."""
        s = self.setting
        others = "; ".join(
            f"{r['backend']} {r['precision']} " + (f"{r['images_per_s']:.1f} img/s" if "images_per_s" in r else
                                                   f"left out: top-1 disagreement {r['top1_disagreement_pct']}%")
            for r in self.table if (r["backend"], r["precision"]) != (self.candidate.backend, self.candidate.precision))
        return (f"--backend {self.candidate.backend} --precision {self.candidate.precision} -i {s['instances']} "
                f"--threads {s['threads']} -b {s['batch']} ({s['images_per_s']:.1f} img/s measured on the model "
                f"alone{'; also measured: ' + others if others else ''})")


def openvino_installed() -> bool:
    return installed("openvino")


def allowed_candidates(backend: str | None, precisions: list[str] | None, max_loss: float | None,
                       file_precision: str, device: str = "cpu") -> list[Candidate]:
    """The candidates the user allows: ``backend`` (None: onnxruntime, and OpenVINO where
    installed, on the CPU), at ``precisions`` (None: full precision, plus every lower one
    the backends offer when ``max_loss`` is given). A built int8 or fp16 file runs at its
    own precision only."""
    on_gpu = device.startswith("cuda")
    if backend is not None:
        backends = [backend]
    else:
        backends = ["ort"] + (["openvino"] if openvino_installed() and not on_gpu else [])
    if file_precision not in ("fp32", "bf16"):
        return [Candidate(b, file_precision) for b in backends if b != "torch"]
    if file_precision == "bf16":  # a bf16 deploy folder: onnxruntime refuses it
        backends = [b for b in backends if b != "ort"]
    wanted = precisions or (["fp32", "bf16", "fp16"] if max_loss is not None else [file_precision])
    found = [Candidate(b, p) for b in backends for p in FLOAT_PRECISIONS[b] if p in wanted
             and not (p == "fp16" and not on_gpu) and not (p == "bf16" and b == "ort")]
    if not found:
        raise ValueError(f"--precision {' '.join(wanted)}: no backend among {', '.join(backends)} runs "
                         f"{'it' if len(wanted) == 1 else 'them'} on {device} (onnxruntime: fp32; openvino: "
                         "fp32, bf16; torch: fp32, bf16, fp16 on CUDA)")
    return found


def sample_batch(items: list[str], data_config, count: int = LOSS_SAMPLE) -> np.ndarray:
    """Up to ``count`` of ``items`` preprocessed as the engine does (those that fail to decode skipped)."""
    from engine.data.decode import DecodeError, load_item
    from engine.models.preprocessing import Preprocessing

    preprocessing = Preprocessing(data_config)
    rows = []
    for item in items:
        if len(rows) == count:
            break
        try:
            image = load_item(item)
        except (DecodeError, OSError, ValueError):
            continue
        rows.append(preprocessing(image, np.empty(tuple(data_config.input_size), np.float32)))
    if not rows:
        raise ValueError("--max-accuracy-loss: none of the items decodes, nothing to measure the loss on")
    return np.stack(rows)


def _outputs(backend, batch: np.ndarray, step: int = 8) -> np.ndarray:
    return np.concatenate([backend.run(batch[i:i + step])[0] for i in range(0, len(batch), step)])


def accuracy_loss(model_path, candidate: Candidate, batch: np.ndarray, reference: np.ndarray, threads: int,
                  device: str = "cpu") -> dict:
    """Top-1 disagreement (percent) and output SNR (dB) of ``candidate`` against ``reference``."""
    from engine.pipeline.model_backend import open_model_backend

    backend = open_model_backend(candidate.backend, model_path, device=device, threads=threads,
                                 **candidate.options())
    try:
        out = _outputs(backend, batch)
    finally:
        backend.close()
    noise = float(np.square(reference.astype(np.float64) - out).sum())
    snr = float("inf") if noise == 0 else 10 * np.log10(float(np.square(reference.astype(np.float64)).sum()) / noise)
    disagree = 100.0 * float(np.mean(reference.argmax(1) != out.argmax(1)))
    return {"top1_disagreement_pct": round(disagree, 3), "output_snr_db": round(snr, 2), "images": len(batch)}


def within_loss(model_path, allowed: list[Candidate], file_precision: str, max_loss: float | None,
                batch: np.ndarray | None, threads: int, device: str = "cpu") -> tuple[list[Candidate], list[dict]]:
    """The candidates whose measured loss is at most ``max_loss`` (fp32 always is), and a row
    per lower-precision candidate saying what was measured. The reference is onnxruntime
    fp32 (OpenVINO fp32 for a bf16 deploy folder, which onnxruntime refuses)."""
    lower = [c for c in allowed if c.precision != "fp32"]
    if max_loss is None or file_precision not in ("fp32", "bf16") or not lower:
        return allowed, []
    from engine.backends import open_backend

    ref_backend = (open_backend("ort", model_path, threads=threads) if file_precision != "bf16" else
                   open_backend("openvino", model_path, threads=threads, precision="fp32"))
    try:
        reference = _outputs(ref_backend, batch)
    finally:
        ref_backend.close()
    kept, rows = [c for c in allowed if c not in lower], []
    for candidate in lower:
        loss = accuracy_loss(model_path, candidate, batch, reference, threads, device)
        ok = loss["top1_disagreement_pct"] <= max_loss
        rows.append({**asdict(candidate), **loss, "allowed": ok})
        if ok:
            kept.append(candidate)
    return kept, rows


def sweep(model_path, device: str, budget_s: float, candidates: list[Candidate], *,
          grid: dict | None = None, exhaustive: bool = False, verbose: bool = False,
          loss_rows: list[dict] | None = None) -> SweepResult:
    """Each candidate's settings sweep on an equal share of ``budget_s``; the fastest wins."""
    from engine.pipeline.autotune import autotune

    losses = {(r["backend"], r["precision"]): r for r in loss_rows or []}
    table, settings, best = [], [], None
    for candidate in candidates:
        if verbose:
            print(f"== {candidate.label()}")
        setting, measured = autotune(model_path, device, grid, budget_s / len(candidates), kind=candidate.backend,
                                     exhaustive=exhaustive, verbose=verbose, **candidate.options())
        settings += [{**asdict(candidate), **row} for row in measured]
        row = {**asdict(candidate), **setting}
        loss = losses.get((candidate.backend, candidate.precision))
        if loss:
            row.update({k: loss[k] for k in ("top1_disagreement_pct", "output_snr_db", "images")})
        table.append(row)
        if best is None or setting["images_per_s"] > best.setting["images_per_s"]:
            best = SweepResult(candidate, setting, candidate.options())
    best.table = table + [r for r in loss_rows or [] if not r["allowed"]]
    best.settings = settings
    return best


def file_precision_of(model_path) -> str:
    """The precision engine.build gave ``model_path`` (its model-info JSON says), else fp32."""
    from engine.data.dataconfig import ModelInfo

    info_path = ModelInfo.path_for(model_path)
    info = ModelInfo.load(info_path) if info_path.is_file() else None
    return str(info.extra.get("precision") or "fp32") if info else "fp32"


def check_precision_options(backend: str | None, precision: str | None, auto: bool, max_loss: float | None) -> None:
    """engine.run's --backend/--precision/--max-accuracy-loss, refused before any work (one line)."""
    if backend == "openvino":
        require("openvino", "--backend openvino")
    if max_loss is not None and not auto:
        raise UsageError("--max-accuracy-loss applies to --auto (the sweep that may pick a lower precision)")
    if max_loss is not None and (max_loss < 0 or max_loss > 100):
        raise UsageError(f"--max-accuracy-loss {max_loss}: a percentage of top-1 answers, 0 to 100")
    if max_loss is not None and precision is not None:
        raise UsageError("--max-accuracy-loss and --precision: give one (a loss bound, or the precision itself)")
    if precision is None or (auto and backend is None):
        return
    if backend in (None, "ort"):
        raise UsageError(f"--precision {precision}: onnxruntime runs an ONNX model at the precision engine.build "
                         "gave it (fp32, fp16 or int8); use --backend openvino (fp32, bf16) or --backend torch")
    if backend == "openvino" and precision not in FLOAT_PRECISIONS["openvino"]:
        raise UsageError(f"--precision {precision}: --backend openvino runs fp32 or bf16")


def items_at(path: str | None) -> list[str] | None:
    """The items of ``path``, a datalist or an image folder (what the accuracy loss is measured on); None for None."""
    if path is None:
        return None
    from engine.data.datalist import read_datalist, scan_images

    return scan_images(path) if os.path.isdir(path) else read_datalist(path)


def auto_sweep(model_path, device: str, backend: str | None, budget_s: float, options: dict, *,
               precisions: list[str] | None = None, max_loss: float | None = None, items: list[str] | None = None,
               data_config=None, grid: dict | None = None, exhaustive: bool = False,
               verbose: bool = False) -> SweepResult:
    """The whole --auto sweep: the candidates allowed (``precisions``, else ``options["precision"]``;
    a loss bound measured on ``items``), then each one's settings; ``options`` beside the
    precision (torch's cuda_graphs, compile) are kept in the result's options."""
    options = dict(options)
    precision = options.pop("precision", None)
    precisions = precisions or ([precision] if precision else None)
    file_precision = file_precision_of(model_path)
    allowed = allowed_candidates(backend, precisions, max_loss, file_precision, device)
    if data_config is None:
        from engine.data.dataconfig import ModelInfo

        data_config = ModelInfo.load(ModelInfo.path_for(model_path)).data_config if items else None
    batch = sample_batch(items, data_config) if max_loss is not None and items else None
    if max_loss is not None and batch is None:
        raise ValueError("--max-accuracy-loss: no items to measure the loss on")
    threads = max(1, os.cpu_count() or 1)
    kept, loss_rows = within_loss(model_path, allowed, file_precision, max_loss, batch, threads, device)
    result = sweep(model_path, device, budget_s, kept, grid=grid, exhaustive=exhaustive,
                   verbose=verbose, loss_rows=loss_rows)
    result.options = {**options, **result.options}
    return result

