"""Everything a run needs to know, gathered once by ``engine.run`` and handed to stages."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

import numpy as np

from engine.data.dataconfig import DataConfig

NORMALIZE_ON = ("host", "device")


def default_workers(cores: int) -> int:
    """Preprocess processes: the fused kernel costs well under 1 ms per image, so one
    worker keeps a CPU-bound model fed on small machines; bigger ones get a quarter."""
    return max(1, cores // 4)


def fit_warmup(warmup: int, total: int) -> tuple[int, str | None]:
    """The warm-up a run of ``total`` items can afford, and a notice when it differs from
    ``warmup``: a warm-up that is not less than the run would time nothing, so half the
    run warms up instead and the rest is timed."""
    if warmup == 0 or warmup < total:
        return warmup, None
    fitted = total // 2
    return fitted, (f"--warmup {warmup} is not less than the {total} item(s) of the run and would time nothing; "
                    f"warming up on {fitted} instead")


@dataclass
class RunConfig:
    model_path: str
    data_config: DataConfig
    class_names: list[str] | None = None
    model_label: str = ""
    backend: str = "ort"
    device: str = "cpu"
    backend_options: dict = field(default_factory=dict)  # e.g. torch's precision, cuda_graphs
    normalize_on: str = "host"  # "device": slots hold the uint8 crop, the backend normalizes
    instances: int = 1
    processes: int = 1
    batch: int = 8
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    workers: int = field(default_factory=lambda: default_workers(os.cpu_count() or 1))
    topk: int = 5
    iterations: int = 1
    warmup: int | None = None  # items not timed; None: one batch per instance of every device process
    slots: int = 0
    batch_delay_ms: float = 2.0
    transport: str = "ipc"
    tcp_host: str = "127.0.0.1"
    tcp_port: int = 0
    max_pixels: int | None = None
    fast_decode: bool = False  # JPEGs far above the resize target decoded at a reduced DCT scale
    output_dtype: str = "float32"
    quiet: bool = False
    worker_start_timeout_s: float = 180.0

    def __post_init__(self):
        """The values the options left to the run: the warm-up and the slot count. The values
        themselves were checked once, by the options records (engine/api/options.py)."""
        if self.warmup is None:
            self.warmup = self.batch * self.instances * self.processes
        if not self.slots:
            self.slots = self.default_slots()
        self.slots = max(2, -(-self.slots // self.batch)) * self.batch  # whole batches, two at least

    @property
    def slot_dtype(self) -> np.dtype:
        """What the shared-memory slots hold: the normalized float32 input, or the uint8 crop."""
        return np.dtype(np.uint8 if self.normalize_on == "device" else np.float32)

    @property
    def chunk(self) -> int:
        """Items per preprocess task message: a whole batch up to 64 (the broker's cost is
        per message), so a worker holding two tasks is never idle waiting for the next."""
        return max(1, min(64, self.batch))

    def default_slots(self) -> int:
        """Whole batches: what the preprocess workers hold, the one being filled, and three
        per device instance (two queued, one being ranked)."""
        preprocess_blocks = -(-self.workers * 2 * self.chunk // self.batch)
        return (preprocess_blocks + 1 + 3 * self.instances * self.processes) * self.batch

    def to_dict(self) -> dict:
        d = asdict(self)
        d["data_config"] = self.data_config.to_dict()
        d.pop("class_names")
        return d
