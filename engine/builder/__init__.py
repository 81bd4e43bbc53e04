"""Building deploy models (``engine.build``): fp32, fp16 and int8 from an export or a zoo model.

- :mod:`engine.builder.config`: the YAML build config, with the seed compiler's names.
- :mod:`engine.builder.build`: the build driver, from source model to deploy folder;
  :mod:`engine.builder.source_model`: the fp32 model it starts from.
- :mod:`engine.builder.image_sets`: which images calibrate and which check;
  :mod:`engine.builder.calibration`: how they are fed.
- :mod:`engine.builder.quantize`: the int8 build; :mod:`engine.builder.cpu_target`: the
  int8 types for the CPU it is for.
- graph rewrites, each verified before it is kept (:mod:`engine.builder.verified_rewrites`):
  :mod:`engine.builder.pad_folding`, :mod:`engine.builder.channel_pairing`;
- int8 weight and bias tools: :mod:`engine.builder.weight_ranges`,
  :mod:`engine.builder.bias_correction`, :mod:`engine.builder.adaround`;
- accuracy: :mod:`engine.builder.accuracy` (the check), :mod:`engine.builder.float_fallback`,
  :mod:`engine.builder.error_budget`;
- :mod:`engine.builder.graph`: ONNX graph helpers the others share.
"""
