"""The zoo's table: sizes and costs measured on the built networks match the seed's table."""
from __future__ import annotations

import json

import pytest
import torch

from engine import zoo as zoo_command
from engine.data.dataconfig import IMAGENET_MEAN, IMAGENET_STD
from engine.data.labels import imagenet_class_names
from engine.models import catalog, zoo

# The seed's reference table (shared/seed/README-en.md): (top1, top5, flops G, params M).
SEED_TABLE = {
    ("vgg11", "timm"): (69.028, 88.626, 7.609, 132.863),
    ("vgg11_bn", "timm"): (70.360, 89.802, 7.639, 132.869),
    ("vgg13", "timm"): (69.926, 89.246, 11.308, 133.048),
    ("vgg13_bn", "timm"): (71.594, 90.376, 11.357, 133.054),
    ("vgg16", "timm"): (71.590, 90.382, 15.47, 138.358),
    ("vgg16_bn", "timm"): (73.350, 91.504, 15.524, 138.366),
    ("vgg19", "timm"): (72.366, 90.870, 19.632, 143.667),
    ("vgg19_bn", "timm"): (74.214, 91.848, 19.691, 143.678),
    ("vgg11", "torchvision"): (69.02, 88.626, 7.609, 132.863),
    ("vgg11_bn", "torchvision"): (70.37, 89.81, 7.639, 132.869),
    ("vgg13", "torchvision"): (69.928, 89.246, 11.308, 133.048),
    ("vgg13_bn", "torchvision"): (71.586, 90.374, 11.357, 133.054),
    ("vgg16", "torchvision"): (71.592, 90.382, 15.47, 138.358),
    ("vgg16_bn", "torchvision"): (73.36, 91.516, 15.524, 138.366),
    ("vgg19", "torchvision"): (72.376, 90.876, 19.632, 143.667),
    ("vgg19_bn", "torchvision"): (74.218, 91.842, 19.691, 143.678),
    ("vgg11", "mmcls"): (68.75, 88.87, 7.63, 132.86),
    ("vgg11_bn", "mmcls"): (70.75, 90.12, 7.64, 132.87),
    ("vgg13", "mmcls"): (70.02, 89.46, 11.34, 133.05),
    ("vgg13_bn", "mmcls"): (72.15, 90.71, 11.36, 133.05),
    ("vgg16", "mmcls"): (71.62, 90.49, 15.5, 138.36),
    ("vgg16_bn", "mmcls"): (73.72, 91.68, 15.53, 138.37),
    ("vgg19", "mmcls"): (72.41, 90.80, 19.67, 143.67),
    ("vgg19_bn", "mmcls"): (74.70, 92.24, 19.7, 143.68),
}
DIGITS = {"timm": 3, "torchvision": 3, "mmcls": 2}  # the table's printed precision


@pytest.fixture(scope="module")
def rows():
    return {(r["name"], r["library"]): r for r in catalog.list_models()}


def test_every_vgg_from_every_library_is_listed(rows):
    assert set(SEED_TABLE) <= set(rows)
    assert ("efficientnet_lite0", catalog.EFFICIENTNET_LIBRARY) in rows
    assert len(rows) == 25


@pytest.mark.parametrize("key", sorted(SEED_TABLE))
def test_measured_params_equal_the_seed_table(rows, key):
    digits = DIGITS[key[1]]
    assert round(rows[key]["params_m"], digits) == pytest.approx(SEED_TABLE[key][3], abs=1e-9)


@pytest.mark.parametrize("key", sorted(k for k in SEED_TABLE if not k[0].endswith("_bn")))
def test_conv_linear_gmacs_equal_the_seed_flops_for_plain_vggs(rows, key):
    if key[1] == "mmcls":
        # mmcv's counter (which the mmcls card used) adds bias, ReLU and pooling ops:
        # the conv+linear MACs are those of the same network from timm.
        assert rows[key]["gmacs"] == rows[(key[0], "timm")]["gmacs"]
    else:
        assert round(rows[key]["gmacs"], 3) == pytest.approx(SEED_TABLE[key][2], abs=1e-9)


@pytest.mark.parametrize("key", sorted(SEED_TABLE))
def test_card_flops_reproduce_every_seed_flops_figure(rows, key):
    digits = DIGITS[key[1]]
    assert round(rows[key]["gflops_card"], digits) == pytest.approx(SEED_TABLE[key][2], abs=1e-9)


@pytest.mark.parametrize("key", sorted(SEED_TABLE))
def test_reference_accuracy_beside_each_row(rows, key):
    assert (rows[key]["ref_top1"], rows[key]["ref_top5"]) == pytest.approx(SEED_TABLE[key][:2])


def test_list_cli_prints_table_and_json(capsys):
    assert zoo_command.main(["list"]) == 0
    table = capsys.readouterr().out
    assert "132.863" in table and "random" not in table
    assert sum(1 for line in table.splitlines() if line.startswith("vgg")) == 24
    assert zoo_command.main(["list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data == json.loads(json.dumps(catalog.list_models()))
    assert data[0].keys() >= {"name", "library", "params_m", "gmacs", "ref_top1", "ref_top5"}


def test_efficientnet_lite0_measured_size():
    c = zoo.complexity("efficientnet_lite0")
    assert round(c.params_m, 2) == 4.65  # EfficientNet-Lite0: 4.7M params
    assert 0.35 < c.gmacs < 0.42  # ~0.4 G multiply-adds


def test_every_model_carries_its_data_config():
    for spec in zoo.specs():
        cfg = spec.data_config
        assert (cfg.resize, cfg.crop, cfg.interpolation, cfg.num_classes) == (256, 224, "bilinear", 1000)
        assert cfg.input_size == (3, 224, 224)
        assert cfg.mean == pytest.approx(IMAGENET_MEAN) and cfg.std == pytest.approx(IMAGENET_STD)


def test_timm_data_config_comes_from_timm_pretrained_cfg():
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg("vgg16_bn")
    ours = zoo.get_spec("vgg16_bn", "timm").data_config
    assert ours.mean == tuple(cfg.mean) and ours.std == tuple(cfg.std)
    assert ours.resize == round(cfg.input_size[-1] / cfg.crop_pct)


def test_seeded_random_weights_are_reproducible_and_labelled():
    a = zoo.create("vgg11", "mmcls", seed=3)
    b = zoo.create("vgg11", "mmcls", seed=3)
    first_conv = "backbone.features.0.conv.weight"
    assert torch.equal(a.module.state_dict()[first_conv], b.module.state_dict()[first_conv])
    assert a.weights == {"random": True, "seed": 3}
    assert a.weights_label == "random weights (seed 3)"
    assert not a.module.training
    assert a.class_names == list(imagenet_class_names()) and len(a.class_names) == 1000
    # mmcls's init draws the first conv's Kaiming-normal weights first from the seeded RNG
    with torch.random.fork_rng():
        torch.manual_seed(3)
        expected = torch.nn.init.kaiming_normal_(torch.empty(64, 3, 3, 3), mode="fan_out", nonlinearity="relu")
    assert torch.equal(a.module.state_dict()[first_conv], expected)


def test_unknown_model_or_library_is_a_clear_error():
    with pytest.raises(catalog.UnknownModelError, match="vgg12.*not in the zoo.*vgg11"):
        zoo.create("vgg12")
    with pytest.raises(catalog.UnknownModelError, match="not offered by 'keras'"):
        zoo.get_spec("vgg11", "keras")
    assert not issubclass(catalog.UnknownModelError, KeyError)  # a bug's bare KeyError is not "unknown model"


def test_single_source_model_ignores_the_default_library():
    model = zoo.create("efficientnet_lite0", library="timm")
    assert model.library == catalog.EFFICIENTNET_LIBRARY
    assert model.weights_label.startswith("weights efficientnet-lite0-57934424.pth (sha256 57934424")
