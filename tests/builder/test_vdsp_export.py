"""engine.builder.vdsp_export: a data config as a vamp-layout vdsp_params file, read back
by engine.data.vdsp_params to the same preprocessing, float16 mean/std aside, and the
lines saying what the layout cannot express."""
from __future__ import annotations

import numpy as np
import pytest

from engine.builder.vdsp_export import write_vdsp_params
from engine.data.dataconfig import DataConfig
from engine.data.vdsp_params import vdsp_data_config


@pytest.mark.parametrize("config", [
    DataConfig(),
    DataConfig(input_size=(3, 288, 288), resize=320, crop=288, interpolation="bicubic", mean=(0.5,) * 3,
               std=(0.5,) * 3),
    DataConfig(interpolation="opencv_bilinear", channel_order="BGR"),
])
def test_a_square_short_edge_config_reads_back_the_same(tmp_path, config):
    path, notes = write_vdsp_params(tmp_path, "timm", "net", config)
    assert path.name == "timm-net-vdsp_params.json"
    back = vdsp_data_config(str(path), config)
    for key in ("input_size", "resize", "crop", "interpolation", "channel_order", "crop_offset"):
        assert getattr(back, key) == getattr(config, key), key
    np.testing.assert_array_equal(back.mean, np.float16(config.mean).astype(np.float64))
    np.testing.assert_array_equal(back.std, np.float16(config.std).astype(np.float64))
    assert all("float16" in line for line in notes)  # 0.5 is exact in float16: then nothing to say
    assert bool(notes) == (config.mean != (0.5,) * 3)


def test_what_vamp_cannot_express_is_said():
    from engine.builder.vdsp_export import vamp_params

    squash = DataConfig(input_size=(3, 224, 192), resize=(224, 192), crop=(224, 192), interpolation="nearest")
    params, notes = vamp_params(squash)
    values = {e["Property"]: e["Value"] for e in params["config"]}
    assert (values["short_edge_threshold"], values["crop_size"], values["resize_type"]) == (192, 192, "NEAREST_CV")
    assert any(line.startswith("resize [224, 192] (both sides)") for line in notes)
    assert any(line.startswith("crop 224x192: vamp's crop_size is square") for line in notes)
    assert any("Pillow's nearest" in line for line in notes)
