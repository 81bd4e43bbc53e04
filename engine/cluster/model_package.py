"""The model's bytes, shipped to every node through Ray's object store once, and unpacked
into a per-node cache keyed by their content hash, so no shared file system is needed and
a node that already holds the model writes nothing."""
from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

from engine.data.atomic import replaced_when_written
from engine.data.dataconfig import ModelInfo

CACHE_DIR = Path(tempfile.gettempdir()) / "vggengine-ray-models"


@dataclass
class ModelPackage:
    file_name: str
    digest: str  # sha256 of the model file and its model-info JSON
    model: bytes
    info: bytes | None  # the model-info JSON beside the model, when there is one

    @classmethod
    def read(cls, model_path: str) -> ModelPackage:
        path = Path(model_path)
        model = path.read_bytes()
        info_path = ModelInfo.path_for(str(path))
        info = info_path.read_bytes() if info_path.exists() else None
        digest = hashlib.sha256(model + (info or b"")).hexdigest()
        return cls(path.name, digest, model, info)

    def unpack(self, cache_dir: Path = CACHE_DIR) -> str:
        """The model's path in ``cache_dir/<digest>/``, written there first when missing."""
        folder = cache_dir / self.digest
        model_path = folder / self.file_name
        folder.mkdir(parents=True, exist_ok=True)
        if self.info is not None:
            _write_once(ModelInfo.path_for(str(model_path)), self.info)
        _write_once(model_path, self.model)
        return str(model_path)


def _write_once(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` unless it holds them already; atomically, so a node's
    concurrent actors never read half a file."""
    if path.exists() and path.stat().st_size == len(data):
        return
    with replaced_when_written(path) as tmp:
        tmp.write_bytes(data)
