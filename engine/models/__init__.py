"""The model side: the zoo table and builders, checkpoint loading, ONNX export, the model
cache, parameter/MAC counts, and the network definitions no installed library provides.

- :mod:`engine.models.zoo`: every zoo entry with its data config; ``create`` builds one.
- :mod:`engine.models.checkpoints`: timm/torchvision/mmcls/safetensors weights across key layouts.
- :mod:`engine.models.onnx_export`: ONNX + model-info JSON, checked against torch.
- :mod:`engine.models.cache`: ``--model NAME`` exported once per user.
- :mod:`engine.models.flops`: parameters and MACs measured on the built network.
- ``mmcls_vgg``, ``efficientnet_lite``, ``tinynet``: network definitions (tinynet: tiny
  seeded models for tests and benchmarks).
"""
