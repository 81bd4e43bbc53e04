"""Parameter and multiply-accumulate counts measured on a built network.

The network is run once on a ``meta``-device input (shapes only, no arithmetic, no
memory). Three figures come out:

- ``macs``: multiply-accumulates of every matrix product and convolution, as torch's
  ``FlopCounterMode`` counts them at the operator level (half its FLOPs): the usual
  "FLOPs" of timm/torchvision model cards. Counting at the operator level, not per
  layer, takes in what no ``nn.Linear`` call shows: attention's products and
  ``nn.MultiheadAttention``'s projections, which it applies as functions (a torchvision
  ViT read 36% low counted per layer; ``FlopCounterMode`` gives torchvision's published
  figures);
- ``mmcv_flops``, from forward hooks on the layers: the figure mmcv's ``get_model_complexity_info`` prints and the mmcls
  model cards quote: conv MACs plus one add per output for a bias, plus one op per element
  of every ReLU output, pooling input and (x2 when affine) batch-norm output;
- ``bn_elements``: batch-norm output elements. The timm/torchvision cards' figures for the
  ``_bn`` VGGs are ``macs + 4 * bn_elements`` (subtract mean, divide by std, scale, shift).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from engine.models.catalog import Complexity


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _per_sample(t: torch.Tensor) -> int:
    return t.numel() // t.shape[0]


def measure(module: nn.Module, input_size: tuple[int, int, int]) -> Complexity:
    """Counts for one sample of ``input_size`` (C, H, W) through ``module``.

    The module may live on the ``meta`` device (built under ``torch.device("meta")``),
    which makes this instant even for VGG's 140M parameters.
    """
    counts = {"mmcv": 0, "bn": 0}

    def on_conv(m: nn.Conv2d, inputs, output):
        kernel_ops = (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        outs = _per_sample(output)
        counts["mmcv"] += outs * kernel_ops + (outs if m.bias is not None else 0)

    def on_linear(m: nn.Linear, inputs, output):
        counts["mmcv"] += _per_sample(output) * m.in_features

    def on_elementwise(m, inputs, output):
        counts["mmcv"] += _per_sample(output)

    def on_pool(m, inputs, output):
        counts["mmcv"] += _per_sample(inputs[0])

    def on_batchnorm(m: nn.modules.batchnorm._BatchNorm, inputs, output):
        counts["mmcv"] += _per_sample(output) * (2 if m.affine else 1)
        counts["bn"] += _per_sample(output)

    hooks = []
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(on_conv))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(on_linear))
        elif isinstance(m, (nn.ReLU, nn.ReLU6)):
            hooks.append(m.register_forward_hook(on_elementwise))
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
            hooks.append(m.register_forward_hook(on_pool))
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            hooks.append(m.register_forward_hook(on_batchnorm))
    device = next(module.parameters()).device
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as flop_counter:
            module(torch.empty((1, *input_size), device=device))
    finally:
        for h in hooks:
            h.remove()
        module.train(was_training)
    return Complexity(params=count_params(module), macs=flop_counter.get_total_flops() // 2,
                      mmcv_flops=counts["mmcv"], bn_elements=counts["bn"])
