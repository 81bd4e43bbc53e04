"""python -m bench.load: a load generator for engine.serve, measured the way perf_analyzer does.

    python -m bench.load --connect tcp://127.0.0.1:5555 --concurrency 1,2,4,8,16 \\
        --csv load.csv --json load.json

For each concurrency level it keeps that many requests in flight on one DEALER socket
(closed loop: a reply triggers the next request), warms up, then measures windows of
``--window-s`` until three consecutive windows agree within ``--stability`` (throughput
and p50 latency each within that fraction of their three-window mean) or ``--max-windows``
is reached. The level's figures pool the last three windows. Loopback endpoints only.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import msgpack
import numpy as np
import zmq

from engine.serving.client import encode_item
from engine.serving.security import is_local_endpoint

PERCENTILES = (50, 90, 95, 99)


@dataclass
class Window:
    seconds: float
    latencies_us: list[float]
    errors: int

    @property
    def throughput(self) -> float:
        return len(self.latencies_us) / self.seconds if self.seconds > 0 else 0.0

    @property
    def p50_us(self) -> float:
        return float(np.percentile(self.latencies_us, 50)) if self.latencies_us else float("inf")


@dataclass
class LevelResult:
    concurrency: int
    throughput: float
    p50_us: float
    p90_us: float
    p95_us: float
    p99_us: float
    mean_us: float
    requests: int
    errors: int
    windows: int
    stable: bool
    server_us: dict = field(default_factory=dict)  # p50 of each server-side timing field
    latencies_us: list[float] = field(default_factory=list, repr=False)

    def row(self) -> dict:
        """The CSV/summary columns (no raw samples)."""
        d = asdict(self)
        d.pop("latencies_us")
        server = d.pop("server_us")
        d.update({f"server_{k}_p50_us": v for k, v in server.items()})
        return d


class LoadGenerator:
    """Keeps requests for one item in flight against ``endpoint`` and times their replies."""

    def __init__(self, endpoint: str, item, *, topk: int = 5, timeout_s: float = 30.0,
                 context: zmq.Context | None = None):
        if not is_local_endpoint(endpoint):
            raise ValueError(f"{endpoint}: bench.load only drives loopback/ipc endpoints")
        self.endpoint = endpoint
        self.fields, payload = encode_item(item)
        self.payload = bytes(payload)
        self.topk = topk
        self.timeout_ms = int(timeout_s * 1000)
        self.context = context or zmq.Context.instance()
        self._next_id = 0
        self._last_reply = 0.0

    def _send(self, sock, sent: dict) -> None:
        request_id = self._next_id
        self._next_id += 1
        head = msgpack.packb({"id": request_id, "topk": self.topk, **self.fields})
        sent[request_id] = time.perf_counter()
        sock.send_multipart([head, self.payload], copy=len(self.payload) < 65536)

    def run_for(self, sock, sent: dict, concurrency: int, seconds: float, server_timings: list | None) -> Window:
        """Keep ``concurrency`` in flight for ``seconds``; the replies that land in it count."""
        while len(sent) < concurrency:
            self._send(sock, sent)
        latencies, errors = [], 0
        start = time.perf_counter()
        end = start + seconds
        while True:
            now = time.perf_counter()
            if now >= end:
                break
            if not sock.poll(max(1, int((end - now) * 1000) + 1)):
                if time.perf_counter() - self._last_reply > self.timeout_ms / 1000:
                    raise TimeoutError(f"{self.endpoint}: no reply within {self.timeout_ms} ms")
                continue
            reply = msgpack.unpackb(sock.recv(), raw=False, strict_map_key=False)
            t_done = self._last_reply = time.perf_counter()
            t_sent = sent.pop(reply.get("id"), None)
            if t_sent is None:
                continue  # not one of ours (cannot happen on a fresh socket)
            if reply.get("ok"):
                latencies.append((t_done - t_sent) * 1e6)
                if server_timings is not None:
                    server_timings.append(reply["timing_us"])
            else:
                errors += 1
            self._send(sock, sent)
        return Window(time.perf_counter() - start, latencies, errors)

    def measure(self, concurrency: int, *, warmup_s: float = 1.0, window_s: float = 2.0,
                stability: float = 0.10, max_windows: int = 10) -> LevelResult:
        sock = self.context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.endpoint)
        sent: dict = {}
        self._last_reply = time.perf_counter()
        try:
            self.run_for(sock, sent, concurrency, warmup_s, None)
            windows: list[Window] = []
            timings: list[list] = []
            while len(windows) < max(3, max_windows):
                timings.append([])
                windows.append(self.run_for(sock, sent, concurrency, window_s, timings[-1]))
                if len(windows) >= 3 and is_stable(windows[-3:], stability):
                    break
            self._collect(sock, sent)
        finally:
            sock.close()
        last = windows[-3:]
        pooled = np.array([x for w in last for x in w.latencies_us])
        pct = np.percentile(pooled, PERCENTILES) if pooled.size else [float("nan")] * len(PERCENTILES)
        server = [t for ts in timings[-3:] for t in ts]
        server_p50 = {key: float(np.median([t[key] for t in server])) for key in server[0]} if server else {}
        return LevelResult(
            concurrency=concurrency,
            throughput=pooled.size / sum(w.seconds for w in last),
            p50_us=float(pct[0]), p90_us=float(pct[1]), p95_us=float(pct[2]), p99_us=float(pct[3]),
            mean_us=float(pooled.mean()) if pooled.size else float("nan"),
            requests=int(pooled.size), errors=sum(w.errors for w in last), windows=len(windows),
            stable=is_stable(last, stability) if len(last) == 3 else False,
            server_us=server_p50, latencies_us=pooled.tolist(),
        )

    def _collect(self, sock, sent: dict) -> None:
        """Wait for the replies still in flight so the next level starts from zero."""
        deadline = time.monotonic() + self.timeout_ms / 1000
        while sent and time.monotonic() < deadline:
            if sock.poll(100):
                reply = msgpack.unpackb(sock.recv(), raw=False, strict_map_key=False)
                sent.pop(reply.get("id"), None)


def is_stable(windows: list[Window], stability: float) -> bool:
    """perf_analyzer's rule: throughput and p50 latency each within ``stability`` of their mean."""
    for values in ([w.throughput for w in windows], [w.p50_us for w in windows]):
        mean = sum(values) / len(values)
        if not np.isfinite(mean) or mean <= 0 or any(abs(v - mean) > stability * mean for v in values):
            return False
    return True


def sweep(endpoint: str, item, concurrencies=(1, 2, 4, 8, 16), *, log=None, **measure_options) -> list[LevelResult]:
    generator = LoadGenerator(endpoint, item, topk=measure_options.pop("topk", 5))
    results = []
    for concurrency in concurrencies:
        result = generator.measure(concurrency, **measure_options)
        if log:
            log(format_row(result))
        results.append(result)
    return results


def format_row(r: LevelResult) -> str:
    return (f"concurrency {r.concurrency:3d}: {r.throughput:9.1f} req/s  p50 {r.p50_us / 1000:8.3f} ms  "
            f"p90 {r.p90_us / 1000:8.3f}  p95 {r.p95_us / 1000:8.3f}  p99 {r.p99_us / 1000:8.3f} ms  "
            f"errors {r.errors}  windows {r.windows}{'' if r.stable else ' (not stable)'}")


def write_csv(path, results: list[LevelResult]) -> None:
    rows = [r.row() for r in results]
    columns = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    Path(path).write_text(buf.getvalue())


def synthetic_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth random RGB image (a stand-in frame when no image file is given)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((width, height), Image.BILINEAR))


def parse_size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected HxW, e.g. 224x224") from None
    if height < 1 or width < 1:
        raise argparse.ArgumentTypeError(f"size {text!r}: both sides must be >= 1")
    return height, width


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n")[0])
    p.add_argument("--connect", default="tcp://127.0.0.1:5555", help="server endpoint (loopback or ipc)")
    p.add_argument("--concurrency", default="1,2,4,8,16", help="comma-separated in-flight levels")
    p.add_argument("--image", help="image or npz file to send (default: a synthetic raw frame)")
    p.add_argument("--size", type=parse_size, default=(224, 224), help="synthetic frame HxW (default 224x224)")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--warmup-s", type=float, default=1.0)
    p.add_argument("--window-s", type=float, default=2.0, help="measurement window (default 2 s)")
    p.add_argument("--stability", type=float, default=0.10, help="windows must agree within this fraction")
    p.add_argument("--max-windows", type=int, default=10, help="give up on stability after this many windows")
    p.add_argument("--csv", help="write one row per level here")
    p.add_argument("--json", help="write levels (with latency samples) here")
    args = p.parse_args(argv)
    try:
        levels = [int(v) for v in args.concurrency.split(",")]
        if min(levels) < 1:
            raise ValueError
    except ValueError:
        p.error(f"--concurrency {args.concurrency!r}: expected positive integers, e.g. 1,2,4")
    item = args.image or synthetic_image(*args.size)
    log = lambda line: print(line, flush=True)  # noqa: E731
    try:
        results = sweep(args.connect, item, levels, log=log, topk=args.topk, warmup_s=args.warmup_s,
                        window_s=args.window_s, stability=args.stability, max_windows=args.max_windows)
    except (TimeoutError, ValueError, OSError) as e:
        print(f"bench.load: error: {e}", file=sys.stderr)
        return 1
    if args.csv:
        write_csv(args.csv, results)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"endpoint": args.connect, "levels": [asdict(r) for r in results]}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
