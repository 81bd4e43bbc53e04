"""The vendor's preprocessing file (``vdsp_params``) read into the engine's :class:`DataConfig`.

Users of the vendor flow state a model's preprocessing in one such file, published in
three layouts: ``vamp`` (``vdsp_op_type`` + a ``config`` list of ``Property``/``Value``
entries, the seed's step 5), ``sdk1.0`` (the same properties flat, enums as integers) and
``current`` (``OpType`` + an ``OpConfig`` mapping). :func:`vdsp_data_config` reads any of
them into a data config that replaces the model's, the way ``--preprocess`` does, and
every value it cannot map is refused with one line naming the property and the value:
it never guesses. Only the pitches (device-memory strides) are ignored. docs/formats.md
lists each property and what the engine does with it.

Numbers as the vendor stores them: in ``vamp`` and ``sdk1.0`` mean and std are IEEE
float16 bit patterns (14275 is 0.4849, 0.485 rounded to float16), in ``current`` plain
numbers; their scale follows the normalisation type (0-1 for ``DIV255_MINUSMEAN_DIVSTD``,
0-255 for ``MINUSMEAN_DIVSTD``). They apply to the model's input channels 0, 1, 2 in order,
after any colour conversion (the vendor's Keras files list the blue mean first with
``RGB2BGR``). The integers of ``sdk1.0`` are mapped only where the vendor's enum order is
confirmed by its paired published files (the same model's vamp and sdk1.0 files):
``resize_type`` 1 is the ``BILINEAR_CV`` of the vamp twin, ``norma_type`` follows the
enum ``NORMALIZATION_NONE, EQUAL, MINUSMEAN, MINUSMEAN_DIVSTD, DIV255_MINUSMEAN_DIVSTD,
DIV1275_MINUSONE, DIV255`` (3 and 4 both confirmed).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from engine.data.arg_checks import UsageError
from engine.data.dataconfig import DataConfig
from engine.kernels.resample_plan import crop_offset

FLAG = "--vdsp_params"
SOURCE_PREFIX = "vdsp_params "
VAMP_OP = "RGB_RESIZE_CVTCOLOR_CROP_NORMALIZATION_TENSORIZATION_U8"
SDK10_OP = 300
CURRENT_OP = "FUSION_OP_RGB_RESIZE_CVTCOLOR_CROP_NORM_TENSOR"

# resize_type -> DataConfig.interpolation (Pillow's antialiased filters, or OpenCV's cv2.resize).
RESIZE_TYPES = {"BILINEAR_CV": "opencv_bilinear", "NEAREST_CV": "opencv_nearest",
                "BILINEAR_PILLOW": "bilinear", "BICUBIC_PILLOW": "bicubic", "LANCZOS_PILLOW": "lanczos",
                "BOX_PILLOW": "box", "HAMMING_PILLOW": "hamming"}
# norma_type -> (mean, std) in the data config's (x/255 - mean)/std, from the file's mean m and std s.
NORMA_TYPES = {
    "NORMALIZATION_NONE": lambda m, s: ((0.0,) * 3, (1 / 255,) * 3),
    "MINUSMEAN": lambda m, s: (tuple(v / 255 for v in m), (1 / 255,) * 3),
    "MINUSMEAN_DIVSTD": lambda m, s: (tuple(v / 255 for v in m), tuple(v / 255 for v in s)),
    "DIV255_MINUSMEAN_DIVSTD": lambda m, s: (tuple(m), tuple(s)),
    "DIV1275_MINUSONE": lambda m, s: ((0.5,) * 3, (0.5,) * 3),
    "DIV255": lambda m, s: ((0.0,) * 3, (1.0,) * 3),
}
IMAGE_FORMATS = {"RGB_PLANAR": "RGB", "RGB888": "RGB", "BGR888": "BGR"}
# color_cvt_code (without vamp's COLOR_ prefix) -> (channel order it takes, order it gives); None: no change.
COLOR_CVT_CODES = {"NO_CHANGE": None, "RGB2BGR": ("RGB", "BGR"), "BGR2RGB": ("BGR", "RGB"),
                   "RGB2RGB_INTERLEAVE2PLANAR": ("RGB", "RGB"), "BGR2BGR_INTERLEAVE2PLANAR": ("BGR", "BGR"),
                   "RGB2BGR_INTERLEAVE2PLANAR": ("RGB", "BGR"), "BGR2RGB_INTERLEAVE2PLANAR": ("BGR", "RGB")}
# Only YUV conversions read the colour space; for RGB input either changes nothing.
COLOR_SPACES = ("BT709", "BT601")
SDK10_ENUMS = {
    "iimage_format": {5000: "RGB_PLANAR"},
    "resize_type": {1: "BILINEAR_CV"},
    "color_cvt_code": {2: "NO_CHANGE"},
    "color_space": {0: "BT709"},
    "norma_type": {0: "NORMALIZATION_NONE", 2: "MINUSMEAN", 3: "MINUSMEAN_DIVSTD", 4: "DIV255_MINUSMEAN_DIVSTD",
                   5: "DIV1275_MINUSONE", 6: "DIV255"},
}
VAMP_KEYS = ("iimage_format", "iimage_width", "iimage_height", "short_edge_threshold", "crop_size", "meanr",
             "meang", "meanb", "stdr", "stdg", "stdb", "norma_type", "resize_type", "color_cvt_code", "color_space")
VAMP_PITCHES = ("iimage_width_pitch", "iimage_height_pitch")
CURRENT_KEYS = ("IimageFormat", "IimageWidth", "IimageHeight", "ResizeWidth", "ResizeHeight", "CropX", "CropY",
                "OimageWidth", "OimageHeight", "Mean", "Std", "NormaType", "ColorCvtCode", "ResizeType")
CURRENT_PITCHES = ("IimageWidthPitch", "IimageHeightPitch")


@dataclass(frozen=True)
class VendorPreprocess:
    """What one vdsp_params file says, in the engine's terms (sizes as (height, width))."""

    layout: str
    image_size: tuple[int, int]
    resize: int | tuple[int, int]
    crop: tuple[int, int]
    crop_offset: tuple[int, int] | None
    interpolation: str
    norma_type: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    channel_order: str


class _File:
    """One file being read: refusals name it, the property and the value."""

    def __init__(self, path: str):
        self.path = path

    def refuse(self, prop: str, value, why: str) -> UsageError:
        return UsageError(f"{FLAG} {self.path}: {prop} {value!r}: {why}")

    def malformed(self, why: str) -> UsageError:
        return UsageError(f"{FLAG} {self.path}: {why}")

    def whole(self, prop: str, value, minimum: int) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise self.refuse(prop, value, f"need an integer >= {minimum}")
        return value

    def number(self, prop: str, value) -> float:
        if not isinstance(value, int | float) or isinstance(value, bool) or not np.isfinite(value):
            raise self.refuse(prop, value, "need a finite number")
        return float(value)

    def half(self, prop: str, value) -> float:
        """A float16 bit pattern (an integer 0..65535) as the number it encodes."""
        bits = self.whole(prop, value, 0)
        decoded = float(np.array(bits if bits <= 0xFFFF else 0, np.uint16).view(np.float16))
        if bits > 0xFFFF or not np.isfinite(decoded):
            raise self.refuse(prop, value, "not the bit pattern of a finite float16 (an integer 0..65535)")
        return decoded

    def choice(self, prop: str, value, table, enum: dict | None = None):
        """``table[value]``: an sdk1.0 integer through ``enum`` first; anything else refused."""
        integer = isinstance(value, int) and not isinstance(value, bool)
        name = enum.get(value) if enum is not None and integer else value
        if not isinstance(name, str) or name not in table:
            known = ", ".join(f"{k} ({v})" for k, v in enum.items()) if enum is not None else ", ".join(table)
            raise self.refuse(prop, value, f"not one the engine maps (it maps {known})")
        return table[name]

    def fields(self, data: dict, required: tuple[str, ...], ignored: tuple[str, ...], where: str) -> dict:
        unknown = sorted(set(data) - set(required) - set(ignored))
        if unknown:
            raise self.malformed(f"unknown {where} {', '.join(unknown)} (known: {', '.join(required + ignored)})")
        missing = [k for k in required if k not in data]
        if missing:
            raise self.malformed(f"{where} {', '.join(missing)} missing")
        return data


def _colour(f: _File, fmt: tuple[str, object], cvt: tuple[str, object], enums: dict | None, prefix: str) -> str:
    """The channel order the model gets: the input format's, after the colour conversion
    (``prefix``: vamp writes its codes as COLOR_NO_CHANGE, the current layout as NO_CHANGE)."""
    order = f.choice(*fmt, IMAGE_FORMATS, enums and enums["iimage_format"])
    codes = COLOR_CVT_CODES if enums else {prefix + k: v for k, v in COLOR_CVT_CODES.items()}
    conversion = f.choice(*cvt, codes, enums and enums["color_cvt_code"])
    if conversion is None:
        return order
    if conversion[0] != order:
        raise f.refuse(*cvt, f"converts from {conversion[0]}, the {fmt[0]} {fmt[1]!r} gives {order}")
    return conversion[1]


def _norm(f: _File, prop: str, value, mean, std, enum: dict | None) -> tuple[str, tuple, tuple]:
    """The normalisation type's name and the data config's (mean, std) for it."""
    to_config = f.choice(prop, value, NORMA_TYPES, enum)
    name = enum.get(value, value) if enum is not None and isinstance(value, int) else value
    if name in ("MINUSMEAN_DIVSTD", "DIV255_MINUSMEAN_DIVSTD") and min(std) <= 0:
        raise f.refuse("std", list(std), f"must be > 0 for {prop} {name}")
    config_mean, config_std = to_config(mean, std)
    return name, config_mean, config_std


def _short_edge_layout(f: _File, d: dict, layout: str, enums: dict | None) -> VendorPreprocess:
    """vamp and sdk1.0: short-edge resize, centred square crop, float16 bit-pattern mean/std."""
    mean = tuple(f.half(k, d[k]) for k in ("meanr", "meang", "meanb"))
    std = tuple(f.half(k, d[k]) for k in ("stdr", "stdg", "stdb"))
    norma, config_mean, config_std = _norm(f, "norma_type", d["norma_type"], mean, std,
                                           enums and enums["norma_type"])
    spaces = {s if enums else f"COLOR_SPACE_{s}": s for s in COLOR_SPACES}
    f.choice("color_space", d["color_space"], spaces, enums and enums["color_space"])
    crop = f.whole("crop_size", d["crop_size"], 1)
    return VendorPreprocess(
        layout=layout,
        image_size=(f.whole("iimage_height", d["iimage_height"], 1), f.whole("iimage_width", d["iimage_width"], 1)),
        resize=f.whole("short_edge_threshold", d["short_edge_threshold"], 1), crop=(crop, crop), crop_offset=None,
        interpolation=f.choice("resize_type", d["resize_type"], RESIZE_TYPES, enums and enums["resize_type"]),
        norma_type=norma, mean=config_mean, std=config_std,
        channel_order=_colour(f, ("iimage_format", d["iimage_format"]), ("color_cvt_code", d["color_cvt_code"]),
                              enums, "COLOR_"))


def _triple(f: _File, prop: str, value) -> tuple[float, float, float]:
    if not isinstance(value, list) or len(value) != 3:
        raise f.refuse(prop, value, "need a list of 3 numbers")
    return tuple(f.number(prop, v) for v in value)


def _current_layout(f: _File, d: dict) -> VendorPreprocess:
    """current: both-sides resize, crop at (CropY, CropX), plain mean/std."""
    norma, mean, std = _norm(f, "NormaType", d["NormaType"], _triple(f, "Mean", d["Mean"]),
                             _triple(f, "Std", d["Std"]), None)
    resize = (f.whole("ResizeHeight", d["ResizeHeight"], 1), f.whole("ResizeWidth", d["ResizeWidth"], 1))
    crop = (f.whole("OimageHeight", d["OimageHeight"], 1), f.whole("OimageWidth", d["OimageWidth"], 1))
    offset = (f.whole("CropY", d["CropY"], 0), f.whole("CropX", d["CropX"], 0))
    centred = tuple(crop_offset(r, c) for r, c in zip(resize, crop))
    return VendorPreprocess(
        layout="current",
        image_size=(f.whole("IimageHeight", d["IimageHeight"], 1), f.whole("IimageWidth", d["IimageWidth"], 1)),
        resize=resize, crop=crop, crop_offset=None if offset == centred else offset,
        interpolation=f.choice("ResizeType", d["ResizeType"], RESIZE_TYPES),
        norma_type=norma, mean=mean, std=std,
        channel_order=_colour(f, ("IimageFormat", d["IimageFormat"]), ("ColorCvtCode", d["ColorCvtCode"]), None,
                              ""))


def _vamp_entries(f: _File, config) -> dict:
    """vamp's ``config`` list as {Property: Value}; mean/std entries must be UINT_16 bit patterns."""
    if not isinstance(config, list) or not all(isinstance(e, dict) for e in config):
        raise f.malformed("vamp layout: 'config' must be a list of {Property, DType, ParamType, Value} entries")
    values: dict = {}
    for entry in config:
        if "Property" not in entry or "Value" not in entry:
            raise f.malformed(f"vamp layout: entry {entry!r} has no Property or no Value")
        prop = entry["Property"]
        if prop in values:
            raise f.malformed(f"vamp layout: property {prop!r} given twice")
        if entry.get("ParamType", "ELEMENT") != "ELEMENT":
            raise f.refuse(f"{prop} ParamType", entry["ParamType"], "the engine maps ELEMENT values only")
        if prop.startswith(("mean", "std")) and entry.get("DType", "UINT_16") != "UINT_16":
            raise f.refuse(f"{prop} DType", entry["DType"], "mean/std are float16 bit patterns, DType UINT_16")
        values[prop] = entry["Value"]
    return values


def read_vdsp_params(path: str) -> VendorPreprocess:
    """The file at ``path`` in any of the three layouts; :class:`UsageError` on anything else."""
    f = _File(path)
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise f.malformed("no such file") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise f.malformed(f"not a JSON file ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise f.malformed("not a vdsp_params file (expected a JSON object)")
    if "OpType" in data or "OpConfig" in data:
        f.fields(data, ("OpType", "OpConfig"), (), "current-layout key")
        if data["OpType"] != CURRENT_OP:
            raise f.refuse("OpType", data["OpType"], f"the engine maps {CURRENT_OP} only")
        if not isinstance(data["OpConfig"], dict):
            raise f.malformed("current layout: OpConfig must be an object")
        return _current_layout(f, f.fields(data["OpConfig"], CURRENT_KEYS, CURRENT_PITCHES, "OpConfig field"))
    op = data.get("vdsp_op_type")
    if isinstance(op, str):
        f.fields(data, ("vdsp_op_type", "config"), (), "vamp-layout key")
        if op != VAMP_OP:
            raise f.refuse("vdsp_op_type", op, f"the engine maps {VAMP_OP} only")
        values = f.fields(_vamp_entries(f, data["config"]), VAMP_KEYS, VAMP_PITCHES, "property")
        return _short_edge_layout(f, values, "vamp", None)
    if isinstance(op, int) and not isinstance(op, bool):
        if op != SDK10_OP:
            raise f.refuse("vdsp_op_type", op, f"the engine maps {SDK10_OP} only")
        values = f.fields(data, VAMP_KEYS + ("vdsp_op_type",), VAMP_PITCHES, "sdk1.0 field")
        return _short_edge_layout(f, values, "sdk1.0", SDK10_ENUMS)
    raise f.malformed("not a vdsp_params file: expected vdsp_op_type + config (vamp), vdsp_op_type 300 with "
                      "flat fields (sdk1.0), or OpType + OpConfig (current)")


def _differences(new: DataConfig, old: DataConfig) -> list[str]:
    """What ``new`` does that the model's own config ``old`` does not, for the start line."""
    out = []
    for key in ("resize", "crop", "crop_offset", "interpolation", "channel_order"):
        if getattr(new, key) != getattr(old, key):
            out.append(f"{key} {getattr(new, key)!r} (model: {getattr(old, key)!r})")
    for key in ("mean", "std"):
        if not np.allclose(getattr(new, key), getattr(old, key), rtol=0, atol=1e-7):
            shown = ", ".join(f"{v:.6g}" for v in getattr(new, key))
            out.append(f"{key} ({shown}) (model: {', '.join(f'{v:.6g}' for v in getattr(old, key))})")
    return out


def vdsp_data_config(path: str, model_config: DataConfig) -> DataConfig:
    """The data config ``path`` states, in place of ``model_config`` (whose input size the
    model is fixed to and whose class count it keeps). Its ``source`` says where it came
    from and how it differs from the model's own (what :func:`start_line_note` prints)."""
    vp = read_vdsp_params(path)
    size = (3, *vp.crop)
    if tuple(model_config.input_size) != size:
        raise UsageError(f"{FLAG} {path}: its crop gives {vp.crop[0]}x{vp.crop[1]} inputs, the model takes "
                         f"{model_config.input_size[1]}x{model_config.input_size[2]}")
    try:
        config = DataConfig(input_size=size, resize=vp.resize, crop=vp.crop[0] if vp.crop[0] == vp.crop[1]
                            else vp.crop, interpolation=vp.interpolation, mean=vp.mean, std=vp.std,
                            num_classes=model_config.num_classes, crop_offset=vp.crop_offset,
                            channel_order=vp.channel_order)
    except ValueError as e:
        raise UsageError(f"{FLAG} {path}: {e}") from None
    differences = _differences(config, model_config)
    said = ("differs from the model's own transform: " + "; ".join(differences)) if differences \
        else "the same as the model's own transform"
    return replace(config, source=f"{SOURCE_PREFIX}{path} ({vp.layout} layout, {vp.norma_type}), replacing the "
                                  f"model's data config; {said}")


def start_line_note(config: DataConfig) -> str:
    """The clause engine.run's start line adds when a vdsp_params file replaced the model's
    preprocessing; empty otherwise."""
    source = config.source or ""
    return f"; preprocessing from {source}" if source.startswith(SOURCE_PREFIX) else ""
