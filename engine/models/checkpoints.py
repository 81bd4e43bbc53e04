"""Checkpoint files: reading them safely and fitting them into a built network.

A checkpoint is a ``.pth``/``.pt`` file (read with ``torch.load(weights_only=True)``, so
it cannot run code) or a ``.safetensors`` file. The state dict may be bare or wrapped the
way the libraries save it (``{"state_dict": ...}`` for mmcls and Lightning,
``{"model": ...}`` for timm's and torchvision's training scripts), and its keys may carry
the ``module.`` prefix of DataParallel/DistributedDataParallel.

VGG checkpoints come in three key layouts (timm, torchvision, mmcls). The layout is
detected from the keys, and a checkpoint in one layout loads into a network built by
another: keys are translated through a canonical naming (``conv{k}``, ``bn{k}``,
``fc{1,2,3}``), and timm's fully-connected layers written as 7x7/1x1 convolutions are
reshaped to and from linear weights (same memory order: channel, row, column).

A checkpoint loads entirely or not at all: anything missing, unexpected or mis-shaped
raises :class:`CheckpointMismatch` listing every offending key.
"""
from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

VGG_LAYOUTS = ("timm", "torchvision", "mmcls")
WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module")
# Counters of BatchNorm updates: not used in inference, absent from old checkpoints.
OPTIONAL_SUFFIXES = ("num_batches_tracked",)


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read or does not fit."""


class CheckpointMismatch(CheckpointError):
    def __init__(self, path, target: str, missing, unexpected, mismatched):
        self.missing = sorted(missing)
        self.unexpected = sorted(unexpected)
        self.mismatched = sorted(mismatched)
        lines = [f"checkpoint {path} does not fit {target}; nothing was loaded"]
        if self.missing:
            lines.append(f"  missing keys ({len(self.missing)}): " + ", ".join(self.missing))
        if self.unexpected:
            lines.append(f"  unexpected keys ({len(self.unexpected)}): " + ", ".join(self.unexpected))
        if self.mismatched:
            lines.append(f"  shape-mismatched keys ({len(self.mismatched)}): " + ", ".join(
                f"{k} (checkpoint {tuple(a)}, model {tuple(b)})" for k, a, b in self.mismatched))
        super().__init__("\n".join(lines))


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, unwrapped and without ``module.`` prefixes."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            raw = load_file(str(path), device="cpu")
        else:
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch and safetensors raise many types for a bad file
        raise CheckpointError(f"checkpoint {path}: cannot be read ({type(e).__name__}: {e})") from None
    state = _unwrap(raw, path)
    return _strip_prefix(state, "module.")


def _unwrap(obj, path: Path) -> dict[str, torch.Tensor]:
    while isinstance(obj, Mapping) and not _is_state_dict(obj):
        inner = next((obj[k] for k in WRAPPER_KEYS if k in obj and isinstance(obj[k], Mapping)), None)
        if inner is None:
            raise CheckpointError(
                f"checkpoint {path}: no state dict in it (top-level keys: {sorted(map(str, obj))[:10]})")
        obj = inner
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"checkpoint {path}: holds a {type(obj).__name__}, not a state dict")
    return dict(obj)


def _is_state_dict(obj: Mapping) -> bool:
    return len(obj) > 0 and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _strip_prefix(state: dict, prefix: str) -> dict:
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return state


def detect_layout(keys) -> str | None:
    """``timm``, ``torchvision`` or ``mmcls`` for a VGG state dict's keys, else None."""
    keys = set(keys)
    if any(k.startswith("backbone.features.") for k in keys):
        return "mmcls"
    if "pre_logits.fc1.weight" in keys and "head.fc.weight" in keys:
        return "timm"
    if "classifier.0.weight" in keys and any(k.startswith("features.") for k in keys):
        return "torchvision"
    return None


_FEATURE_KEY = {
    "timm": re.compile(r"^features\.(\d+)\.(\w+)$"),
    "torchvision": re.compile(r"^features\.(\d+)\.(\w+)$"),
    "mmcls": re.compile(r"^backbone\.features\.(\d+)\.(conv|bn)\.(\w+)$"),
}
_BN_ONLY = {"running_mean", "running_var", "num_batches_tracked"}
_HEAD_NAMES = {
    "timm": {"pre_logits.fc1": "fc1", "pre_logits.fc2": "fc2", "head.fc": "fc3"},
    "torchvision": {"classifier.0": "fc1", "classifier.3": "fc2", "classifier.6": "fc3"},
    "mmcls": {"backbone.classifier.0": "fc1", "backbone.classifier.3": "fc2", "backbone.classifier.6": "fc3"},
}


def canonical_names(keys, layout: str) -> dict[str, str]:
    """Maps each VGG key of ``layout`` to its canonical name; unknown keys map to themselves.

    Convolutions are numbered in network order (``conv0.weight``); a batch norm takes the
    number of the convolution before it (``bn0.running_var``).
    """
    keys = list(keys)
    pattern = _FEATURE_KEY[layout]
    modules: dict[int, dict[str, str]] = {}
    kinds: dict[int, str] = {}
    for key in keys:
        m = pattern.match(key)
        if not m:
            continue
        if layout == "mmcls":
            index, kind, param = int(m[1]), m[2], m[3]
            index = 2 * index + (kind == "bn")  # conv before bn inside one ConvModule
        else:
            index, param = int(m[1]), m[2]
        modules.setdefault(index, {})[param] = key
        if layout == "mmcls":
            kinds[index] = kind
    names: dict[str, str] = {}
    conv = -1
    for index in sorted(modules):
        params = modules[index]
        is_bn = kinds.get(index) == "bn" if layout == "mmcls" else bool(_BN_ONLY & set(params))
        if not is_bn:
            conv += 1
        for param, key in params.items():
            names[key] = f"{'bn' if is_bn else 'conv'}{conv}.{param}"
    for key in keys:
        module, _, param = key.rpartition(".")
        if module in _HEAD_NAMES[layout]:
            names[key] = f"{_HEAD_NAMES[layout][module]}.{param}"
    return {k: names.get(k, k) for k in keys}


def convert_vgg(state: dict[str, torch.Tensor], source: str, target_shapes: Mapping[str, torch.Size],
                target: str) -> dict[str, torch.Tensor]:
    """``state`` in ``source`` layout renamed (and fc reshaped) into ``target`` layout.

    Keys with no counterpart keep their source name, so they show up as unexpected.
    """
    by_canonical = {canon: state[key] for key, canon in canonical_names(state, source).items()}
    out: dict[str, torch.Tensor] = {}
    used = set()
    for key, canon in canonical_names(target_shapes, target).items():
        if canon not in by_canonical:
            continue
        tensor = by_canonical[canon]
        shape = torch.Size(target_shapes[key])
        if tensor.shape != shape and tensor.numel() == shape.numel() and canon.startswith("fc"):
            tensor = tensor.reshape(shape)  # linear <-> timm's conv-as-fc
        out[key] = tensor
        used.add(canon)
    source_names = canonical_names(state, source)
    for key, canon in source_names.items():
        if canon not in used:
            out[key] = state[key]
    return out


def fit_state_dict(module: nn.Module, state: dict[str, torch.Tensor], layout: str | None,
                   path: str | Path = "<state dict>", target: str = "model") -> OrderedDict[str, torch.Tensor]:
    """``state`` translated to ``module``'s keys, or :class:`CheckpointMismatch`.

    ``layout`` is the VGG layout ``module`` was built in (None for other networks: keys
    must then match as they are). The result carries ``module``'s own per-module version
    metadata: a plain dict or a safetensors file has none, and modules that convert old
    layouts on load (torchvision's MNASNet) refuse a state dict without it; the keys and
    shapes were just checked against ``module``, so its current versions are the truth.
    """
    expected = module.state_dict()
    if layout is not None:
        source = detect_layout(state)
        if source is not None and source != layout:
            state = convert_vgg(state, source, {k: v.shape for k, v in expected.items()}, layout)
    missing = [k for k in expected if k not in state and not k.endswith(OPTIONAL_SUFFIXES)]
    unexpected = [k for k in state if k not in expected]
    mismatched = [(k, state[k].shape, expected[k].shape) for k in state
                  if k in expected and state[k].shape != expected[k].shape]
    if missing or unexpected or mismatched:
        raise CheckpointMismatch(path, target, missing, unexpected, mismatched)
    full = OrderedDict(state)
    for k in expected:
        if k not in full:  # an optional counter the checkpoint lacks
            full[k] = torch.zeros(expected[k].shape, dtype=expected[k].dtype)
    full._metadata = getattr(expected, "_metadata", OrderedDict())
    return full


def load_checkpoint(module: nn.Module, path: str | Path, layout: str | None = None,
                    target: str = "model", unused_prefixes: tuple[str, ...] = ()) -> dict:
    """Loads ``path`` into ``module`` in full; returns ``{"file": path, "sha256": hex}``.
    Keys under ``unused_prefixes`` (heads that ``module`` drops for eval) are skipped."""
    path = Path(path)
    state = read_state_dict(path)
    if unused_prefixes:
        state = {k: v for k, v in state.items() if not k.startswith(unused_prefixes)}
    full = fit_state_dict(module, state, layout, path=path, target=target)
    module.load_state_dict(full, strict=True)
    return {"file": str(path.resolve()), "sha256": sha256_file(path)}
