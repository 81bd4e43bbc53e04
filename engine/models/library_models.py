"""Every image classifier the installed timm and torchvision offer, by name.

The zoo's table (:mod:`engine.models.catalog`) holds the 24 VGG rows and EfficientNet-Lite0
with their measured counts and reference accuracies; any other name is looked up in the
libraries themselves: ``timm.list_models()`` plus its pretrained tags
(``timm.list_pretrained()``, e.g. ``resnet50.a1_in1k``) and
``torchvision.models.list_models(module=torchvision.models)`` (the classification models
only). A name both libraries have comes from timm unless ``library`` says otherwise. An
unknown name is refused with its closest matches rather than the thousands of names that
exist. The libraries are imported only here, and only for a name outside the table.
"""
from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass

from engine.data.extras import require
from engine.models import catalog
from engine.models.catalog import UnknownModelError

LIBRARY_SOURCES = ("timm", "torchvision")
CLOSE_MATCHES = 6


@dataclass(frozen=True)
class ModelRef:
    """A model as resolved: its name and the library (or zoo source) that builds it.

    ``entry`` is the zoo table's row for a table model (VGG, EfficientNet-Lite0), None for
    any other classifier of timm or torchvision.
    """

    name: str
    library: str
    entry: catalog.Entry | None = None

    @property
    def in_table(self) -> bool:
        return self.entry is not None


@functools.cache
def library_names(library: str) -> frozenset[str]:
    """The classifier names ``library`` offers (timm: architectures and pretrained tags)."""
    if library in LIBRARY_SOURCES:
        require("torch", f"a {library} model")
    if library == "timm":
        import timm

        return frozenset(timm.list_models()) | frozenset(timm.list_pretrained())
    if library == "torchvision":
        import torchvision

        return frozenset(torchvision.models.list_models(module=torchvision.models))
    raise UnknownModelError(f"library {library!r}: choose from {', '.join(catalog.LIBRARIES)} "
                            f"(or {catalog.EFFICIENTNET_LIBRARY} for efficientnet_lite0)")


@functools.cache
def library_version(library: str) -> str:
    """The installed version of ``library`` (part of every cache key: a new version may build
    a different network under the same name)."""
    import importlib.metadata

    if library in LIBRARY_SOURCES:
        return importlib.metadata.version(library)
    return "table"


def _close_matches(name: str) -> list[str]:
    names = sorted(set().union(*(library_names(lib) for lib in LIBRARY_SOURCES)) |
                   {e.name for e in catalog.entries()})
    return difflib.get_close_matches(name, names, n=CLOSE_MATCHES, cutoff=0.6)


def _unknown(name: str) -> UnknownModelError:
    versions = ", ".join(f"{lib} {library_version(lib)}" for lib in LIBRARY_SOURCES)
    matches = _close_matches(name)
    hint = f"; close matches: {', '.join(matches)}" if matches else "; see python -m engine.zoo list --all"
    return UnknownModelError(f"model {name!r} is not in the zoo's table nor in {versions}{hint}")


def resolve_model_ref(name: str, library: str | None = None) -> ModelRef:
    """``name`` from ``library``: the zoo's table first (as :func:`catalog.resolve`), then the
    libraries (None: timm when it has the name, else torchvision)."""
    if name in {e.name for e in catalog.entries()}:
        entry = catalog.resolve(name, library)
        return ModelRef(entry.name, entry.library, entry)
    if library is not None and library not in LIBRARY_SOURCES:
        if library in catalog.LIBRARIES or library == catalog.EFFICIENTNET_LIBRARY:
            raise UnknownModelError(f"model {name!r} is not offered by {library!r}, which has the VGG "
                                    f"family only; timm and torchvision offer every other classifier")
        library_names(library)  # raises the unknown library's error
    offered = [lib for lib in LIBRARY_SOURCES if name in library_names(lib)]
    if not offered:
        raise _unknown(name)
    if library is None:
        return ModelRef(name, offered[0])
    if library not in offered:
        raise UnknownModelError(f"model {name!r} is not offered by {library} {library_version(library)}; "
                                f"it is by {', '.join(offered)}")
    return ModelRef(name, library)
