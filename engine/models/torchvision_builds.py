"""torchvision's classifiers built in the shape their trained weights run in.

``torchvision.models.get_model(name, weights=None)`` is not always the network that
torchvision returns with its weights: when a builder is given weights it changes some
arguments first, and the engine, which loads a user's checkpoint instead of downloading
them, must build what that checkpoint was trained as. What torchvision's builders do with
weights, read off their code:

- ViTs set ``image_size`` to the weights' ``min_size`` (vit_h_14's default weights are
  518 x 518, its ``weights=None`` network 224 x 224);
- GoogLeNet and Inception v3 set ``transform_input=True`` (the network re-normalizes its
  input from ImageNet's mean/std to its own) and ``init_weights=False`` (skipping their
  slow truncated-normal init, which the weights replace; seeded random weights here then
  take PyTorch's default init);
- GoogLeNet loads with its auxiliary heads, then drops them: its checkpoints come with
  ``aux1.*``/``aux2.*`` (torchvision's own file) or without them (a state dict of the
  returned network), and the heads play no part in eval.
"""
from __future__ import annotations

from torch import nn

TRANSFORM_INPUT = frozenset({"googlenet", "inception_v3"})
DROPPED_HEADS = {"googlenet": ("aux1", "aux2")}


def build(name: str) -> nn.Module:
    """``name``'s network, untrained, in its trained weights' shape."""
    import torchvision

    builder = torchvision.models.get_model_builder(name)
    kwargs = {}
    if builder.__module__ == "torchvision.models.vision_transformer":
        kwargs["image_size"] = torchvision.models.get_model_weights(name).DEFAULT.meta["min_size"][0]
    if name in TRANSFORM_INPUT:
        kwargs.update(transform_input=True, init_weights=False)
    if name in DROPPED_HEADS:
        kwargs["aux_logits"] = False
    return builder(weights=None, **kwargs)


def unused_checkpoint_prefixes(name: str) -> tuple[str, ...]:
    """Key prefixes a checkpoint of ``name`` may carry that its eval network has no place for."""
    return tuple(f"{head}." for head in DROPPED_HEADS.get(name, ()))
