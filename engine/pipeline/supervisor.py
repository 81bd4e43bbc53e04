"""The worker processes of one run: starting them, their sockets' identities, what each
holds, noticing deaths, stopping them, and the run's peak memory.

Owned by the broker's thread. A preprocess process has one DEALER identity; a device
process has one per instance thread. An identity carries the process's generation, so
a message from a process already declared dead is recognised and dropped.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import time
from dataclasses import dataclass, field

import psutil

from engine.pipeline.config import RunConfig
from engine.pipeline.device_worker import device_main
from engine.pipeline.preprocess_worker import preprocess_main
from engine.pipeline.spawning import main_module_hidden

STOP_GRACE_S = 5.0


@dataclass
class Worker:
    """One DEALER identity: a preprocess process, or one instance thread of a device process."""

    identity: bytes
    role: str  # "pre" or "dev"
    proc: Proc
    ready: bool = False
    inflight: dict = field(default_factory=dict)  # task id -> what the task holds
    sent_at: dict = field(default_factory=dict)  # device task id -> when it was sent
    last_done: float = 0.0  # when this device instance last returned a batch

    def load(self) -> int:
        return sum(len(items) for items in self.inflight.values())

    def finish_batch(self, task_id: int, now: float) -> float:
        """Retire device task ``task_id``, returned at ``now``; returns when it started on the
        device: a queued batch starts when the instance's previous one is done."""
        self.inflight.pop(task_id, None)
        started = max(self.sent_at.pop(task_id, now), self.last_done)
        self.last_done = now
        return started


@dataclass
class Proc:
    role: str
    index: int
    generation: int
    process: mp.Process
    workers: list[Worker] = field(default_factory=list)


class Supervisor:
    def __init__(self, cfg: RunConfig, endpoint: str, ring_spec: dict, ranking: dict):
        """``ranking``: what device instances send back (top ``k``, and the raw outputs or not)."""
        self.cfg = cfg
        self.ranking = ranking
        self.endpoint = endpoint
        self.ring_spec = ring_spec
        self.mp = mp.get_context("spawn")
        self.workers: dict[bytes, Worker] = {}
        self.procs: list[Proc] = []
        self.restarts = 0
        self.max_restarts = 2 * (cfg.workers + cfg.processes) + 2
        self.peak_rss_bytes = 0
        self._ready: dict[str, list[Worker]] = {}
        self._ps: dict[int, psutil.Process] = {}  # pid -> its psutil handle, for the memory samples

    def start(self, role: str, index: int, generation: int = 0) -> Proc:
        cfg = self.cfg
        if role == "pre":
            identities = [f"pre-{index}.{generation}".encode()]
            target, args = preprocess_main, (identities[0], self.endpoint, self.ring_spec,
                                             cfg.data_config.to_dict(), cfg.max_pixels, cfg.fast_decode)
        else:
            identities = [f"dev-{index}-{i}.{generation}".encode() for i in range(cfg.instances)]
            backend_spec = {"kind": cfg.backend, "model_path": cfg.model_path, "device": cfg.device,
                            "threads": cfg.threads, "options": cfg.backend_options}
            target, args = device_main, (identities, self.endpoint, self.ring_spec, backend_spec, cfg.batch,
                                         self.ranking)
        process = self.mp.Process(target=target, args=args, name=f"engine-{role}-{index}", daemon=True)
        with main_module_hidden():
            process.start()
        proc = Proc(role, index, generation, process)
        for ident in identities:
            worker = Worker(ident, role, proc)
            proc.workers.append(worker)
            self.workers[ident] = worker
        self.procs.append(proc)
        return proc

    def start_all(self) -> None:
        for i in range(self.cfg.workers):
            self.start("pre", i)
        for p in range(self.cfg.processes):
            self.start("dev", p)

    def all_ready(self) -> bool:
        return all(w.ready for w in self.workers.values())

    def exited_while_starting(self) -> str | None:
        """Why the start failed, when a process has already exited."""
        for proc in self.procs:
            if proc.process.exitcode is not None:
                return f"{proc.role} worker {proc.index} exited with code {proc.process.exitcode} while starting"
        return None

    def mark_ready(self, worker: Worker) -> None:
        """``worker`` said hello: it takes work from now on."""
        worker.ready = True
        self._ready.pop(worker.role, None)

    def ready(self, role: str) -> list[Worker]:
        """The workers of ``role`` that take work (kept between changes: the broker asks
        on every turn of its loop)."""
        if role not in self._ready:
            self._ready[role] = [w for w in self.workers.values() if w.role == role and w.ready]
        return self._ready[role]

    def pids(self) -> str:
        return ", ".join(f"{proc.role}-{proc.index} pid {proc.process.pid}" for proc in self.procs)

    def take_dead(self) -> list[tuple[Proc, int]]:
        """Processes that exited, with their exit codes; forgotten here (their workers too)."""
        dead = []
        for proc in list(self.procs):
            code = proc.process.exitcode
            if code is None:
                continue
            self.procs.remove(proc)
            for worker in proc.workers:
                del self.workers[worker.identity]
            self._ready.clear()
            self._ps.pop(proc.process.pid, None)
            dead.append((proc, code))
        return dead

    def device_last_done(self) -> list[float]:
        return [w.last_done for w in self.workers.values() if w.role == "dev"]

    def sample_memory(self) -> None:
        """Track the peak resident memory of the whole run: broker plus every worker."""
        total = 0
        for pid in [os.getpid()] + [proc.process.pid for proc in self.procs if proc.process.pid]:
            try:
                if pid not in self._ps:
                    self._ps[pid] = psutil.Process(pid)
                total += self._ps[pid].memory_info().rss
            except psutil.Error:
                pass
        self.peak_rss_bytes = max(self.peak_rss_bytes, total)

    def join_all(self) -> None:
        """Wait briefly for every process to exit (they were told to stop), then force."""
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in self.procs:
            proc.process.join(max(0.0, deadline - time.monotonic()))
        for proc in self.procs:
            if proc.process.is_alive():
                proc.process.kill()
                proc.process.join(2)
