"""A model repository in Triton's layout: what each model folder holds, read without loading anything.

::

    DIR/<model>/config.pbtxt          optional, Triton's protobuf text format (ModelConfig)
    DIR/<model>/<version>/model.onnx  an ONNX classifier, its model-info JSON (model.json) beside it
    DIR/<model>/<version>/zoo.json    or: {"model": NAME, "library": ..., "weights": ..., "seed": ...}

``config.pbtxt`` is parsed with protobuf's ``text_format`` into the ``ModelConfig`` message
that tritonclient's gRPC package ships, so a field Triton does not know is an error, as in
Triton. Read: ``name`` (must match the folder), ``max_batch_size``, ``dynamic_batching {
max_queue_delay_microseconds }``, ``instance_group { count }`` (summed over groups) and
``version_policy`` (latest N, all, specific). Everything else is accepted and ignored.

A folder that cannot be read becomes a :class:`ModelEntry` with an ``error`` (the index
reports it); it never stops the scan.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from engine.data.extras import require

CONFIG_FILE = "config.pbtxt"
ONNX_FILE = "model.onnx"
ZOO_FILE = "zoo.json"


class RepositoryError(ValueError):
    """A model folder that cannot be served; the message names the file and the reason."""


@dataclass(frozen=True)
class ZooSource:
    """A zoo/timm/torchvision classifier named by a ``zoo.json``; exported to ONNX when loaded."""

    model: str
    library: str | None = None
    weights: str | None = None
    seed: int = 0


@dataclass(frozen=True)
class VersionSource:
    """One numbered version folder: an ONNX file, or a zoo model."""

    version: int
    onnx: Path | None = None
    zoo: ZooSource | None = None


@dataclass(frozen=True)
class Settings:
    """What a model's config sets for its batcher and instances (None: the server's flag)."""

    max_batch: int | None = None
    max_queue_delay_us: int | None = None
    instances: int | None = None


@dataclass
class ModelEntry:
    """A model folder as found on disk: its served versions and settings, or why it cannot be served."""

    name: str
    versions: list[VersionSource] = field(default_factory=list)
    settings: Settings = Settings()
    fingerprint: tuple = ()
    error: str | None = None


def scan(root: Path) -> dict[str, ModelEntry]:
    """Every model folder of ``root`` (hidden ones skipped), by name."""
    if not root.is_dir():
        raise RepositoryError(f"--model-repository {root}: no such directory")
    return {folder.name: read_model(folder) for folder in sorted(root.iterdir())
            if folder.is_dir() and not folder.name.startswith(".")}


def fingerprint(folder: Path) -> tuple:
    """(path, size, mtime) of every file below ``folder``: a change means a reload."""
    found = []
    for path in sorted(folder.rglob("*")):
        try:
            stat = path.stat()
        except OSError:  # removed while scanning: the next scan sees the change
            continue
        if path.is_file():
            found.append((str(path.relative_to(folder)), stat.st_size, stat.st_mtime_ns))
    return tuple(found)


def read_model(folder: Path) -> ModelEntry:
    entry = ModelEntry(folder.name, fingerprint=fingerprint(folder))
    try:
        config = read_config(folder)
        entry.settings = _settings(config)
        entry.versions = _policy(config, [_version(path) for path in sorted(folder.iterdir(), key=_numeric)
                                          if path.is_dir() and path.name.isdigit()])
        if not entry.versions:
            raise RepositoryError(f"{folder}: no version folder (a number, e.g. {folder}/1/{ONNX_FILE}) "
                                  "that the version policy serves")
    except RepositoryError as e:
        entry.error = str(e)
    return entry


def _numeric(path: Path) -> int:
    return int(path.name) if path.name.isdigit() else -1


def read_config(folder: Path):
    """The folder's ``config.pbtxt`` (a ``ModelConfig``), or None when it has none; its
    message type is tritonclient's, so a ``config.pbtxt`` needs the serve extra."""
    path = folder / CONFIG_FILE
    if not path.is_file():
        return None
    require("serve", f"{path}")
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    config = model_config_pb2.ModelConfig()
    try:
        text_format.Parse(path.read_text(), config)
    except (text_format.ParseError, UnicodeDecodeError) as e:
        raise RepositoryError(f"{path}: {e}") from None
    if config.name and config.name != folder.name:
        raise RepositoryError(f"{path}: name {config.name!r} does not match the folder {folder.name!r}")
    return config


def _settings(config) -> Settings:
    """max_batch_size 0 (Triton: the model does not batch) serves batches of one."""
    if config is None:
        return Settings()
    if config.max_batch_size < 0:
        raise RepositoryError(f"{CONFIG_FILE}: max_batch_size {config.max_batch_size} must be >= 0")
    count = sum(group.count for group in config.instance_group)
    delay = config.dynamic_batching.max_queue_delay_microseconds if config.HasField("dynamic_batching") else None
    return Settings(max_batch=max(config.max_batch_size, 1), max_queue_delay_us=delay, instances=count or None)


def _policy(config, versions: list[VersionSource]) -> list[VersionSource]:
    """The versions ``config.version_policy`` serves (Triton's default: the latest one)."""
    if config is None:
        return versions[-1:]
    policy = config.version_policy
    kind = policy.WhichOneof("policy_choice")
    if kind == "all":
        return versions
    if kind == "specific":
        wanted = set(policy.specific.versions)
        return [v for v in versions if v.version in wanted]
    count = policy.latest.num_versions if kind == "latest" else 1
    return versions[-count:] if count > 0 else []


def _version(folder: Path) -> VersionSource:
    number = int(folder.name)
    onnx, zoo = folder / ONNX_FILE, folder / ZOO_FILE
    if onnx.is_file():
        return VersionSource(number, onnx=onnx)
    if zoo.is_file():
        return VersionSource(number, zoo=read_zoo(zoo))
    raise RepositoryError(f"{folder}: neither {ONNX_FILE} nor {ZOO_FILE}")


def read_zoo(path: Path) -> ZooSource:
    """``{"model": NAME, "library": "timm"|"torchvision"|"mmcls", "weights": FILE, "seed": N}``; only
    ``model`` is required, a relative ``weights`` path is read from the version folder."""
    try:
        spec = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise RepositoryError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("model"), str):
        raise RepositoryError(f"{path}: expected an object with a string 'model'")
    unknown = set(spec) - {"model", "library", "weights", "seed"}
    if unknown:
        raise RepositoryError(f"{path}: unknown keys {sorted(unknown)}")
    library, weights, seed = spec.get("library"), spec.get("weights"), spec.get("seed", 0)
    if library is not None and not isinstance(library, str) or weights is not None and not isinstance(weights, str):
        raise RepositoryError(f"{path}: 'library' and 'weights' must be strings")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise RepositoryError(f"{path}: 'seed' must be an integer")
    if weights is not None:
        weights = str(path.parent / weights)
    return ZooSource(spec["model"], library, weights, seed)
