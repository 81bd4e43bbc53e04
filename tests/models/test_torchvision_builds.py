"""torchvision's classifiers built as their trained weights run (engine.models.torchvision_builds):
the parameter and multiply-accumulate counts torchvision publishes for each default weights
(ViTs' attention included), and checkpoints in the
layouts a user has (torchvision's own file, a saved ``state_dict()``, safetensors) giving
the outputs of the network torchvision would return with those weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from safetensors.torch import save_file
from torchvision.models import GoogLeNet

from engine.models import zoo

SAMPLED = ("googlenet", "inception_v3", "vit_h_14", "vit_b_16", "swin_t", "regnet_y_400mf", "mnasnet0_5", "resnet18")


def _published(name: str) -> tuple[int, float]:
    """torchvision's parameter count and GFLOPS (multiply-accumulates, 3 decimals) for the default weights."""
    meta = torchvision.models.get_model_weights(name).DEFAULT.meta
    return meta["num_params"], meta["_ops"]


def _measured(name: str) -> tuple[int, float]:
    counts = zoo.complexity(name, "torchvision")
    return counts.params, round(counts.macs / 1e9, 3)


@pytest.mark.parametrize("name", SAMPLED)
def test_parameters_and_macs_equal_what_torchvision_publishes_for_the_weights(name):
    assert _measured(name) == _published(name)


@pytest.mark.slow
def test_every_classifier_has_the_published_parameters_and_macs():
    names = torchvision.models.list_models(module=torchvision.models)
    pairs = {n: (_measured(n), _published(n)) for n in names}
    assert not {n: pair for n, pair in pairs.items() if pair[0] != pair[1]}


def _outputs(module: torch.nn.Module, batch: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return module.eval()(batch).numpy()


def test_googlenet_checkpoints_with_and_without_aux_heads_run_as_torchvision_trained_it(tmp_path):
    """torchvision loads GoogLeNet's weights into a network that re-normalizes its input
    (transform_input) with auxiliary heads, then drops the heads: its own file has them, a
    state dict of the returned network does not. Both load; both give that network's outputs."""
    torch.manual_seed(3)
    trained = GoogLeNet(transform_input=True, aux_logits=True, init_weights=False)
    with_aux = tmp_path / "googlenet-file.pth"
    torch.save(trained.state_dict(), with_aux)
    without_aux = tmp_path / "googlenet-finetuned.safetensors"
    save_file({k: v.contiguous() for k, v in trained.state_dict().items() if not k.startswith("aux")},
              str(without_aux))
    batch = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    expected = _outputs(trained, batch)
    for weights in (with_aux, without_aux):
        model = zoo.create("googlenet", "torchvision", weights=weights)
        assert model.module.aux1 is None and model.module.transform_input
        np.testing.assert_allclose(_outputs(model.module, batch), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["mnasnet0_5", "regnet_y_400mf"])
def test_checkpoints_load_into_networks_with_versioned_or_computed_layouts(tmp_path, name):
    """MNASNet refuses a state dict without torch's per-module version metadata (a plain
    dict, a safetensors file); RegNet computes its widths with tensors, so it cannot be
    built on the meta device. Both load from a .pth and a .safetensors file."""
    torch.manual_seed(5)
    trained = torchvision.models.get_model(name, weights=None)
    pth, safetensors = tmp_path / "w.pth", tmp_path / "w.safetensors"
    torch.save(trained.state_dict(), pth)
    save_file({k: v.contiguous() for k, v in trained.state_dict().items()}, str(safetensors))
    batch = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    expected = _outputs(trained, batch)
    for weights in (pth, safetensors):
        got = _outputs(zoo.create(name, "torchvision", weights=weights).module, batch)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
