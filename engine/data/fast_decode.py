"""``--fast-decode``: a JPEG far larger than the model's resize target is decoded at a
reduced DCT scale, then resized as usual.

libjpeg can decode a JPEG at 1/2, 1/4 or 1/8 of its size straight from the DCT
coefficients (PIL's ``Image.draft``), which skips most of the inverse DCT and colour
conversion work: on a 12 MP photo the decode, not the resize or the model, sets the rate.
The reduced image is not what the full decode followed by Pillow's resize gives, so this
is opt-in and the exact path stays the default everywhere (docs/pipeline.md has the
measured pixel error, top-1 agreement and logit SNR).

The decode keeps at least ``MARGIN`` times the resize target on each side, so the
kernel's antialiased resize still shrinks what libjpeg gives by 2x or more; a JPEG is
reduced only when that allows a scale of 1/2 or less (its shorter side at least
``2 * MARGIN`` times a shorter-side resize target: 1024 pixels for the usual 256), every
other image decodes exactly as without the option.
"""
from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

MARGIN = 2
_SCALES = (8, 4, 2)


@dataclass(frozen=True)
class Draft:
    """The least (width, height) a reduced decode may give; a square one for a
    shorter-side resize, whose orientation is not known until the file is opened."""

    width: int
    height: int

    @classmethod
    def for_resize(cls, resize) -> Draft:
        """The draft for a model resizing to ``resize``: an int (shorter side) or (height, width)."""
        if isinstance(resize, int):
            return cls(MARGIN * resize, MARGIN * resize)
        height, width = resize
        return cls(MARGIN * int(width), MARGIN * int(height))

    def reduction(self, width: int, height: int) -> int:
        """1, 2, 4 or 8: how much libjpeg shrinks a ``width x height`` JPEG (PIL's rule:
        the largest of those that keeps both sides at least this draft's)."""
        fits = min(width // self.width, height // self.height)
        return next((s for s in _SCALES if fits >= s), 1)


def apply(im: Image.Image, draft: Draft | None) -> int:
    """Ask PIL to decode the opened, not yet loaded ``im`` at a reduced scale when it is a
    JPEG that ``draft`` allows to shrink by 2 or more; returns the reduction (1: ``im``
    untouched, so it decodes exactly as without the option)."""
    if draft is None or im.format != "JPEG":
        return 1
    scale = draft.reduction(*im.size)
    if scale == 1 or im.draft(None, (draft.width, draft.height)) is None:
        return 1
    return scale
