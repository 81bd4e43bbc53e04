"""Start ``python -m engine.serve`` as a child process and wait until it listens.

Used by the benchmark and the tests, which need a real server process on a free port:
bind ``tcp://127.0.0.1:*`` and read the real endpoint from the server's ready line.
"""
from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import time

READY = re.compile(r"^engine\.serve: listening on (\S+)")
FRONT = re.compile(r"^engine\.serve: (http|grpc) on (\S+)")


class ServerProcess:
    """A running server: ``endpoint``, ``process``, and ``fronts`` ({"http": url, "grpc": url} for
    the KServe front ends it was asked for); stop with :meth:`stop` or a ``with`` block."""

    def __init__(self, args: list[str], *, timeout_s: float = 120.0, env: dict | None = None):
        self.args = ["--bind", "tcp://127.0.0.1:*", *args] if "--bind" not in args else list(args)
        self.fronts: dict[str, str] = {}
        self._stderr = tempfile.TemporaryFile(mode="w+")  # a pipe nobody reads could fill and block
        self.process = subprocess.Popen(
            [sys.executable, "-m", "engine.serve", *self.args],
            stdout=subprocess.PIPE, stderr=self._stderr, text=True,
            env={**os.environ, **(env or {})},
        )
        self.endpoint = self._wait_ready(timeout_s)

    def _wait_ready(self, timeout_s: float) -> str:
        """Read stdout (raw, so no line waits unseen in a buffer) until the ready line."""
        deadline = time.monotonic() + timeout_s
        selector = selectors.DefaultSelector()
        fd = self.process.stdout.fileno()
        selector.register(fd, selectors.EVENT_READ)
        pending = b""
        try:
            while time.monotonic() < deadline:
                if not selector.select(timeout=0.2):
                    continue
                chunk = os.read(fd, 65536)
                if not chunk and self.process.poll() is not None:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    text = line.decode(errors="replace")
                    match = READY.match(text)
                    if match:
                        return match.group(1)
                    front = FRONT.match(text)
                    if front:
                        self.fronts[front.group(1)] = front.group(2)
            self.process.kill()
            self.process.wait()
            err = self.read_stderr()
            raise RuntimeError(f"engine.serve {' '.join(self.args)} did not start "
                               f"(exit {self.process.returncode}): {err.strip()[-2000:]}")
        finally:
            selector.close()

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, wait for the drain; returns the exit status (killed if it hangs)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()
        return self.process.returncode

    def read_stderr(self) -> str:
        """Everything the server logged so far."""
        self._stderr.seek(0)
        return self._stderr.read()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
