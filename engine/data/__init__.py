"""The data side: files in and out, and what they mean.

- :mod:`engine.data.decode`: images and npz to uint8 HWC, with named errors.
- :mod:`engine.data.datalist`: datalists and image folders.
- :mod:`engine.data.labels`: label files, folder labels, ImageNet class names.
- :mod:`engine.data.dataconfig`: the preprocessing a model expects, and the model-info JSON.
- :mod:`engine.data.topk_text`: the sample script's top-k text format.
- :mod:`engine.data.npz_convert`, :mod:`engine.data.val_layout`, :mod:`engine.data.scoring`:
  the logic of ``engine.image2npz``, ``engine.valprep`` and ``engine.eval``.
"""
