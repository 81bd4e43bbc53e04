"""EfficientNet-Lite0's packaged ImageNet weights recognise real photos.

Preprocessing is torchvision's (Resize shorter side, CenterCrop, ToTensor, Normalize)
driven entirely by the data config the zoo attaches to the model.
"""
from __future__ import annotations

import pytest
import skimage.data
import torch
from PIL import Image
from torchvision import transforms

from engine.models import zoo

ESPRESSO = 967
CATS = {281, 282, 285}  # tabby, tiger cat, Egyptian cat


@pytest.fixture(scope="module")
def model():
    return zoo.create("efficientnet_lite0")


def preprocess(image, data_config):
    tf = transforms.Compose([
        transforms.Resize(data_config.resize, interpolation=transforms.InterpolationMode.BILINEAR),
        transforms.CenterCrop(data_config.crop),
        transforms.ToTensor(),
        transforms.Normalize(data_config.mean, data_config.std),
    ])
    return tf(Image.fromarray(image))[None]


def top1(model, name):
    with torch.no_grad():
        logits = model.module(preprocess(getattr(skimage.data, name)(), model.data_config))
    return int(logits.argmax(1))


def test_packaged_weights_are_used(model):
    assert model.weights["file"].endswith("efficientnet-lite0-57934424.pth")
    assert model.weights["sha256"].startswith("57934424")  # the file name carries its hash prefix


def test_coffee_is_espresso(model):
    index = top1(model, "coffee")
    assert index == ESPRESSO, model.class_names[index]
    assert model.class_names[index] == "espresso"


def test_chelsea_is_a_cat(model):
    index = top1(model, "chelsea")
    assert index in CATS, model.class_names[index]
