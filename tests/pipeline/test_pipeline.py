"""The streaming engine end to end: real processes, real ZeroMQ sockets, real files.

Each test runs ``python -m engine.run`` as a subprocess on the tiny seeded ONNX net of
engine/models/tinynet.py, over npz files and image files the test writes.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import psutil
import pytest
from photos import write_photo
from tinynet import write_tiny_onnx

from engine import kernels
from engine.backends import available_devices
from engine.data.dataconfig import ModelInfo
from engine.data.decode import load_item
from engine.pipeline.meter import work_in_window

ROOT = Path(__file__).resolve().parents[2]
SHM = Path("/dev/shm")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return write_tiny_onnx(tmp_path_factory.mktemp("model") / "tiny.onnx", size=32, classes=10)


def _npz(path: Path, array: np.ndarray, key: str = "input_0") -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{key: array})
    return str(path)


@pytest.fixture(scope="module")
def good_items(tmp_path_factory) -> list[str]:
    """Npz files of assorted sizes (CHW and HWC) and real photo files."""
    root = tmp_path_factory.mktemp("items")
    rng = np.random.default_rng(0)
    items = []
    for i, (h, w) in enumerate([(375, 500), (500, 375), (40, 41), (33, 90), (256, 256), (64, 300)]):
        img = rng.integers(0, 256, (3, h, w), dtype=np.uint8)
        items.append(_npz(root / "n01440764" / f"chw_{i}.npz", img))
    items.append(_npz(root / "n01443537" / "hwc.npz", rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)))
    items.append(str(write_photo(root / "n01443537" / "cat.jpg", "chelsea")))
    items.append(str(write_photo(root / "n01484850" / "coffee.png", "coffee", size=(120, 90))))
    items.append(str(write_photo(root / "n01484850" / "cat.webp", "chelsea", size=(80, 64))))
    return items


@pytest.fixture(scope="module")
def bad_items(tmp_path_factory) -> dict[str, str]:
    """Each kind of bad item, with a fragment of the reason the engine must give."""
    root = tmp_path_factory.mktemp("bad")
    truncated = write_photo(root / "truncated.jpg", "chelsea")
    truncated.write_bytes(truncated.read_bytes()[:2000])
    (root / "corrupt.npz").write_bytes(b"this is not a zip archive")
    return {
        str(root / "missing.npz"): "no such file",
        str(root / "corrupt.npz"): "corrupt.npz",
        _npz(root / "wrongkey.npz", np.zeros((3, 40, 40), np.uint8), key="image"): "input_0",
        _npz(root / "float.npz", np.zeros((3, 40, 40), np.float32)): "float32",
        _npz(root / "rank2.npz", np.zeros((40, 40), np.uint8)): "shape",
        _npz(root / "empty.npz", np.zeros((3, 0, 40), np.uint8)): "empty",
        str(truncated): "truncated.jpg",
    }


def run_engine(args, *, timeout=120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.run", "--quiet", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, **kw)


def reference_logits(model: Path, item: str) -> np.ndarray:
    """What the engine must produce: the kernel's tensor through a plain onnxruntime session."""
    cfg = ModelInfo.load(ModelInfo.path_for(model)).data_config
    x = kernels.resize_crop_normalize(np.asarray(load_item(item)), resize=cfg.resize, crop=cfg.crop,
                                      mean=cfg.mean, std=cfg.std)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x[None]})[0][0]


def read_topk_items(path: Path) -> list[str]:
    """Item paths of a top-k text file, one per item (its top-0 line), in file order."""
    return [line.split(": Relay top-0 ")[0] for line in path.read_text().splitlines() if ": Relay top-0 " in line]


@pytest.mark.parametrize("knobs", [
    ["-b", "1", "--workers", "1", "-p", "1", "-i", "1"],
    ["-b", "4", "--workers", "2", "-p", "2", "-i", "2", "--threads", "1"],
])
def test_every_item_exactly_once_in_datalist_order(tmp_path, model, good_items, bad_items, knobs):
    bad = list(bad_items)
    items = good_items[:3] + bad[:4] + good_items[3:] + bad[4:]
    datalist = tmp_path / "list.txt"
    datalist.write_text("\n".join(["# a comment", *items, ""]))
    out = tmp_path / "out"
    proc = run_engine(["--datalist", datalist, "--onnx", model, *knobs, "--path_output", out,
                       "--save-topk", out / "topk.txt", "--report", out / "report.json",
                       "--labels-from-folders"])
    assert proc.returncode == 3, proc.stderr + proc.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["counts"] == {"items": len(items), "submitted": len(items), "done": len(good_items),
                                "failed": len(bad), "not_run": 0, "restarts": 0}
    assert read_topk_items(out / "topk.txt") == good_items
    errors = [json.loads(line) for line in (out / "report.errors.jsonl").read_text().splitlines()]
    assert [e["item"] for e in errors] == bad, "error records come in datalist order"
    for record in errors:
        assert bad_items[record["item"]] in record["error"], record
    written = sorted(p.name for p in out.glob("output_*.npz"))
    assert written == [f"output_{items.index(g):06d}.npz" for g in good_items]
    for g in (good_items[0], good_items[-3]):
        got = np.load(out / f"output_{items.index(g):06d}.npz")["output_0"]
        assert got.shape == (1, 10) and got.dtype == np.float32
        np.testing.assert_allclose(got[0], reference_logits(model, g), rtol=1e-5, atol=1e-5)
    assert "top1_rate:" in proc.stdout and "throughput (qps)" in proc.stdout


def test_batch_size_does_not_change_logits(tmp_path, model, good_items):
    datalist = tmp_path / "list.txt"
    datalist.write_text("\n".join(good_items))
    outputs = {}
    for batch in (1, 8):
        out = tmp_path / f"b{batch}"
        proc = run_engine(["--datalist", datalist, "--onnx", model, "-b", batch, "--path_output", out])
        assert proc.returncode == 0, proc.stderr
        outputs[batch] = np.stack([np.load(out / f"output_{i:06d}.npz")["output_0"] for i in range(len(good_items))])
    np.testing.assert_allclose(outputs[1], outputs[8], rtol=1e-5, atol=1e-6)


def test_tcp_transport(tmp_path, model, good_items):
    datalist = tmp_path / "list.txt"
    datalist.write_text("\n".join(good_items))
    proc = run_engine(["--datalist", datalist, "--onnx", model, "--transport", "tcp", "--report",
                       tmp_path / "r.json", "-b", "1", "--warmup", "3"])
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["counts"]["done"] == len(good_items)
    assert report["measured_items"] == len(good_items) - 3, "warm-up items are not timed"
    # one instance: the batch queued behind the one that started the clock begins inside the window
    assert report["throughput_qps"] * report["forward_time_s"] == pytest.approx(report["measured_items"])


def test_warmup_defaults_to_one_batch_per_instance_and_the_report_says_so(tmp_path, model, good_items):
    datalist = tmp_path / "list.txt"
    datalist.write_text("\n".join(good_items * 2))
    proc = run_engine(["--datalist", datalist, "--onnx", model, "-b", "2", "-p", "2", "--threads", "1",
                       "--report", tmp_path / "r.json"])
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["config"]["warmup"] == 2 * 2, "one batch for each of the two device instances"
    excluded = report["warmup"]["excluded_items"]
    assert excluded >= 4 and report["warmup"]["notice"] is None
    assert report["measured_items"] == report["counts"]["done"] - excluded > 0
    assert f"warm-up: {excluded} item(s) run first and not timed" in proc.stdout


def test_warmup_as_long_as_the_run_warms_up_on_half_and_says_so(tmp_path, model, good_items):
    datalist = tmp_path / "list.txt"
    datalist.write_text("\n".join(good_items))
    proc = run_engine(["--datalist", datalist, "--onnx", model, "-b", "1", "--warmup", "50",
                       "--report", tmp_path / "r.json"])
    assert proc.returncode == 0, proc.stderr
    assert f"--warmup 50 is not less than the {len(good_items)} item(s) of the run" in proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    half = len(good_items) // 2
    assert report["warmup"]["asked"] == 50 and report["warmup"]["used"] == half
    assert report["warmup"]["excluded_items"] == half and report["warmup"]["notice"]
    assert report["measured_items"] == len(good_items) - half and report["throughput_qps"] > 0


def test_batches_at_the_edges_of_the_timed_window_count_in_part():
    spans = [(10.0, 14.0, 8),   # running when the clock starts at 12: half inside
             (12.0, 16.0, 8),   # wholly inside
             (16.0, 22.0, 6),   # running when it stops at 20: two thirds inside
             (11.0, 11.0, 1),   # a failed item before the start: not counted
             (15.0, 15.0, 1),   # one inside: counted
             (8.0, 12.0, 8)]    # the batch that started the clock: wholly before
    assert work_in_window(spans, 12.0, 20.0) == pytest.approx(4 + 8 + 4 + 1)


def test_missing_model_is_a_clear_fatal_error(tmp_path, good_items):
    datalist = tmp_path / "list.txt"
    datalist.write_text("\n".join(good_items))
    proc = run_engine(["--datalist", datalist, "--onnx", tmp_path / "nope.onnx"])
    assert proc.returncode == 2  # a missing input is a usage error, refused before any work
    assert "nope.onnx: no such file" in proc.stderr


@pytest.mark.skipif("cuda" in available_devices("ort"), reason="this machine has a CUDA GPU for onnxruntime")
def test_cuda_without_a_gpu_is_a_clear_fatal_error_before_any_worker_starts(tmp_path, model, good_items):
    datalist = tmp_path / "list.txt"
    datalist.write_text("\n".join(good_items))
    proc = run_engine(["--datalist", datalist, "--onnx", model, "--device", "cuda", "--report", tmp_path / "r.json"])
    assert proc.returncode == 1
    assert "device 'cuda': no usable CUDA GPU for onnxruntime" in proc.stderr
    assert "items x" not in proc.stderr and not (tmp_path / "r.json").exists()


class EngineProcess:
    """``engine.run`` started in the background, its stderr lines timestamped as they come."""

    def __init__(self, args):
        self.proc = subprocess.Popen([sys.executable, "-m", "engine.run", "--quiet", *map(str, args)], cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[tuple[float, str]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append((time.monotonic(), line))

    def wait_for(self, text: str, timeout: float = 60) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, line in list(self.lines):
                if text in line:
                    return t
            assert self.proc.poll() is None, f"engine exited early: {self.lines}"
            time.sleep(0.05)
        raise AssertionError(f"no {text!r} within {timeout} s: {self.lines}")

    def worker_pids(self, role: str) -> list[int]:
        self.wait_for("engine: workers:")
        line = next(line for _, line in self.lines if "engine: workers:" in line)
        parts = line.split(":", 2)[2].split(",")
        return [int(part.split("pid ")[1]) for part in parts if part.strip().startswith(role)]

    def finish(self, timeout: float = 120) -> tuple[int, str]:
        stdout, _ = self.proc.communicate(timeout=timeout)
        self._reader.join(5)
        return self.proc.returncode, stdout


def _leftovers(pid: int, children: list[psutil.Process]) -> tuple[list, list]:
    alive = [c.pid for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    segments = list(SHM.glob(f"vggengine-{pid}-*"))
    return alive, segments


@pytest.mark.parametrize("role", ["dev", "pre"])
def test_killed_worker_is_replaced_and_nothing_is_lost(tmp_path, model, good_items, role):
    datalist = tmp_path / "list.txt"
    datalist.write_text("\n".join(good_items))
    out = tmp_path / "out"
    engine = EngineProcess(["--datalist", datalist, "--onnx", model, "-b", "4", "--iterations", "400",
                            "--save-topk", out / "topk.txt", "--report", out / "report.json", "--workers", "1"])
    victim = engine.worker_pids(role)[0]
    time.sleep(1.0)
    killed_at = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    noticed_at = engine.wait_for("died with exit code -9", timeout=10)
    assert noticed_at - killed_at < 5.0
    code, stdout = engine.finish()
    assert code == 0, stdout + "".join(line for _, line in engine.lines)
    report = json.loads((out / "report.json").read_text())
    total = len(good_items) * 400
    assert report["counts"]["done"] == total and report["counts"]["failed"] == 0
    assert report["counts"]["restarts"] == 1
    assert read_topk_items(out / "topk.txt") == good_items


def test_sigterm_stops_cleanly_and_leaves_nothing_behind(tmp_path, model, good_items):
    datalist = tmp_path / "list.txt"
    datalist.write_text("\n".join(good_items * 300))
    out = tmp_path / "out"
    engine = EngineProcess(["--datalist", datalist, "--onnx", model, "-b", "4", "--workers", "2", "-p", "2",
                            "--save-topk", out / "topk.txt", "--report", out / "report.json"])
    engine.worker_pids("dev")
    children = psutil.Process(engine.proc.pid).children(recursive=True)
    assert len(children) >= 4
    time.sleep(1.0)
    engine.proc.send_signal(signal.SIGTERM)
    code, stdout = engine.finish(timeout=30)
    assert code == 128 + signal.SIGTERM
    report = json.loads((out / "report.json").read_text())
    done = report["counts"]["done"]
    assert 0 < done < len(good_items) * 300 and report["counts"]["not_run"] > 0
    flushed = read_topk_items(out / "topk.txt")
    assert len(flushed) == done
    time.sleep(0.5)
    alive, segments = _leftovers(engine.proc.pid, children)
    assert alive == [] and segments == []


def test_memory_is_bounded_by_slots_not_datalist_length(tmp_path, model, good_items):
    npz_items = [g for g in good_items if g.endswith(".npz")]
    peaks = {}
    for n in (1000, 10000):
        datalist = tmp_path / f"list{n}.txt"
        datalist.write_text("\n".join(npz_items[i % len(npz_items)] for i in range(n)))
        proc = run_engine(["--datalist", datalist, "--onnx", model, "-b", "8", "--report", tmp_path / f"r{n}.json",
                           "--save-topk", tmp_path / f"topk{n}.txt"], timeout=300)
        assert proc.returncode == 0, proc.stderr
        report = json.loads((tmp_path / f"r{n}.json").read_text())
        assert report["counts"]["done"] == n
        peaks[n] = report["peak_rss_mb"]
    assert peaks[1000] > 0, "a run shorter than one supervision period still reports its peak"
    assert peaks[10000] <= 1.10 * peaks[1000], peaks


def test_auto_picks_a_measured_setting_and_runs_with_it(tmp_path, model, good_items):
    datalist = tmp_path / "list.txt"
    datalist.write_text("\n".join(good_items * 8))  # whatever batch the sweep picks, some batches are timed
    proc = run_engine(["--datalist", datalist, "--onnx", model, "--auto", "--auto-budget", "3",
                       "--report", tmp_path / "r.json"])
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    picked = proc.stderr.split("--auto picked ")[1].split(" (")[0].split()
    assert picked == ["--backend", report["config"]["backend"], "--precision", "fp32",
                      "-i", str(report["config"]["instances"]), "--threads", str(report["config"]["threads"]),
                      "-b", str(report["config"]["batch"])]
    assert "img/s measured on the model alone" in proc.stderr and report["counts"]["done"] == 8 * len(good_items)
