"""Run Triton's ``perf_analyzer`` (from the .venv-perf that ``make install`` sets up) and read its CSV.

``python -m bench.perf_analyzer ARGS...`` runs the binary with ARGS, as a shell wrapper would.
The binary needs ``libcudart.so.12`` even with no GPU: the pip package that ships it lives in
the same venv, and its folder goes on ``LD_LIBRARY_PATH`` here.
"""
from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench import SuiteSkipped

ROOT = Path(__file__).resolve().parent.parent
SETUP = "make install (bench/make_perf_env.sh)"


class PerfAnalyzerMissing(RuntimeError):
    """No runnable perf_analyzer: the message says what is missing and how to get it."""


class Unstable(RuntimeError):
    """perf_analyzer gave up: its windows never agreed within the stability bound."""


def venv() -> Path:
    return Path(os.environ.get("PERF_VENV", ROOT / ".venv-perf"))


def binary() -> Path:
    path = venv() / "bin" / "perf_analyzer"
    if not path.is_file():
        raise PerfAnalyzerMissing(f"{path}: no such file; {SETUP} installs it")
    return path


def require() -> None:
    """Skip the calling bench suite (:class:`~bench.SuiteSkipped`, with the reason) when
    perf_analyzer cannot run here."""
    try:
        binary(), environment()
    except PerfAnalyzerMissing as e:
        raise SuiteSkipped(str(e)) from None


def environment() -> dict:
    """This process's environment with the venv's CUDA runtime on ``LD_LIBRARY_PATH``."""
    found = sorted(venv().glob("lib/python3*/site-packages/nvidia/cuda_runtime/lib/libcudart.so.12"))
    if not found:
        raise PerfAnalyzerMissing(f"{venv()}: no nvidia-cuda-runtime-cu12 (libcudart.so.12); {SETUP} installs it")
    paths = [str(found[0].parent), *filter(None, os.environ.get("LD_LIBRARY_PATH", "").split(":"))]
    return {**os.environ, "LD_LIBRARY_PATH": ":".join(paths)}


@dataclass
class Measurement:
    """One row of perf_analyzer's CSV: a concurrency level's throughput and client-side latency."""
    concurrency: int
    throughput: float  # inferences per second
    p50_us: float
    p90_us: float
    p95_us: float
    p99_us: float


def read_csv(text: str) -> list[Measurement]:
    """The rows by concurrency: perf_analyzer writes them by throughput, so a loaded machine
    where a higher level does no better lists it first."""
    rows = [Measurement(concurrency=int(row["Concurrency"]), throughput=float(row["Inferences/Second"]),
                        p50_us=float(row["p50 latency"]), p90_us=float(row["p90 latency"]),
                        p95_us=float(row["p95 latency"]), p99_us=float(row["p99 latency"]))
            for row in csv.DictReader(io.StringIO(text))]
    return sorted(rows, key=lambda m: m.concurrency)


def run(model: str, url: str, protocol: str, csv_path: Path, *, concurrency: str, interval_ms: int,
        extra: tuple[str, ...] = (), timeout_s: float = 600) -> list[Measurement]:
    """Measure ``model`` at ``url`` (``HOST:PORT``) over ``protocol`` ("http" or "grpc") at each
    concurrency of ``concurrency`` ("START:END[:STEP]"); perf_analyzer writes its CSV to ``csv_path``."""
    command = [str(binary()), "-m", model, "-u", url, "-i", protocol, "--concurrency-range", concurrency,
               "--measurement-interval", str(interval_ms), "-f", str(csv_path), *extra]
    done = subprocess.run(command, env=environment(), capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        unstable = "Failed to obtain stable measurement" in done.stdout + done.stderr
        message = f"perf_analyzer {protocol} {url} exited {done.returncode}: {' | '.join(tail)}"
        raise Unstable(message) if unstable else RuntimeError(message)
    return read_csv(csv_path.read_text())


def main(argv: list[str]) -> int:
    try:
        return subprocess.run([str(binary()), *argv], env=environment()).returncode
    except PerfAnalyzerMissing as e:
        print(f"perf_analyzer: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
