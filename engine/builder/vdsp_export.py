"""The vendor's preprocessing file (``vdsp_params``, vamp layout) written into a deploy folder.

Users of the vendor flow keep one such file per model next to the compiled model and pass
it to the benchmark tool (``-m DIR/NAME --vdsp_params FILE``), so the build writes one
describing the model's own data config as closely as the layout allows, and lists what it
cannot say: vamp resizes the short side to one number and crops a centred square, and
stores mean and std as float16 (0.485 becomes 0.48511). The resize is named by its
library: ``BILINEAR_PILLOW``/``BICUBIC_PILLOW``/... for Pillow's antialiased filters (the
vendor's resize enum has them), ``BILINEAR_CV`` only for OpenCV's. ``engine.run
--vdsp_params`` reads the file back to the same preprocessing, float16 values aside.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from engine.data.dataconfig import DataConfig
from engine.data.vdsp_params import RESIZE_TYPES, VAMP_OP

# DataConfig.interpolation -> resize_type: the reader's table turned round, so a written file reads back.
RESIZE_NAMES = {interpolation: name for name, interpolation in RESIZE_TYPES.items()}
DTYPES = {"iimage_format": "UINT_32", "iimage_width_pitch": "UINT_32", "iimage_height_pitch": "UINT_32",
          "crop_size": "UINT_32", "color_cvt_code": "UINT_16", "color_space": "UINT_16"}


def float16_bits(value: float) -> int:
    return int(np.array(value, np.float16).view(np.uint16))


def _sizes(config: DataConfig, notes: list[str]) -> tuple[int, int]:
    """(short_edge_threshold, crop_size), with what they leave out added to ``notes``."""
    resize = config.resize
    if not isinstance(resize, int):
        notes.append(f"resize {list(resize)} (both sides): vamp resizes the short side only; written as "
                     f"short_edge_threshold {min(resize)}")
        resize = min(resize)
    _, crop_h, crop_w = config.input_size
    if crop_h != crop_w:
        notes.append(f"crop {crop_h}x{crop_w}: vamp's crop_size is square; written as {min(crop_h, crop_w)}")
    if config.crop_offset is not None:
        notes.append(f"crop at (top, left) {list(config.crop_offset)}: vamp crops at the centre")
    return resize, min(crop_h, crop_w)


def _resize_type(config: DataConfig, notes: list[str]) -> str:
    if config.interpolation == "nearest":
        notes.append("Pillow's nearest resize: the vendor's enum has no Pillow nearest; written as NEAREST_CV "
                     "(OpenCV's), which picks other source pixels")
        return "NEAREST_CV"
    return RESIZE_NAMES[config.interpolation]


def vamp_params(config: DataConfig) -> tuple[dict, list[str]]:
    """The vamp-layout file for ``config`` and the lines saying what it does not express."""
    notes: list[str] = []
    if config.library_only_reason is not None:
        notes.append(f"the model's library transform is not a resize and crop ({config.library_only_reason}); "
                     f"the file describes its resize and crop sizes only")
    short_edge, crop = _sizes(config, notes)
    mean = [float(np.float16(v)) for v in config.mean]
    std = [float(np.float16(v)) for v in config.std]
    change = max(abs(a - b) for a, b in zip(mean + std, list(config.mean) + list(config.std)))
    if change > 0:
        notes.append(f"mean/std as float16: {[round(v, 5) for v in mean]} / {[round(v, 5) for v in std]} "
                     f"(the model's own differ by up to {change:.2g})")
    values = {"iimage_format": "RGB_PLANAR", "iimage_width": short_edge, "iimage_height": short_edge,
              "iimage_width_pitch": short_edge, "iimage_height_pitch": short_edge,
              "short_edge_threshold": short_edge, "crop_size": crop,
              **{f"mean{c}": float16_bits(v) for c, v in zip("rgb", config.mean)},
              **{f"std{c}": float16_bits(v) for c, v in zip("rgb", config.std)},
              "norma_type": "DIV255_MINUSMEAN_DIVSTD", "resize_type": _resize_type(config, notes),
              "color_cvt_code": "COLOR_RGB2BGR" if config.channel_order == "BGR" else "COLOR_NO_CHANGE",
              "color_space": "COLOR_SPACE_BT709"}
    entries = [{"Property": k, "DType": "UINT_16" if k.startswith(("mean", "std")) else DTYPES.get(k, "INT"),
                "ParamType": "ELEMENT", "Value": v} for k, v in values.items()]
    return {"vdsp_op_type": VAMP_OP, "config": entries}, notes


def write_vdsp_params(folder: Path, library: str, name: str, config: DataConfig) -> tuple[Path, list[str]]:
    """``<library>-<name>-vdsp_params.json`` in ``folder`` (the vendor zoo's naming); the
    file and what it does not express."""
    params, notes = vamp_params(config)
    path = Path(folder) / f"{library}-{name}-vdsp_params.json"
    path.write_text(json.dumps(params, indent=4) + "\n")
    return path, notes
