"""One decoded image into one input slot, as the model's library preprocesses it.

Every preprocessing site (the engine's preprocess workers, the server, calibration and
the accuracy check of a build) writes through a :class:`Preprocessing` built from the
model's data config, so they cannot disagree. The fused kernel does the work whenever it
reproduces the library's transform bit for bit (``DataConfig.kernel_limitation``);
otherwise the library's own transform runs (PIL image from the array, the transform,
copied into the slot): same numbers, slower, and said once in a notice by the commands
that preprocess (``announce``). A config from a vendor ``vdsp_params`` file that the kernel
does not reproduce (OpenCV's resize, a crop at offsets, BGR) runs on the direct path of
:mod:`engine.models.direct_preprocessing` (cv2 or Pillow, as the file names). uint8 slots
(the device normalizes) exist on the kernel and direct paths, since a library transform
ends in its own Normalize.
"""
from __future__ import annotations

import functools
import sys
from collections.abc import Callable

import numpy as np

from engine import kernels
from engine.data.dataconfig import DataConfig
from engine.kernels.resize_crop import check_image
from engine.models import direct_preprocessing


def library_transform(recipe: dict) -> Callable:
    """The library's eval transform that ``recipe`` (a data config's ``library_transform``)
    names: PIL image in, normalized CHW float32 tensor out."""
    if recipe["library"] == "timm":
        import timm

        return timm.data.create_transform(**recipe["config"])
    import torchvision

    return torchvision.models.get_weight(recipe["weights"]).transforms()


class Preprocessing:
    """Writes a uint8 HWC image (any strides, as ``engine.data.decode`` gives it) into a
    (3, H, W) float32/float16 slot (uint8 on the kernel path only); ``model`` names the
    model in messages (the config's source when None)."""

    def __init__(self, config: DataConfig, model: str | None = None):
        self.config = config
        self.model = model or config.source or "(unnamed)"
        self.reason = config.kernel_limitation()
        self.direct = self.reason is not None and direct_preprocessing.needs_direct_path(config)
        if self.reason is not None and not self.direct and config.library_transform is None:
            raise ValueError(f"model {self.model}: the kernel cannot preprocess it ({self.reason}) and its data "
                             f"config has no library_transform to run instead")

    @property
    def on_kernel(self) -> bool:
        return self.reason is None

    @functools.cached_property
    def transform(self) -> Callable:
        """The library's transform, built on first use (the broker only checks and announces)."""
        return library_transform(self.config.library_transform)

    @property
    def notice(self) -> str | None:
        """One line for the user when the slower library path runs, else None."""
        if self.on_kernel:
            return None
        if self.direct:
            library = "OpenCV" if self.config.interpolation.startswith("opencv") else "Pillow"
            return (f"model {self.model}: preprocessing runs through {library}'s resize as its data config says, "
                    f"slower than the fused kernel ({self.reason})")
        return (f"model {self.model}: preprocessing runs through {self.config.library_transform['library']}'s "
                f"own transform, slower than the fused kernel ({self.reason})")

    def check_output_dtype(self, dtype) -> None:
        """Refuses a slot dtype this path cannot write (uint8 off the kernel path)."""
        if np.dtype(dtype) == np.uint8 and not (self.on_kernel or self.direct):
            raise ValueError(f"model {self.model}: uint8 input slots (--normalize-on device) need the fused "
                             f"kernel, and its preprocessing runs through its library ({self.reason})")

    def __call__(self, img: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``img`` preprocessed into ``out`` (a new float32 array when None); returns it."""
        cfg = self.config
        if self.on_kernel:
            if out is not None and out.dtype == np.uint8:
                return kernels.resize_crop_uint8(img, out, resize=cfg.resize, crop=cfg.crop,
                                                 interpolation=cfg.interpolation)
            return kernels.resize_crop_normalize(img, out, resize=cfg.resize, crop=cfg.crop,
                                                 interpolation=cfg.interpolation, mean=cfg.mean, std=cfg.std)
        if self.direct:
            return direct_preprocessing.preprocess(img, cfg, out)
        return self._through_library(img, out)

    def _through_library(self, img: np.ndarray, out: np.ndarray | None) -> np.ndarray:
        from PIL import Image

        img = check_image(img)
        if out is not None:
            self.check_output_dtype(out.dtype)
        tensor = self.transform(Image.fromarray(np.ascontiguousarray(img)))
        result = tensor.numpy()
        if result.shape != tuple(self.config.input_size):
            raise ValueError(f"model {self.model}: its library's transform gave {tuple(result.shape)}, "
                             f"the data config's input_size is {tuple(self.config.input_size)}")
        if out is None:
            return result.copy()
        np.copyto(out, result, casting="same_kind")
        return out

    def warm_up(self, dtype) -> None:
        """Runs once on every array layout items arrive as (decoded images: contiguous and
        read-only HWC; npz arrays: CHW seen through a transposed view), so the compiled
        kernel is loaded before timing starts."""
        _, height, width = self.config.input_size
        contiguous = np.zeros((height, width, 3), np.uint8)
        readonly = contiguous.copy()
        readonly.flags.writeable = False
        out = np.empty(self.config.input_size, dtype)
        for sample in (contiguous, readonly, np.zeros((3, height, width), np.uint8).transpose(1, 2, 0)):
            self(sample, out)


@functools.cache
def announce(notice: str | None) -> None:
    """Prints a preprocessing notice once per process (None: nothing to say)."""
    if notice:
        print(f"engine: notice: {notice}", file=sys.stderr, flush=True)
