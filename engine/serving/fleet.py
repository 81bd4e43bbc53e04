"""The models a server holds: which versions serve, loading, unloading, and the repository index.

Triton's model control modes:

- ``none``: every model of the repository is loaded at start; load/unload requests are refused.
- ``explicit``: only the ``--load-model`` names are loaded at start (``*``: all); the
  repository extension's load and unload requests load, reload and unload models.
- ``poll``: every model is loaded at start, and the repository is re-read every
  ``poll_s`` seconds: a new folder is loaded, a removed one unloaded, a changed one
  (any file's size or mtime) reloaded.

A model that fails to load is in the index as ``UNAVAILABLE`` with its reason; the others
keep serving. Loading a model already loaded reloads it: the new versions start serving,
then the old ones drain. One lock serialises loads and unloads (a load can take seconds);
another, held only for dictionary swaps, guards what :meth:`resolve` reads.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

from engine.serving.deployment import Deployment, Draining
from engine.serving.repository import ModelEntry

MODES = ("none", "explicit", "poll")


class ModelNotFound(LookupError):
    """No such model or version serves (404 / NOT_FOUND); the message says what does."""


class ControlRefused(ValueError):
    """A load or unload the control mode does not allow, or of a model the repository lacks (400)."""


@dataclass
class ModelState:
    """A model as the index reports it: the versions serving, or why none does."""

    name: str
    deployments: dict[str, Deployment] = field(default_factory=dict)
    state: str = "UNAVAILABLE"
    reason: str = ""
    fingerprint: tuple = ()


@dataclass
class IndexEntry:
    name: str
    version: str
    state: str
    reason: str


class Fleet:
    """``scan()`` returns the repository's :class:`ModelEntry` s by name; ``deploy(entry)`` loads one
    model's versions (raising on failure); ``drain_timeout_s`` bounds an unload's drain."""

    def __init__(self, scan, deploy, *, mode: str = "none", drain_timeout_s: float = 30.0, log=print):
        if mode not in MODES:
            raise ValueError(f"model control mode {mode!r}: expected one of {MODES}")
        self.scan, self.deploy, self.mode = scan, deploy, mode
        self.drain_timeout_s = drain_timeout_s
        self.log = log
        self._models: dict[str, ModelState] = {}
        self._lock = threading.Lock()
        self._control = threading.Lock()
        self._poller: Poller | None = None

    # ---- reading --------------------------------------------------------------------
    def resolve(self, name: str | None, version: str | None = None) -> Deployment:
        """The deployment serving ``name`` (None: the only model served) at ``version`` (None: the latest)."""
        with self._lock:
            if name is None:
                ready = [state for state in self._models.values() if state.deployments]
                if len(ready) != 1:
                    raise ModelNotFound(f"name the model: this server serves {self._ready_names()}")
                state = ready[0]
            else:
                state = self._models.get(name)
            if state is None or not state.deployments:
                why = f" ({state.reason})" if state is not None and state.reason else ""
                raise ModelNotFound(f"unknown model {name!r}{why}; this server serves {self._ready_names()}")
            if not version:
                return state.deployments[max(state.deployments, key=int)]
            deployment = state.deployments.get(version)
            if deployment is None:
                raise ModelNotFound(f"model {state.name!r} has no version {version!r}; it serves versions "
                                    f"{sorted(state.deployments, key=int)}")
            return deployment

    def ready(self, name: str, version: str | None = None) -> bool:
        """Whether ``name`` (at ``version``) serves and is not draining: the readiness both fronts report."""
        try:
            return not self.resolve(name, version).draining()
        except ModelNotFound:
            return False

    def acquire(self, deployment: Deployment, images: int) -> Deployment:
        """Count ``images`` in flight on ``deployment`` or, when a reload has replaced it since it
        was resolved, on its successor (same name and version); :class:`Draining` if it has none."""
        try:
            deployment.acquire(images)
            return deployment
        except Draining:
            try:
                successor = self.resolve(deployment.name, deployment.version)
            except ModelNotFound:
                successor = deployment
            if successor is deployment:
                raise
        successor.acquire(images)
        return successor

    def _ready_names(self) -> list[str]:
        return sorted(name for name, state in self._models.items() if state.deployments)

    def versions(self, name: str) -> list[str]:
        with self._lock:
            state = self._models.get(name)
            return sorted(state.deployments, key=int) if state else []

    def deployments(self, name: str | None = None, version: str | None = None) -> list[Deployment]:
        """The deployments serving, or those of one model (and version): ModelNotFound if none."""
        if name is None:
            with self._lock:
                return [d for state in self._models.values() for d in state.deployments.values()]
        if version:
            return [self.resolve(name, version)]
        self.resolve(name)
        with self._lock:
            return list(self._models[name].deployments.values())

    def index(self, ready_only: bool = False) -> list[IndexEntry]:
        """Every model the repository has or had, one row per version serving (one for a model with none)."""
        names = set(self._models)
        if not ready_only:
            try:
                names |= set(self.scan())
            except ValueError as e:  # the repository folder itself vanished
                self.log(f"repository index: {e}")
        rows = []
        with self._lock:
            for name in sorted(names):
                state = self._models.get(name)
                if state is not None and state.deployments:
                    rows += [IndexEntry(name, v, "READY", "") for v in sorted(state.deployments, key=int)]
                elif not ready_only:
                    rows.append(IndexEntry(name, "", state.state if state else "UNAVAILABLE",
                                           state.reason if state else "not loaded"))
        return rows

    # ---- control --------------------------------------------------------------------
    def start(self, names: list[str] | None = None, *, strict: bool = False) -> None:
        """Load ``names`` (None: the whole repository), each failure reported, or raised if ``strict``."""
        entries = self.scan()
        for name in sorted(entries) if names is None or "*" in names else names:
            entry = entries.get(name)
            if entry is None:
                self._set_failed(name, f"no folder {name!r} in the repository", ())
                self.log(f"model {name}: not in the repository")
                continue
            self._load_entry(entry, strict=strict)

    def load(self, name: str) -> None:
        """The repository extension's load: (re)load ``name`` from disk; raises if it fails."""
        self._require_explicit("load", name)
        entry = self.scan().get(name)
        if entry is None:
            raise ControlRefused(f"load {name!r}: no such model folder in the repository")
        failed = self._load_entry(entry, strict=False)
        if failed is not None:
            raise ControlRefused(f"load {name!r} failed: {failed}")

    def unload(self, name: str) -> None:
        self._require_explicit("unload", name)
        if name not in self._models and name not in self.scan():
            raise ControlRefused(f"unload {name!r}: no such model")
        self._unload(name, "unloaded")

    def _require_explicit(self, action: str, name: str) -> None:
        if self.mode != "explicit":
            raise ControlRefused(f"{action} {name!r}: explicit model load/unload needs --model-control-mode "
                                 f"explicit (this server runs {self.mode!r})")

    def _unload(self, name: str, reason: str) -> None:
        with self._control:
            with self._lock:
                state = self._models.setdefault(name, ModelState(name))
                old, state.deployments = state.deployments, {}
                state.state, state.reason = "UNAVAILABLE", reason
            self._retire(old.values())

    def _retire(self, deployments) -> None:
        for deployment in deployments:
            if not deployment.retire(self.drain_timeout_s):
                self.log(f"model {deployment.name} version {deployment.version}: drain timed out")

    def _load_entry(self, entry: ModelEntry, *, strict: bool) -> str | None:
        """Load (or reload) ``entry``; the reason it failed, or None. A failed reload leaves the
        versions already serving in place, as Triton does."""
        with self._control:
            try:
                if entry.error:
                    raise ValueError(entry.error)
                fresh = self.deploy(entry)
            except Exception as e:
                if strict:
                    raise
                reason = f"{type(e).__name__}: {e}" if not isinstance(e, ValueError) else str(e)
                self._set_failed(entry.name, reason, entry.fingerprint)
                serving = self.versions(entry.name)
                self.log(f"model {entry.name}: failed to load: {reason}"
                         + (f" (versions {serving} keep serving)" if serving else ""))
                return reason
            with self._lock:
                state = self._models.setdefault(entry.name, ModelState(entry.name))
                old = state.deployments.values()
                state.deployments = {d.version: d for d in fresh}
                state.state, state.reason, state.fingerprint = "READY", "", entry.fingerprint
            self._retire(list(old))
            self.log(f"model {entry.name}: serving versions {sorted(state.deployments, key=int)}")
            return None

    def _set_failed(self, name: str, reason: str, fingerprint: tuple) -> None:
        with self._lock:
            state = self._models.setdefault(name, ModelState(name))
            state.reason, state.fingerprint = reason, fingerprint
            if not state.deployments:
                state.state = "UNAVAILABLE"

    def poll_once(self) -> None:
        """Bring the loaded models in line with the repository (``poll`` mode)."""
        try:
            entries = self.scan()
        except ValueError as e:
            self.log(f"repository poll: {e}")
            return
        for name, entry in sorted(entries.items()):
            state = self._models.get(name)
            if state is None or state.fingerprint != entry.fingerprint:
                self._load_entry(entry, strict=False)
        for name in sorted(set(self._models) - set(entries)):
            if self._models[name].deployments or self._models[name].reason != "removed from the repository":
                self._unload(name, "removed from the repository")

    def start_polling(self, period_s: float) -> None:
        self._poller = Poller(self, period_s)

    def close(self) -> None:
        """Stop polling and unload every model (the server has drained by now: a short wait)."""
        if self._poller is not None:
            self._poller.stop()
        self.drain_timeout_s = min(self.drain_timeout_s, 1.0)
        for name in list(self._models):
            self._unload(name, "server stopped")


class Poller:
    """Calls ``fleet.poll_once`` every ``period_s`` seconds on a thread of its own until :meth:`stop`."""

    def __init__(self, fleet: Fleet, period_s: float):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(fleet, period_s), name="repository-poll",
                                        daemon=True)
        self._thread.start()

    def _run(self, fleet: Fleet, period_s: float) -> None:
        while not self._stop.wait(period_s):
            fleet.poll_once()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
