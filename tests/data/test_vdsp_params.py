"""engine.data.vdsp_params: the vendor's three layouts into a DataConfig, every value it
cannot map refused with one line naming the property and the value."""
from __future__ import annotations

import json

import numpy as np
import pytest

from engine.data.arg_checks import UsageError
from engine.data.dataconfig import DataConfig
from engine.data.vdsp_params import read_vdsp_params, start_line_note, vdsp_data_config

SEED = {"iimage_format": "RGB_PLANAR", "iimage_width": 256, "iimage_height": 256, "iimage_width_pitch": 256,
        "iimage_height_pitch": 256, "short_edge_threshold": 256, "crop_size": 224, "meanr": 14275, "meang": 14156,
        "meanb": 13951, "stdr": 13140, "stdg": 13099, "stdb": 13107, "norma_type": "DIV255_MINUSMEAN_DIVSTD",
        "resize_type": "BILINEAR_CV", "color_cvt_code": "COLOR_NO_CHANGE", "color_space": "COLOR_SPACE_BT709"}
CURRENT = {"IimageFormat": "RGB_PLANAR", "IimageWidth": 256, "IimageHeight": 256, "ResizeWidth": 256,
           "ResizeHeight": 256, "CropX": 16, "CropY": 16, "OimageWidth": 224, "OimageHeight": 224,
           "Mean": [123.6875, 116.25, 103.5], "Std": [58.40625, 57.125, 57.375], "NormaType": "MINUSMEAN_DIVSTD",
           "ColorCvtCode": "NO_CHANGE", "ResizeType": "BILINEAR_CV"}


def vamp(tmp_path, drop=(), **changes):
    values = {k: v for k, v in {**SEED, **changes}.items() if k not in drop}
    path = tmp_path / "vamp.json"
    entries = [{"Property": k, "DType": "UINT_16" if k.startswith(("mean", "std")) else "INT",
                "ParamType": "ELEMENT", "Value": v} for k, v in values.items()]
    path.write_text(json.dumps({"vdsp_op_type": "RGB_RESIZE_CVTCOLOR_CROP_NORMALIZATION_TENSORIZATION_U8",
                                "config": entries}))
    return str(path)


def current(tmp_path, **changes):
    path = tmp_path / "current.json"
    path.write_text(json.dumps({"OpType": "FUSION_OP_RGB_RESIZE_CVTCOLOR_CROP_NORM_TENSOR",
                                "OpConfig": {**CURRENT, **changes}}))
    return str(path)


def sdk10(tmp_path, **changes):
    path = tmp_path / "sdk.json"
    fields = {**SEED, "vdsp_op_type": 300, "iimage_format": 5000, "resize_type": 1, "color_cvt_code": 2,
              "color_space": 0, "norma_type": 4, **changes}
    path.write_text(json.dumps(fields))
    return str(path)


def test_the_seed_file_decodes_its_float16_bit_patterns(tmp_path):
    vp = read_vdsp_params(vamp(tmp_path))
    bits = np.array([14275, 14156, 13951, 13140, 13099, 13107], np.uint16).view(np.float16)
    assert vp.mean + vp.std == tuple(float(v) for v in bits)
    assert abs(vp.mean[0] - 0.485) < 2e-4 and abs(vp.std[0] - 0.229) < 1e-4
    assert (vp.resize, vp.crop, vp.crop_offset, vp.interpolation, vp.channel_order) == \
        (256, (224, 224), None, "opencv_bilinear", "RGB")
    assert read_vdsp_params(sdk10(tmp_path)) == read_vdsp_params(vamp(tmp_path)).__class__(
        **{**read_vdsp_params(vamp(tmp_path)).__dict__, "layout": "sdk1.0"})


def test_the_pitches_alone_may_be_left_out(tmp_path):
    assert read_vdsp_params(vamp(tmp_path, drop=("iimage_width_pitch", "iimage_height_pitch"))).resize == 256
    with pytest.raises(UsageError, match=r"property crop_size missing"):
        read_vdsp_params(vamp(tmp_path, drop=("crop_size",)))
    with pytest.raises(UsageError, match=r"unknown property iimage_depth"):
        read_vdsp_params(vamp(tmp_path, iimage_depth=3))


def test_the_current_layout_scales_its_plain_numbers_and_keeps_an_off_centre_crop(tmp_path):
    vp = read_vdsp_params(current(tmp_path))
    assert vp.crop_offset is None and vp.resize == (256, 256)
    np.testing.assert_allclose(vp.mean, np.array(CURRENT["Mean"]) / 255)
    np.testing.assert_allclose(vp.std, np.array(CURRENT["Std"]) / 255)
    config = vdsp_data_config(current(tmp_path, CropX=0, CropY=32), DataConfig())
    assert config.crop_offset == (32, 0) and config.kernel_limitation() == "a crop at (top, left) (32, 0), not centred"


@pytest.mark.parametrize("fmt, cvt, order", [("RGB_PLANAR", "NO_CHANGE", "RGB"), ("RGB_PLANAR", "RGB2BGR", "BGR"),
                                             ("BGR888", "NO_CHANGE", "BGR"), ("BGR888", "BGR2RGB", "RGB")])
def test_the_channel_order_is_the_formats_after_the_conversion(tmp_path, fmt, cvt, order):
    assert read_vdsp_params(current(tmp_path, IimageFormat=fmt, ColorCvtCode=cvt)).channel_order == order
    assert read_vdsp_params(vamp(tmp_path, iimage_format=fmt, color_cvt_code=f"COLOR_{cvt}")).channel_order == order


@pytest.mark.parametrize("norma, mean, std", [
    ("MINUSMEAN", (123.6875 / 255, 116.25 / 255, 103.5 / 255), (1 / 255,) * 3),
    ("DIV1275_MINUSONE", (0.5,) * 3, (0.5,) * 3),
    ("DIV255", (0.0,) * 3, (1.0,) * 3),
    ("NORMALIZATION_NONE", (0.0,) * 3, (1 / 255,) * 3),
])
def test_each_normalisation_type_as_the_engines_mean_and_std(tmp_path, norma, mean, std):
    vp = read_vdsp_params(current(tmp_path, NormaType=norma))
    np.testing.assert_allclose(vp.mean, mean)
    np.testing.assert_allclose(vp.std, std)


@pytest.mark.parametrize("make, changes, message", [
    (vamp, {"short_edge_threshold": "256"}, r"short_edge_threshold '256': need an integer >= 1"),
    (vamp, {"meanr": 70000}, r"meanr 70000: not the bit pattern of a finite float16"),
    (vamp, {"stdr": 31744}, r"stdr 31744: not the bit pattern of a finite float16"),  # +inf
    (vamp, {"color_space": "COLOR_SPACE_BT2020"}, r"color_space 'COLOR_SPACE_BT2020': not one the engine maps"),
    (vamp, {"resize_type": "BILINEAR"}, r"resize_type 'BILINEAR': not one the engine maps"),
    (vamp, {"color_cvt_code": "COLOR_YUV2RGB_NV12"}, r"color_cvt_code 'COLOR_YUV2RGB_NV12'"),
    (sdk10, {"norma_type": 1}, r"norma_type 1: not one the engine maps \(it maps 0 \(NORMALIZATION_NONE\)"),
    (sdk10, {"iimage_format": 5001}, r"iimage_format 5001"),
    (sdk10, {"vdsp_op_type": 301}, r"vdsp_op_type 301: the engine maps 300 only"),
    (current, {"Mean": [1, 2]}, r"Mean \[1, 2\]: need a list of 3 numbers"),
    (current, {"Std": [0, 1, 1]}, r"std \[0.0, 1.0, 1.0\]: must be > 0 for NormaType MINUSMEAN_DIVSTD"),
    (current, {"ResizeType": "BILINEAR_CV", "CropX": 40}, r"crop \(224, 224\) at crop_offset \(16, 40\) leaves"),
])
def test_unmappable_values_are_refused_naming_the_property_and_value(tmp_path, make, changes, message):
    with pytest.raises(UsageError, match=message):
        vdsp_data_config(make(tmp_path, **changes), DataConfig())


def test_a_vamp_mean_must_be_a_bit_pattern(tmp_path):
    path = tmp_path / "float.json"
    entries = json.loads(open(vamp(tmp_path)).read())
    entries["config"][7]["DType"] = "FLOAT"
    path.write_text(json.dumps(entries))
    with pytest.raises(UsageError, match=r"meanr DType 'FLOAT': mean/std are float16 bit patterns"):
        read_vdsp_params(str(path))


def test_the_start_line_note_names_the_file_and_what_differs(tmp_path):
    config = vdsp_data_config(vamp(tmp_path), DataConfig())
    note = start_line_note(config)
    assert note.startswith(f"; preprocessing from vdsp_params {tmp_path / 'vamp.json'} (vamp layout")
    assert "interpolation 'opencv_bilinear' (model: 'bilinear')" in note
    assert start_line_note(DataConfig()) == ""
