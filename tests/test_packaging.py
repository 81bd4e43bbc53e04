"""What ``setup.py`` installs: the ``engine`` package alone, a core, and extras whose
packages are the ones :mod:`engine.data.extras` looks for."""
from __future__ import annotations

import importlib.metadata
import importlib.util
import runpy
from pathlib import Path

import pytest
import setuptools
from packaging.requirements import Requirement

from engine.data import extras, labels

REPO = Path(__file__).resolve().parents[1]
TOOLS = ("demo", "test", "bench")  # make install's own extras, not features of the engine


@pytest.fixture(scope="module")
def setup_kwargs():
    """setup()'s arguments, as setup.py computes them."""
    captured = {}
    original = setuptools.setup
    setuptools.setup = lambda **kwargs: captured.update(kwargs)
    try:
        runpy.run_path(str(REPO / "setup.py"))
    finally:
        setuptools.setup = original
    return captured


def _names(requirements) -> set[str]:
    return {Requirement(r).name.lower().replace("_", "-") for r in requirements}


def test_only_the_engine_package_is_installed(setup_kwargs):
    packages = setup_kwargs["packages"]
    assert "engine" in packages and "engine.kernels" in packages
    assert {p.partition(".")[0] for p in packages} == {"engine"}  # no kernels, bench or tests at the top
    assert set(setuptools.find_packages(where=str(REPO), include=["engine", "engine.*"])) == set(packages)


def test_every_extra_is_known_to_require_and_all_is_their_union(setup_kwargs):
    declared = setup_kwargs["extras_require"]
    features = {name for name in declared if name not in TOOLS and name != "all"}
    assert features == set(extras.EXTRA_MODULES)
    assert _names(declared["all"]) == set().union(*(_names(declared[name]) for name in features))
    assert not _names(setup_kwargs["install_requires"]) & _names(declared["all"])


def test_each_extra_installs_the_modules_require_looks_for(setup_kwargs):
    """Every import name in EXTRA_MODULES comes from a distribution the extra lists (read from
    the installed distributions' own records, so a renamed package is caught)."""
    providers = importlib.metadata.packages_distributions()
    for extra, modules in extras.EXTRA_MODULES.items():
        listed = _names(setup_kwargs["extras_require"][extra])
        for module in modules:
            dists = {d.lower().replace("_", "-") for d in providers.get(module, [])}
            assert dists & listed, f"{extra}: module {module} comes from {dists or 'nothing installed'}, not {listed}"


def test_require_names_the_extra_and_the_install_command(monkeypatch):
    extras.require("torch", "--model")  # installed here
    monkeypatch.setitem(extras.EXTRA_MODULES, "torch", ("torch", "no_such_module_in_any_install"))
    with pytest.raises(extras.MissingExtra) as caught:
        extras.require("torch", "--model")
    assert str(caught.value) == ("--model needs the torch extra: pip install 'vgg-stream-engine[torch]' "
                                 "(no module named 'no_such_module_in_any_install')")
    assert isinstance(caught.value, extras.UsageError)  # the commands' exit 2
    with pytest.raises(ValueError, match="extra 'tensorflow'"):
        extras.require("tensorflow", "--model")


def test_the_shipped_imagenet_lists_are_timms(setup_kwargs):
    """engine/data/imagenet_classes.tsv (read by the core install, which has no timm) holds
    exactly the wnids and lemmas timm ships."""
    info = Path(importlib.util.find_spec("timm").submodule_search_locations[0]) / "data" / "_info"
    wnids = info.joinpath("imagenet_synsets.txt").read_text().split()
    lemma_lines = info.joinpath("imagenet_synset_to_lemma.txt").read_text().splitlines()
    lemmas = dict(line.split("\t", 1) for line in lemma_lines)
    assert labels.imagenet_wnids() == tuple(wnids)
    assert labels.imagenet_class_names() == tuple(lemmas[w].strip() for w in wnids)
    assert labels.IMAGENET_CLASSES.name in setup_kwargs["package_data"]["engine.data"]
