"""VGG as mmcls (mmclassification / mmpretrain) builds it, without depending on mmcls.

Written from mmcls's own definition so that its checkpoints load by their own key names:

- ``mmcls/models/backbones/vgg.py`` (open-mmlab/mmpretrain, 0.x branch; identical in
  ``mmpretrain/models/backbones/vgg.py``): ``VGG.arch_settings`` gives the convs per stage;
  ``make_vgg_layer`` appends one mmcv ``ConvModule`` (3x3, padding 1, bias=True) per conv
  and one ``MaxPool2d(2, 2)`` per stage into a single ``nn.Sequential`` named
  ``features``; ``classifier`` is ``Linear(25088, 4096), ReLU, Dropout, Linear(4096,
  4096), ReLU, Dropout, Linear(4096, num_classes)``. There is no adaptive pooling: the
  features are flattened as they are, so the input must be 224x224.
- ``mmcv/cnn/bricks/conv_module.py`` / ``norm.py``: a ``ConvModule`` holds ``conv`` and,
  with ``norm_cfg=dict(type='BN')``, a ``BatchNorm2d`` registered under the name ``bn``;
  its ReLU (``activate``) has no parameters.
- ``configs/_base_/models/vgg11.py`` / ``vgg11bn.py``: ``ImageClassifier`` with
  ``backbone=dict(type='VGG', depth=11[, norm_cfg=dict(type='BN')], num_classes=1000)``,
  no neck and a parameter-free ``ClsHead``, so every key starts with ``backbone.``:
  ``backbone.features.0.conv.weight``, ``backbone.features.0.bn.running_mean``, ...,
  ``backbone.classifier.6.bias``.
"""
from __future__ import annotations

import torch
from torch import nn

CONVS_PER_STAGE = {
    11: (1, 1, 2, 2, 2),
    13: (2, 2, 2, 2, 2),
    16: (2, 2, 3, 3, 3),
    19: (2, 2, 4, 4, 4),
}


class ConvModule(nn.Module):
    """mmcv's ConvModule as VGG uses it: conv (with bias), optional ``bn``, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, with_norm: bool):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=True)
        if with_norm:
            self.bn = nn.BatchNorm2d(out_channels)
        self.activate = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if hasattr(self, "bn"):
            x = self.bn(x)
        return self.activate(x)


class VGGBackbone(nn.Module):
    def __init__(self, depth: int, with_norm: bool, num_classes: int = 1000):
        super().__init__()
        if depth not in CONVS_PER_STAGE:
            raise ValueError(f"mmcls VGG depth {depth}: choose from {sorted(CONVS_PER_STAGE)}")
        layers: list[nn.Module] = []
        in_channels = 3
        for stage, n_convs in enumerate(CONVS_PER_STAGE[depth]):
            out_channels = 64 * 2**stage if stage < 4 else 512
            for _ in range(n_convs):
                layers.append(ConvModule(in_channels, out_channels, with_norm))
                in_channels = out_channels
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(True),
            nn.Dropout(),
            nn.Linear(4096, 4096),
            nn.ReLU(True),
            nn.Dropout(),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.classifier(x.flatten(1))


class MmclsVGG(nn.Module):
    """mmcls ``ImageClassifier`` around the VGG backbone: returns the logits."""

    def __init__(self, depth: int, with_norm: bool, num_classes: int = 1000):
        super().__init__()
        self.backbone = VGGBackbone(depth, with_norm, num_classes)
        self.init_weights()

    def init_weights(self) -> None:
        """mmcls VGG's init_cfg: Kaiming for convs, 1 for BN, Normal(std=0.01) for linears."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                m.reset_running_stats()
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (224, 224):
            raise ValueError(f"mmcls VGG takes 224x224 input (no adaptive pooling), got {tuple(x.shape[-2:])}")
        return self.backbone(x)


def build(name: str, num_classes: int = 1000) -> MmclsVGG:
    """``vgg11`` ... ``vgg19_bn`` as mmcls builds it, initialised as mmcls does.

    The layers are created on the ``meta`` device and initialised once, by mmcls's rule,
    instead of first by torch's default rule (half the time for 130M parameters).
    """
    base, _, suffix = name.partition("_")
    if not base.startswith("vgg") or not base[3:].isdigit() or suffix not in ("", "bn"):
        raise ValueError(f"mmcls model {name!r}: expected vgg11, vgg11_bn, ..., vgg19_bn")
    device = torch.get_default_device()
    with torch.device("meta"):
        net = MmclsVGG(int(base[3:]), with_norm=suffix == "bn", num_classes=num_classes)
    if device.type != "meta":
        net.to_empty(device=device)
        net.init_weights()
    return net
