"""What a Classifier leaves behind: nothing, however it ends (with block, break,
KeyboardInterrupt, garbage collection), and flat memory over a long generator. Each case
runs as a user's script in a process of its own, so its children and /dev/shm files can be
counted from outside."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from tinynet import write_tiny_onnx

ROOT = Path(__file__).resolve().parents[2]
SHM = Path("/dev/shm")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return write_tiny_onnx(tmp_path_factory.mktemp("model") / "tiny.onnx", size=32, classes=10)


def _script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "user_script.py"
    path.write_text(textwrap.dedent(body))
    return path


def _leftovers(pid: int) -> list[str]:
    return sorted(p.name for p in SHM.glob(f"vggengine-{pid}-*"))


def _wait_gone(pids: list[int], timeout_s: float = 20.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        if not alive:
            return []
        time.sleep(0.2)
    return alive


def test_keyboard_interrupt_in_a_stream_leaves_no_process_and_no_shared_memory(model, tmp_path):
    script = _script(tmp_path, f"""
        import itertools, sys
        import numpy as np
        import psutil
        import engine

        clf = engine.Classifier(onnx={str(model)!r}, batch_size=4, workers=1)
        frame = np.zeros((40, 40, 3), np.uint8)
        try:
            for r in clf.stream(itertools.repeat(frame)):
                if r.index == 0:
                    print("children", *[c.pid for c in psutil.Process().children()], flush=True)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        """)
    proc = subprocess.Popen([sys.executable, script], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    children = [int(p) for p in proc.stdout.readline().split()[1:]]
    assert children, "the classifier runs worker processes"
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert "interrupted" in out, err
    assert proc.returncode == 0, err
    assert _wait_gone(children) == [] and _leftovers(proc.pid) == []


@pytest.mark.parametrize("ending", ("with_block_after_break", "garbage_collected"))
def test_a_classifier_left_or_collected_stops_everything(model, tmp_path, ending):
    script = _script(tmp_path, f"""
        import gc, json, os, time
        import numpy as np
        import psutil
        import engine

        frame = np.zeros((40, 40, 3), np.uint8)
        def workers():  # multiprocessing's own resource tracker lives as long as the script
            return [c.pid for c in psutil.Process().children() if "resource_tracker" not in " ".join(c.cmdline())]
        def frames():
            while True:
                yield frame
        if {ending!r} == "with_block_after_break":
            with engine.Classifier(onnx={str(model)!r}, batch_size=4, workers=1) as clf:
                for r in clf.stream(frames()):
                    if r.index == 20:
                        children = workers()
                        break
        else:
            clf = engine.Classifier(onnx={str(model)!r}, batch_size=4, workers=1)
            assert len(clf.classify([frame] * 9)) == 9
            children = workers()
            del clf
            gc.collect()
        deadline = time.monotonic() + 20
        while workers() and time.monotonic() < deadline:
            time.sleep(0.1)
        shm = [p for p in os.listdir("/dev/shm") if p.startswith(f"vggengine-{{os.getpid()}}-")]
        print(json.dumps({{"before": children, "after": workers(),
                          "shm": shm}}))
        """)
    proc = subprocess.run([sys.executable, script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["before"] and seen["after"] == [] and seen["shm"] == []


def test_a_long_generator_keeps_memory_flat(model, tmp_path):
    script = _script(tmp_path, f"""
        import json
        import numpy as np
        import psutil
        import engine

        rss = {{}}
        def items(n):
            rng = np.random.default_rng(0)
            for i in range(n):
                yield rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
        with engine.Classifier(onnx={str(model)!r}, batch_size=16, workers=1) as clf:
            for r in clf.stream(items(20000)):
                assert r.error is None
                if r.index in (2000, 19999):
                    rss[r.index] = psutil.Process().memory_info().rss
        print(json.dumps(rss))
        """)
    proc = subprocess.run([sys.executable, script], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rss = json.loads(proc.stdout.strip().splitlines()[-1])
    grown_mb = (rss["19999"] - rss["2000"]) / 2**20
    assert grown_mb < 16, f"RSS grew {grown_mb:.1f} MB over 18,000 items"
