"""The YAML config of ``python -m engine.build``: its own keys, and the seed compiler's.

Native form::

    model:
      name: vgg11                # zoo name (exported to ONNX), or a label for `onnx`
      library: timm
      weights: vgg11.pth         # optional; seeded random weights otherwise
      onnx: vgg11_224.onnx       # alternative to a zoo model
      input_name: input          # optional checks against the model
      input_shape: [1, 3, 224, 224]
    dtype: int8                  # fp32 | fp16 | int8
    quantization: {method: percentile, per_channel: true, percentile: 99.999,
                   skip_layers: [0, -1],   # layers kept in float: first and last here
                   float_fallback: 4,      # and the 4 int8 layers that cost the most, measured,
                   float_fallback_macs: 0.05,  # holding at most 5% of the multiply-accumulates
                   adaround: true,         # learn each weight's rounding direction (slow)
                   bias_correction: true}  # undo the weight rounding's mean shift (default)
    calibration: {path: ImageNet/val, count: 1000, labels: val_label.txt}
    check: {count: 200}          # held-out images for the accuracy check
    softmax: true
    output: deploy/

The seed compiler's keys (``model.inputs``, ``model.checkpoint``,
``engine.calibration.quant_mode``, ``engine.calibration.per_channel``, ``dataset.path``,
``dataset.sampler.get_data_num``, ...) and its newer ``frontend``/``backend`` layout are
accepted and mapped onto these. Keys that only steer the seed's accelerator toolchain
are accepted and listed in ``build.json`` as ignored. Any other key is an error naming
it, and so are two keys that set the same thing to different values.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

DTYPES = ("fp32", "fp16", "int8")
METHODS = {"max": "max", "minmax": "max", "percentile": "percentile", "entropy": "entropy",
           "kl_divergence": "entropy"}

# Native keys with their defaults (None: no default).
NATIVE = {
    "model.name": None, "model.library": None, "model.weights": None, "model.seed": 0,
    "model.onnx": None, "model.input_name": None, "model.input_shape": None,
    "dtype": None,
    "quantization.method": None, "quantization.per_channel": True, "quantization.percentile": None,
    "quantization.skip_layers": None, "quantization.bias_correction": True, "quantization.float_fallback": 0,
    "quantization.float_fallback_macs": 1.0, "quantization.adaround": False,
    "calibration.path": None, "calibration.count": 1000, "calibration.labels": None,
    "calibration.suffix": None, "calibration.batch_size": 8,
    "check.path": None, "check.count": 200, "check.labels": None,
    "softmax": False, "output": ".", "preprocess_ops": None,
}

# Keys whose value is a mapping to keep whole rather than flatten.
LEAF_MAPPINGS = ("model.inputs", "frontend.shape")

# Seed keys with no meaning for onnxruntime targets: accepted, reported as ignored.
IGNORED = ("name", "engine.type", "dataset.type", "workspace.enable_ir", "workspace.save_log",
           "frontend.type", "backend.type", "backend.quantize.dense_special_config")
IGNORED_PREFIXES = ("backend.compile.",)


class ConfigError(ValueError):
    """A build config problem; the message names the key."""


def _inputs(key, value):
    if not isinstance(value, dict) or len(value) != 1:
        raise ConfigError(f"{key}: expected one '<input name>: [N, C, H, W]' entry, got {value!r}")
    (name, shape), = value.items()
    return {"model.input_name": str(name), "model.input_shape": shape}


def _checkpoint(key, value):
    path = str(value)
    if path.lower().endswith(".onnx"):
        return {"model.onnx": path}
    return {"model.weights": path}


def _do_quantization(key, value):
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    return {"dtype": "int8" if value else "fp16"}


def _extra_op(key, value):
    if value in (None, "null", "none"):
        return {"softmax": False}
    if str(value).lower() == "softmax":
        return {"softmax": True}
    raise ConfigError(f"{key}: {value!r} is not supported (only softmax or null)")


def _frontend_dtype(key, value):
    if value != "fp32":
        raise ConfigError(f"{key}: {value!r}; the source model must be fp32")
    return {}


def _to(native):
    return lambda key, value: {native: value}


SEED_KEYS = {
    "model.inputs": _inputs,
    "model.checkpoint": _checkpoint,
    "engine.common.do_quantization": _do_quantization,
    "engine.add_extra_ops_to_graph.type": _extra_op,
    "engine.calibration.quant_mode": _to("quantization.method"),
    "engine.calibration.per_channel": _to("quantization.per_channel"),
    "engine.calibration.skip_conv_layers": _to("quantization.skip_layers"),
    "dataset.path": _to("calibration.path"),
    "dataset.sampler.get_data_num": _to("calibration.count"),
    "dataset.sampler.suffix": _to("calibration.suffix"),
    "dataset.transform_ops": _to("preprocess_ops"),
    "dataset.process_ops": _to("preprocess_ops"),
    "workspace.work_dir": _to("output"),
    "workspace.path": _to("output"),
    "frontend.shape": _inputs,
    "frontend.checkpoint": _checkpoint,
    "frontend.dtype": _frontend_dtype,
    "backend.dtype": _to("dtype"),
    "backend.quantize.calibrate_mode": _to("quantization.method"),
    "backend.quantize.quantize_per_channel": _to("quantization.per_channel"),
    "graph.extra_ops.type": _extra_op,
}


def flatten(mapping: dict, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``, keeping the mappings in LEAF_MAPPINGS whole."""
    flat = {}
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and dotted not in LEAF_MAPPINGS:
            flat.update(flatten(value, dotted + "."))
        elif value is None and _is_section(dotted):
            continue  # an empty section (`check:`) says nothing
        else:
            flat[dotted] = value
    return flat


def _is_section(dotted: str) -> bool:
    prefix = dotted + "."
    return any(k.startswith(prefix) for k in (*NATIVE, *SEED_KEYS, *IGNORED))


@dataclass
class BuildConfig:
    model_name: str | None
    library: str | None
    weights: Path | None
    seed: int
    onnx: Path | None
    input_name: str | None
    input_shape: list | None
    dtype: str
    method: str | None            # canonical: max | percentile | entropy
    method_label: str             # as written, for the folder name ("none" without quantization)
    per_channel: bool
    percentile: float
    skip_layers: list[int]        # weighted layers (Conv/Gemm/MatMul, graph order) kept in float
    bias_correction: bool         # undo the weight rounding's mean shift (engine.builder.bias_correction)
    float_fallback: int           # int8 layers put back in float by measured cost (engine.builder.float_fallback)
    float_fallback_macs: float    # the most of the model's multiply-accumulates those layers may hold
    adaround: bool                # learned weight rounding (engine.builder.adaround)
    calibration_path: Path | None
    calibration_count: int
    calibration_labels: Path | None
    calibration_suffix: str | None
    calibration_batch_size: int
    check_path: Path | None
    check_count: int
    check_labels: Path | None
    softmax: bool
    output: Path
    preprocess_ops: list | None
    ignored: list[str] = field(default_factory=list)
    sources: dict = field(default_factory=dict)   # native key -> the config key that set it


def _resolve(base: Path, value) -> Path | None:
    if value is None:
        return None
    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else base / path


def _expect(key, value, kind, what):
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {what}, got {value!r}")
    return value


def parse_config(mapping: dict, base_dir: str | Path = ".") -> BuildConfig:
    """Check and normalise a loaded YAML mapping; relative paths are taken from ``base_dir``."""
    if not isinstance(mapping, dict):
        raise ConfigError(f"build config: expected a mapping at the top level, got {type(mapping).__name__}")
    base = Path(base_dir)
    values: dict = {}
    sources: dict = {}
    ignored: list[str] = []
    for key, value in flatten(mapping).items():
        if key in NATIVE:
            produced = {key: value}
        elif key in SEED_KEYS:
            produced = SEED_KEYS[key](key, value)
        elif key in IGNORED or key.startswith(IGNORED_PREFIXES):
            ignored.append(key)
            continue
        else:
            raise ConfigError(f"{key}: unknown key in the build config")
        for native, v in produced.items():
            if native in values and values[native] != v:
                raise ConfigError(
                    f"{key}: sets {native} to {v!r}, but {sources[native]} already set it to {values[native]!r}")
            values[native] = v
            sources.setdefault(native, key)

    def get(native):
        return values.get(native, NATIVE[native])

    def source(native):
        return sources.get(native, native)

    dtype = get("dtype")
    if dtype is None:
        dtype = "int8" if get("calibration.path") is not None else "fp32"
    if dtype not in DTYPES:
        raise ConfigError(f"{source('dtype')}: {dtype!r} is not one of {', '.join(DTYPES)}")

    method_label = get("quantization.method")
    if dtype == "int8":
        method_label = method_label or "percentile"
        if str(method_label) not in METHODS:
            raise ConfigError(f"{source('quantization.method')}: {method_label!r} is not one of "
                              "max, percentile, entropy, kl_divergence")
        if get("calibration.path") is None:
            raise ConfigError(f"{source('dtype')}: int8 needs calibration images (calibration.path / dataset.path)")
    else:
        for native in ("quantization.method", "quantization.percentile", "quantization.per_channel",
                       "quantization.skip_layers", "quantization.bias_correction", "quantization.float_fallback",
                       "quantization.float_fallback_macs", "quantization.adaround"):
            if native in values and values[native] != []:
                raise ConfigError(f"{source(native)}: quantization settings given but dtype is {dtype}")
    method = METHODS[method_label] if dtype == "int8" else None
    percentile = get("quantization.percentile")
    if percentile is not None and method != "percentile":
        raise ConfigError(f"{source('quantization.percentile')}: a percentile value needs method percentile, "
                          f"not {method_label}")
    percentile = 99.999 if percentile is None else percentile
    if not isinstance(percentile, (int, float)) or isinstance(percentile, bool) or not 50 < percentile <= 100:
        raise ConfigError(f"{source('quantization.percentile')}: {percentile!r} must be a number in (50, 100]")

    onnx, name, weights = get("model.onnx"), get("model.name"), get("model.weights")
    if onnx is None and name is None:
        raise ConfigError("model: give model.name (a zoo model) or model.onnx / model.checkpoint (an ONNX file)")
    if onnx is not None and weights is not None:
        raise ConfigError(f"{source('model.weights')}: weights are for a zoo model, but "
                          f"{source('model.onnx')} already gives an ONNX file")
    if onnx is not None and "model.library" in values:
        raise ConfigError(f"{source('model.library')}: a library is for a zoo model, but "
                          f"{source('model.onnx')} already gives an ONNX file")

    shape = get("model.input_shape")
    if shape is not None:
        if (not isinstance(shape, list) or len(shape) != 4
                or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape[1:])):
            raise ConfigError(f"{source('model.input_shape')}: expected [N, C, H, W], got {shape!r}")

    for native, what in (("calibration.count", "an integer >= 1"), ("check.count", "an integer >= 0"),
                         ("quantization.float_fallback", "an integer >= 0"),
                         ("calibration.batch_size", "an integer >= 1"), ("model.seed", "an integer")):
        _expect(source(native), get(native), int, what)
    minimum = {"calibration.count": 1, "calibration.batch_size": 1, "check.count": 0, "quantization.float_fallback": 0}
    bad = next((n for n, least in minimum.items() if get(n) < least), None)
    if bad is not None:
        raise ConfigError(f"{source(bad)}: {get(bad)!r} is out of range")
    for native in ("softmax", "quantization.per_channel", "quantization.bias_correction", "quantization.adaround"):
        _expect(source(native), get(native), bool, "true or false")
    share = get("quantization.float_fallback_macs")
    if not isinstance(share, (int, float)) or isinstance(share, bool) or not 0 < share <= 1:
        raise ConfigError(f"{source('quantization.float_fallback_macs')}: {share!r} must be a fraction in (0, 1]")
    skip = get("quantization.skip_layers") or []
    if not isinstance(skip, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in skip):
        raise ConfigError(f"{source('quantization.skip_layers')}: expected a list of layer indices, got {skip!r}")
    ops = get("preprocess_ops")
    if ops is not None:
        _expect(source("preprocess_ops"), ops, list, "a list of ops")

    return BuildConfig(
        model_name=None if name is None else str(name),
        library=get("model.library"),
        weights=_resolve(base, weights),
        seed=get("model.seed"),
        onnx=_resolve(base, onnx),
        input_name=get("model.input_name"),
        input_shape=shape,
        dtype=dtype,
        method=method,
        method_label=str(method_label) if dtype == "int8" else "none",
        per_channel=get("quantization.per_channel"),
        percentile=float(percentile),
        skip_layers=skip,
        bias_correction=get("quantization.bias_correction"),
        float_fallback=get("quantization.float_fallback"),
        float_fallback_macs=float(share),
        adaround=get("quantization.adaround"),
        calibration_path=_resolve(base, get("calibration.path")),
        calibration_count=get("calibration.count"),
        calibration_labels=_resolve(base, get("calibration.labels")),
        calibration_suffix=get("calibration.suffix"),
        calibration_batch_size=get("calibration.batch_size"),
        check_path=_resolve(base, get("check.path")),
        check_count=get("check.count"),
        check_labels=_resolve(base, get("check.labels")),
        softmax=get("softmax"),
        output=_resolve(base, get("output")),
        preprocess_ops=ops,
        ignored=ignored,
        sources=sources,
    )


def load_config(path: str | Path) -> BuildConfig:
    """Read a build YAML; relative paths in it are relative to the file's folder."""
    path = Path(path)
    try:
        mapping = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ConfigError(f"build config {path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"build config {path}: not valid YAML ({e})") from None
    return parse_config(mapping or {}, path.resolve().parent)


def check_preprocess_ops(ops: list | None, data_config, source: str = "preprocess_ops") -> None:
    """The seed's calibration ops must agree with the model's data config.

    The engine preprocesses from the data config only (one kernel for calibration and
    inference); ops that say something else would silently be ignored, so they are errors.
    """
    if not ops:
        return

    def pair(v):
        return tuple(v) if isinstance(v, (list, tuple)) else (v, v)

    for i, op in enumerate(ops):
        if not isinstance(op, dict) or "type" not in op:
            raise ConfigError(f"{source}[{i}]: expected a mapping with a 'type', got {op!r}")
        kind = op["type"]
        where = f"{source}[{i}] ({kind})"
        if kind == "Resize":
            size = op.get("size")
            # The seed wrote [256, 256] for "short side 256"; a single int means the same.
            if size is not None and pair(size) != (data_config.resize, data_config.resize):
                raise ConfigError(f"{where}: size {size} but the model's data config resizes to {data_config.resize}")
        elif kind == "CenterCrop":
            crop = op.get("crop_size", op.get("size"))
            if crop is not None and pair(crop) != (data_config.crop, data_config.crop):
                raise ConfigError(f"{where}: crop {crop} but the model's data config crops {data_config.crop}")
        elif kind == "Normalize":
            for name in ("mean", "std"):
                want = getattr(data_config, name)
                got = op.get(name)
                if got is not None and all(float(v) > 1 for v in got):
                    got = [float(v) / 255 for v in got]  # given in 0..255 pixel units
                if got is not None and any(abs(float(a) - b) > 1e-3 for a, b in zip(got, want)):
                    raise ConfigError(f"{where}: {name} {got} but the model's data config has {list(want)}")
        elif kind not in ("DecodeImage", "ToTensor", "CvtColor"):
            raise ConfigError(f"{where}: op type {kind!r} is not supported; preprocessing comes "
                              "from the model's data config")
