"""The YAML config of ``python -m engine.build``: its own keys, and the seed compiler's.

Native form::

    model:
      name: vgg11                # zoo name (exported to ONNX), or a label for `onnx`
      library: timm
      weights: vgg11.pth         # optional; seeded random weights otherwise
      onnx: vgg11_224.onnx       # alternative to a zoo model
      input_name: input          # optional checks against the model
      input_shape: [1, 3, 224, 224]
    dtype: int8                  # fp32 | fp16 | bf16 | int8 (bf16: run and checked on OpenVINO)
    quantization: {method: percentile, per_channel: true, percentile: 99.999,
                   skip_layers: [0, -1],   # layers kept in float: first and last here
                   float_fallback: 4,      # and the 4 int8 layers that cost the most, measured,
                   float_fallback_macs: 0.05,  # holding at most 5% of the multiply-accumulates
                   adaround: true,         # learn each weight's rounding direction (slow)
                   bias_correction: true,  # undo the weight rounding's mean shift (default)
                   target_cpu: native}     # or x86 (no VNNI), x86_vnni, arm: the CPU the model runs on
    calibration: {path: ImageNet/val, count: 1000, labels: val_label.txt}
    check: {count: 200,          # held-out images for the accuracy check (some are held out of
                                 # calibration when it would use them all)
            backend: ort}        # or openvino: the runtime the built model is checked on (bf16: openvino)
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

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import yaml

from engine.builder.cpu_target import TARGETS

DTYPES = ("fp32", "fp16", "bf16", "int8")
CHECK_BACKENDS = ("ort", "openvino")
METHODS = {"max": "max", "minmax": "max", "percentile": "percentile", "entropy": "entropy",
           "kl_divergence": "entropy"}
DEFAULT_PERCENTILE = 99.999


class ConfigError(ValueError):
    """A build config problem; the message names the key."""


# -- checks of single values: (the key as written, value) -> the value to keep ---------
def _integer(least: int | None = None, what: str = "an integer") -> Callable:
    def check(key, value):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{key}: expected {what}, got {value!r}")
        if least is not None and value < least:
            raise ConfigError(f"{key}: {value!r} is out of range")
        return value
    return check


def _flag(key, value):
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    return value


def _number_in(low: float, high: float, what: str) -> Callable:
    def check(key, value):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not low < value <= high:
            raise ConfigError(f"{key}: {value!r} must be {what} in ({low:g}, {high:g}]")
        return float(value)
    return check


def _text(key, value):
    return str(value)


def _shape(key, value):
    if (not isinstance(value, list) or len(value) != 4
            or not all(isinstance(d, int) and not isinstance(d, bool) for d in value[1:])):
        raise ConfigError(f"{key}: expected [N, C, H, W], got {value!r}")
    return value


def _layer_indices(key, value):
    if not isinstance(value, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in value):
        raise ConfigError(f"{key}: expected a list of layer indices, got {value!r}")
    return value


def _op_list(key, value):
    if not isinstance(value, list):
        raise ConfigError(f"{key}: expected a list of ops, got {value!r}")
    return value


def _one_of(choices) -> Callable:
    def check(key, value):
        if value not in choices:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(choices)}")
        return value
    return check


def config_key(default=None, check: Callable | None = None, path: bool = False):
    """A config key: its default, the check of a given value, and whether it is a path
    (taken relative to the config file's folder)."""
    return field(default=default, metadata={"key": True, "check": check, "path": path})


# -- the native keys, one dataclass per section ----------------------------------------
@dataclass(frozen=True)
class ModelSpec:
    name: str | None = config_key(check=_text)   # a zoo name (exported to ONNX), or a label for `onnx`
    library: str | None = config_key()
    weights: Path | None = config_key(path=True)
    seed: int = config_key(0, _integer())
    onnx: Path | None = config_key(path=True)
    input_name: str | None = config_key()
    input_shape: list | None = config_key(check=_shape)


@dataclass(frozen=True)
class QuantizationSpec:
    method: str | None = config_key()            # canonical once parsed: max | percentile | entropy
    per_channel: bool = config_key(True, _flag)
    percentile: float | None = config_key(check=_number_in(50, 100, "a number"))
    skip_layers: list | None = config_key(check=_layer_indices)   # weighted layers (graph order) kept in float
    bias_correction: bool = config_key(True, _flag)       # engine.builder.bias_correction
    float_fallback: int = config_key(0, _integer(0, "an integer >= 0"))   # engine.builder.float_fallback
    float_fallback_macs: float = config_key(1.0, _number_in(0, 1, "a fraction"))
    adaround: bool = config_key(False, _flag)             # engine.builder.adaround
    target_cpu: str = config_key("native", _one_of(TARGETS))       # engine.builder.cpu_target


@dataclass(frozen=True)
class CalibrationSpec:
    path: Path | None = config_key(path=True)
    count: int = config_key(1000, _integer(1, "an integer >= 1"))
    labels: Path | None = config_key(path=True)
    suffix: str | None = config_key()
    batch_size: int = config_key(8, _integer(1, "an integer >= 1"))


@dataclass(frozen=True)
class CheckSpec:
    path: Path | None = config_key(path=True)
    count: int = config_key(200, _integer(0, "an integer >= 0"))
    labels: Path | None = config_key(path=True)
    backend: str | None = config_key(check=_one_of(CHECK_BACKENDS))  # None: openvino for bf16, else ort


SECTIONS = {"model": ModelSpec, "quantization": QuantizationSpec, "calibration": CalibrationSpec,
            "check": CheckSpec}


@dataclass(frozen=True)
class BuildConfig:
    model: ModelSpec
    quantization: QuantizationSpec
    calibration: CalibrationSpec
    check: CheckSpec
    dtype: str = config_key()                        # fp32 | fp16 | bf16 | int8; int8 when calibration images are given
    softmax: bool = config_key(False, _flag)
    output: Path = config_key(".", path=True)
    preprocess_ops: list | None = config_key(check=_op_list)
    method_label: str = "none"                # the method as written, for the folder name
    ignored: list[str] = field(default_factory=list)
    sources: dict = field(default_factory=dict)   # native key -> the config key that set it

    def key(self, native: str) -> str:
        """The config key as written that set ``native`` (``native`` itself when none did)."""
        return self.sources.get(native, native)


def _native_keys() -> dict:
    keys = {f"{section}.{f.name}": f for section, spec in SECTIONS.items() for f in fields(spec)}
    keys.update({f.name: f for f in fields(BuildConfig) if f.metadata.get("key")})
    return keys


NATIVE = _native_keys()

# Keys whose value is a mapping to keep whole rather than flatten.
LEAF_MAPPINGS = ("model.inputs", "frontend.shape")

# Seed keys with no meaning for onnxruntime targets: accepted, reported as ignored.
IGNORED = ("name", "engine.type", "dataset.type", "workspace.enable_ir", "workspace.save_log",
           "frontend.type", "backend.type", "backend.quantize.dense_special_config")
IGNORED_PREFIXES = ("backend.compile.",)


# -- the seed compiler's keys, mapped onto native ones ---------------------------------
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
    return {"dtype": "int8" if _flag(key, value) else "fp16"}


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


def _resolve(base: Path, value) -> Path | None:
    if value is None:
        return None
    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else base / path


def _native_values(flat: dict) -> tuple[dict, dict, list[str]]:
    """The native keys ``flat`` sets, each checked; the config key that set each; the ignored keys."""
    values, sources, ignored = {}, {}, []
    for key, value in flat.items():
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
    for native, value in values.items():
        check = NATIVE[native].metadata["check"]
        if check is not None and value is not None:
            values[native] = check(sources[native], value)
    return values, sources, ignored


def _section(spec, prefix: str, values: dict, base: Path):
    kwargs = {}
    for f in fields(spec):
        value = values.get(f"{prefix}.{f.name}", f.default)
        kwargs[f.name] = _resolve(base, value) if f.metadata["path"] else value
    return spec(**kwargs)


def _check_dtype_and_method(values: dict, source: Callable) -> tuple[str, str | None]:
    """The dtype, and the quantization method as written (None without int8)."""
    dtype = values.get("dtype")
    if dtype is None:
        dtype = "int8" if values.get("calibration.path") is not None else "fp32"
    if dtype not in DTYPES:
        raise ConfigError(f"{source('dtype')}: {dtype!r} is not one of {', '.join(DTYPES)}")
    if dtype != "int8":
        for native in values:
            if native.startswith("quantization.") and values[native] != []:
                raise ConfigError(f"{source(native)}: quantization settings given but dtype is {dtype}")
        return dtype, None
    label = values.get("quantization.method") or "percentile"
    if str(label) not in METHODS:
        raise ConfigError(f"{source('quantization.method')}: {label!r} is not one of "
                          "max, percentile, entropy, kl_divergence")
    if values.get("calibration.path") is None:
        raise ConfigError(f"{source('dtype')}: int8 needs calibration images (calibration.path / dataset.path)")
    if values.get("quantization.percentile") is not None and METHODS[str(label)] != "percentile":
        raise ConfigError(f"{source('quantization.percentile')}: a percentile value needs method percentile, "
                          f"not {label}")
    return dtype, str(label)


def _check_model_source(values: dict, source: Callable) -> None:
    onnx, name, weights = values.get("model.onnx"), values.get("model.name"), values.get("model.weights")
    if onnx is None and name is None:
        raise ConfigError("model: give model.name (a zoo model) or model.onnx / model.checkpoint (an ONNX file)")
    if onnx is not None and weights is not None:
        raise ConfigError(f"{source('model.weights')}: weights are for a zoo model, but "
                          f"{source('model.onnx')} already gives an ONNX file")
    if onnx is not None and "model.library" in values:
        raise ConfigError(f"{source('model.library')}: a library is for a zoo model, but "
                          f"{source('model.onnx')} already gives an ONNX file")


def parse_config(mapping: dict, base_dir: str | Path = ".") -> BuildConfig:
    """Check and normalise a loaded YAML mapping; relative paths are taken from ``base_dir``."""
    if not isinstance(mapping, dict):
        raise ConfigError(f"build config: expected a mapping at the top level, got {type(mapping).__name__}")
    base = Path(base_dir)
    values, sources, ignored = _native_values(flatten(mapping))

    def source(native):
        return sources.get(native, native)

    dtype, label = _check_dtype_and_method(values, source)
    _check_model_source(values, source)
    quantization = _section(QuantizationSpec, "quantization", values, base)
    percentile = quantization.percentile
    quantization = replace(quantization, method=METHODS[label] if label else None,
                           percentile=DEFAULT_PERCENTILE if percentile is None else percentile,
                           skip_layers=quantization.skip_layers or [])
    top = {f.name: values.get(f.name, f.default) for f in fields(BuildConfig) if f.metadata.get("key")}
    check = _section(CheckSpec, "check", values, base)
    if dtype == "bf16" and check.backend == "ort":
        raise ConfigError(f"{source('check.backend')}: ort: a bf16 model runs on openvino (onnxruntime has no bf16)")
    return BuildConfig(
        model=_section(ModelSpec, "model", values, base),
        quantization=quantization,
        calibration=_section(CalibrationSpec, "calibration", values, base),
        check=replace(check, backend=check.backend or ("openvino" if dtype == "bf16" else "ort")),
        dtype=dtype, softmax=top["softmax"], output=_resolve(base, top["output"]),
        preprocess_ops=top["preprocess_ops"], method_label=label or "none",
        ignored=ignored, sources=sources,
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
            if size is not None and pair(size) != pair(data_config.resize):
                raise ConfigError(f"{where}: size {size} but the model's data config resizes to {data_config.resize}")
        elif kind == "CenterCrop":
            crop = op.get("crop_size", op.get("size"))
            if crop is not None and pair(crop) != pair(data_config.crop):
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
