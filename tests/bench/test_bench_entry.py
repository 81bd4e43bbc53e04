"""The ``python -m bench`` entry point with fake suites, and ``bench.update_readme``."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from bench.update_readme import END, FULL_END, FULL_GPU_END, FULL_GPU_START, FULL_START, GPU_END, GPU_START, START
from bench.update_readme import main as update_main

REPO = Path(__file__).resolve().parents[2]


def helper_spawning_suite(pid_variable: str, then: str) -> str:
    """A suite that starts a long-lived helper process, writes its pid to the file named by the environment
    variable ``pid_variable`` (so the test can check that the runner killed it), and then runs ``then``."""
    return f"""
        import os
        import subprocess
        import sys
        import time

        def run(quick):
            helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
            with open(os.environ["{pid_variable}"], "w") as f:
                f.write(str(helper.pid))
            {then}
    """


FAKE_SUITES = {
    "__init__": 'SUITES = ("speed", "preprocess", "broken", "absent", "crash", "stuck", "badshape", "nogpu")\n',
    "suite_speed": """
        import os
        import numpy as np

        def run(quick):
            return {
                "suite": "speed", "title": "engine against baseline",
                "rows": [{"name": "engine", "value": np.float32(120.0), "unit": "images/s", "key": True},
                         {"name": "baseline", "value": 60.0, "unit": "images/s",
                          "stages_us": {"decode": 10.5, "infer": 200.0}}],
                "ratios": [{"name": "engine / baseline", "value": 2.0, "goal": ">= 1.5", "met": True},
                           {"name": "int8 / fp32", "value": 1.2, "goal": ">= 2.0", "met": False}],
                "notes": [f"smoke={os.environ.get('BENCH_SMOKE')} quick={quick}"],
                "series": {
                    "throughput": [{"backend": "ort", "precision": p, "batch": b,
                                    "value": b * (2 if p == "int8" else 1)}
                                   for p in ("fp32", "int8") for b in (1, 2, 4)],
                    "latency_ms": {"concurrency 1": np.linspace(0.5, 3.0, 50)},
                },
            }
    """,
    "suite_preprocess": """
        def run(quick):
            return {"suite": "preprocess", "title": "resize+crop+normalize", "ratios": [], "notes": [],
                    "rows": [{"name": "kernel", "value": 0.4, "unit": "ms"},
                             {"name": "torchvision", "value": 2.5, "unit": "ms"}]}
    """,
    "suite_broken": """
        def run(quick):
            raise RuntimeError("baseline exploded")
    """,
    "suite_crash": helper_spawning_suite("CRASH_PID_FILE", then="os._exit(7)"),
    "suite_stuck": helper_spawning_suite("STUCK_PID_FILE", then="time.sleep(120)"),
    "suite_nogpu": """
        from bench import SuiteSkipped

        def run(quick):
            raise SuiteSkipped("no CUDA device visible to torch")
    """,
    "suite_badshape": """
        def run(quick):
            return [1, 2, 3]
    """,
}


@pytest.fixture
def fake_package(tmp_path):
    package = tmp_path / "pkgs" / "fakebench"
    package.mkdir(parents=True)
    for module, source in FAKE_SUITES.items():
        (package / f"{module}.py").write_text(textwrap.dedent(source))
    return package.parent


def run_bench(pkgs: Path, *args, env_extra=None):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(pkgs), str(REPO)]), **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "bench", "--smoke", "--suite-package", "fakebench", *map(str, args)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def process_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def test_bench_runs_every_suite_and_reports_failures(fake_package, tmp_path):
    out = tmp_path / "out"
    pid_files = {"STUCK_PID_FILE": tmp_path / "stuck.pid", "CRASH_PID_FILE": tmp_path / "crash.pid"}
    proc = run_bench(fake_package, "--out", out, "--suite-timeout", "4",
                     env_extra={k: str(v) for k, v in pid_files.items()})
    assert proc.returncode == 1, proc.stderr
    [json_path] = out.glob("*.json")
    results = json.loads(json_path.read_text())
    assert results["smoke"] is True and results["mode"] == "quick"
    assert results["machine"]["cores_logical"] >= 1 and results["machine"]["cpu_model"]
    suites = results["suites"]
    assert {n: s["status"] for n, s in suites.items()} == {
        "speed": "ok", "preprocess": "ok", "broken": "failed", "absent": "missing", "crash": "failed",
        "stuck": "failed", "badshape": "failed", "nogpu": "skipped"}
    assert suites["nogpu"]["error"] == "no CUDA device visible to torch"
    assert suites["speed"]["rows"][0]["value"] == 120.0
    assert suites["speed"]["notes"] == ["smoke=1 quick=True"]
    assert suites["broken"]["error"] == "RuntimeError: baseline exploded"
    assert suites["crash"]["error"] == "suite process ended with exit status 7 and no result"
    assert suites["stuck"]["error"] == "timed out after 4 s"
    assert suites["badshape"]["error"] == "run() returned list, not a dict"
    assert suites["speed"]["series"]["latency_ms"]["concurrency 1"]["count"] == 50
    raw = json.loads((out / "raw" / json_path.name).read_text())
    assert raw["suites"]["speed"]["series"]["latency_ms"]["concurrency 1"] == list(np.linspace(0.5, 3.0, 50))
    for pid_file in pid_files.values():
        assert process_gone(int(pid_file.read_text())), f"a suite's leftover process survived ({pid_file.name})"

    plots = {p["name"]: out / p["file"] for p in results["plots"]}
    assert set(plots) == {"throughput", "latency_cdf", "preprocess"}
    for path in plots.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json_path.with_suffix(".md").read_text()
    assert "| speed | int8 / fp32 | 1.2 | >= 2.0 | no |" in summary
    assert "Reason: RuntimeError: baseline exploded" in summary
    assert "| name | value | unit | stages_us |" in summary
    assert "| baseline | 60 | images/s | decode 10.5, infer 200 |" in summary
    assert f"](plots/{plots['throughput'].name})" in summary


def test_a_skipped_suite_is_not_a_failure(fake_package, tmp_path):
    proc = run_bench(fake_package, "--only", "speed", "--only", "nogpu", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    [json_path] = tmp_path.glob("*.json")
    assert json.loads(json_path.read_text())["suites"]["nogpu"]["status"] == "skipped"
    assert "nogpu: skipped" in proc.stdout


def test_bench_only_and_full_and_skipped_plots(fake_package, tmp_path):
    out = tmp_path / "out"
    proc = run_bench(fake_package, "--full", "--only", "preprocess", "--out", out)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(next(out.glob("*.json")).read_text())
    assert list(results["suites"]) == ["preprocess"] and results["mode"] == "full"
    assert [p["name"] for p in results["plots"]] == ["preprocess"]
    assert len(results["plots_skipped"]) == 2 and "Serving latency CDF: skipped" in proc.stdout

    unknown = run_bench(fake_package, "--only", "nosuch", "--out", out)
    assert unknown.returncode == 2 and "unknown suite nosuch" in unknown.stderr


def results_file(path: Path, date: str, smoke=False, value=2.0, marked=1) -> Path:
    """A results file whose pipeline suite has ``marked`` ratios marked for the README and one not."""
    ratios = [{"name": f"engine / torch loop{f' {i}' if i else ''}", "value": value, "goal": ">= 3",
               "met": value >= 3, "readme": True} for i in range(marked)]
    ratios.append({"name": "int8 / fp32 inference only", "value": 1.25, "goal": None, "met": None})
    path.write_text(json.dumps({
        "date": date, "host": "box", "command": "python -m bench --quick", "mode": "quick", "smoke": smoke,
        "machine": {"cpu_model": "Test CPU", "cores_usable": 2, "cores_logical": 2, "memory_gb": 8, "gpus": []},
        "suites": {
            "pipeline": {"status": "ok", "rows": [{"name": "engine", "value": 50.5, "unit": "images/s"}],
                         "ratios": ratios},
            "serve": {"status": "missing", "error": "no module bench.suite_serve"},
        }}))
    return path


def documents(root: Path, readme_text: str, doc_text: str = f"# Benchmarks\n{FULL_START}\nold\n{FULL_END}\n"):
    """A README and its docs/benchmarks.md."""
    (root / "docs").mkdir(parents=True, exist_ok=True)
    (root / "docs" / "benchmarks.md").write_text(doc_text)
    (root / "README.md").write_text(readme_text)
    return root / "README.md", root / "docs" / "benchmarks.md"


def test_update_readme_rewrites_only_between_markers(tmp_path):
    """The README gets the marked ratios only; docs/benchmarks.md every ratio and the figures."""
    before, after = "# Title\n\nintro text\n\n", "\n\n## Later\nkept as is\n"
    readme, doc = documents(tmp_path, f"{before}{START}\nstale numbers\n{END}{after}")
    results = tmp_path / "results"
    results.mkdir()
    results_file(results / "a.json", "2026-01-02T00:00:00+00:00", value=2.0)
    results_file(results / "b.json", "2026-03-01T00:00:00+00:00", value=3.5)
    results_file(results / "c.json", "2026-09-09T00:00:00+00:00", smoke=True, value=99.0)
    assert update_main(["--readme", str(readme), "--results-dir", str(results)]) == 0
    text = readme.read_text()
    assert text.startswith(before + START + "\n") and text.endswith(END + after)
    table = text[text.index(START):text.index(END)]
    assert "Measured 2026-03-01T00:00:00+00:00 on Test CPU, 2 cores usable" in table
    assert "| pipeline | engine / torch loop | 3.5 | >= 3 | met |" in table
    assert "int8 / fp32" not in table and "50.5" not in table  # unmarked ratio, plain figures: benchmarks.md
    assert "serve (missing: no module bench.suite_serve)" in table
    assert "stale" not in text and "99" not in text
    full = doc.read_text()
    assert "| pipeline | engine / torch loop | 3.5 | >= 3 | met |" in full
    assert "| pipeline | int8 / fp32 inference only | 1.25 | - | - |" in full
    assert "| pipeline | engine | 50.5 | images/s |" in full and "results file `../results/b.json`" in full
    assert full.startswith("# Benchmarks\n") and "old" not in full

    assert update_main(["--readme", str(readme), str(results / "a.json")]) == 0
    assert "| pipeline | engine / torch loop | 2 | >= 3 | not met |" in readme.read_text()


def test_update_readme_takes_each_suite_from_its_newest_run(tmp_path):
    """A run of some suites updates their rows and keeps the others' from their own newest run."""
    readme, doc = documents(tmp_path, f"{START}\n{END}\n")
    results = tmp_path / "results"
    results.mkdir()
    results_file(results / "all.json", "2026-03-01T00:00:00+00:00", value=3.5)
    serve = {"status": "ok", "rows": [], "ratios": [{"name": "served / offline", "value": 0.97, "goal": ">= 0.9",
                                                     "met": True, "readme": True}]}
    full = json.loads((results / "all.json").read_text())
    (results / "all.json").write_text(json.dumps({**full, "suites": {**full["suites"], "serve": serve}}))
    results_file(results / "some.json", "2026-04-01T00:00:00+00:00", value=4.5)  # pipeline again, serve missing
    assert update_main(["--readme", str(readme), "--results-dir", str(results)]) == 0
    table = readme.read_text()
    assert "Each suite's newest run:" in table
    assert "- pipeline: measured 2026-04-01" in table and "- serve: measured 2026-03-01" in table
    assert "| pipeline | engine / torch loop | 4.5 | >= 3 | met |" in table
    assert "| serve | served / offline | 0.97 | >= 0.9 | met |" in table
    assert "3.5" not in table and "Not measured" not in table


def test_update_readme_gpu_table_comes_from_the_newest_gpu_run(tmp_path):
    """A GPU-only run (another machine) fills the GPU table and leaves the main table to
    the newest run in which a CPU suite ran."""
    readme, doc = documents(tmp_path, f"{START}\n{END}\n\n## GPU\n{GPU_START}\nstale\n{GPU_END}\n",
                            f"{FULL_START}\n{FULL_END}\n{FULL_GPU_START}\n{FULL_GPU_END}\n")
    results = tmp_path / "results"
    results.mkdir()
    results_file(results / "cpu.json", "2026-03-01T00:00:00+00:00", value=3.5)
    gpu_suite = {"status": "ok", "rows": [{"name": "vgg16 fp16 engine", "value": 6938.0, "unit": "img/s"}],
                 "ratios": [{"name": "engine / torch loop", "value": 0.8168, "goal": None, "met": None,
                             "readme": True}]}
    for name, date, suites in (
            ("gpu-old.json", "2026-04-01T00:00:00+00:00", {"gpu": {**gpu_suite, "rows": []}}),
            ("gpu.json", "2026-05-01T00:00:00+00:00", {"gpu": gpu_suite}),
            ("gpu-skipped.json", "2026-06-01T00:00:00+00:00", {"gpu": {"status": "skipped", "error": "no CUDA"}})):
        (results / name).write_text(json.dumps({
            "date": date, "host": "gpubox", "command": "python -m bench --only gpu", "smoke": False,
            "machine": {"cpu_model": "Big CPU", "cores_usable": 16, "memory_gb": 128,
                        "gpus": [{"name": "NVIDIA H200", "memory_mb": 143771.0}]},
            "suites": suites}))
    assert update_main(["--readme", str(readme), "--results-dir", str(results)]) == 0
    text = readme.read_text()
    main, gpu = text[text.index(START):text.index(END)], text[text.index(GPU_START):text.index(GPU_END)]
    assert "Measured 2026-03-01" in main and "| pipeline | engine / torch loop | 3.5 |" in main
    assert "6938" not in main
    assert "Measured 2026-05-01" in gpu and "NVIDIA H200" in gpu and "results/gpu.json" in gpu
    assert "| gpu | engine / torch loop | 0.8168 | - | - |" in gpu
    assert "6938" not in gpu and "pipeline" not in gpu and "stale" not in text
    full = doc.read_text()
    assert "| gpu | vgg16 fp16 engine | 6938 | img/s |" in full[full.index(FULL_GPU_START):]


def test_update_readme_fails_clearly(tmp_path, capsys):
    readme, doc = documents(tmp_path, "# no markers here\n")
    results = results_file(tmp_path / "r.json", "2026-01-01T00:00:00+00:00")
    assert update_main(["--readme", str(readme), str(results)]) == 2
    assert "needs exactly one '<!-- perf-table:start -->'" in capsys.readouterr().err
    assert readme.read_text() == "# no markers here\n"

    readme.write_text(f"{END}\n{START}\n")
    assert update_main(["--readme", str(readme), str(results)]) == 2
    assert "comes before" in capsys.readouterr().err

    smoke = results_file(tmp_path / "s.json", "2026-01-01T00:00:00+00:00", smoke=True)
    readme.write_text(f"{START}\n{END}\n")
    assert update_main(["--readme", str(readme), str(smoke)]) == 2
    assert "smoke run" in capsys.readouterr().err
    assert update_main(["--readme", str(readme), "--results-dir", str(tmp_path / "empty")]) == 2


def test_update_readme_refuses_more_than_15_marked_ratios_and_writes_nothing(tmp_path, capsys):
    readme, doc = documents(tmp_path, f"{START}\nkept\n{END}\n")
    before = doc.read_text()
    no_gpu_runs = ["--results-dir", str(tmp_path / "empty")]
    assert update_main(["--readme", str(readme), *no_gpu_runs,
                        str(results_file(tmp_path / "r.json", "2026-01-01", marked=16))]) == 2
    assert "16 ratios are marked" in capsys.readouterr().err
    assert "kept" in readme.read_text() and doc.read_text() == before
    assert update_main(["--readme", str(readme), *no_gpu_runs,
                        str(results_file(tmp_path / "r.json", "2026-01-01", marked=15))]) == 0
    assert readme.read_text().count("| pipeline | engine / torch loop") == 15


def test_update_readme_needs_the_benchmarks_document(tmp_path, capsys):
    readme, doc = documents(tmp_path, f"{START}\n{END}\n")
    doc.unlink()
    assert update_main(["--readme", str(readme), str(results_file(tmp_path / "r.json", "2026-01-01"))]) == 2
    assert "benchmarks.md" in capsys.readouterr().err and readme.read_text() == f"{START}\n{END}\n"


def test_plot_data_forms_and_skips(tmp_path):
    from bench.report import _throughput_lines, make_plots

    results = {"suites": {
        "build": {"status": "ok", "series": {"throughput": [
            {"backend": "ort", "precision": "int8", "batch": 4, "qps": 40.0},
            {"backend": "ort", "precision": "int8", "batch": 1, "qps": 12.0},
            {"backend": "ort", "precision": "int8", "batch": "x", "qps": 1.0}]}},
        "pipeline": {"status": "ok", "series": {"throughput": {"ort loop": {"8": 30.0, "1": 9.0}},
                                                "throughput_unit": "img/s"}},
        "serve": {"status": "failed", "series": {"latency_us": {"c1": [1000.0, 2000.0]}}},
    }}
    lines, unit = _throughput_lines(results)
    assert lines == {"ort int8": [(4.0, 40.0), (1.0, 12.0)], "ort loop": [(8.0, 30.0), (1.0, 9.0)]}
    assert unit == "images/s or img/s"
    drawn, skipped = make_plots(results, tmp_path, "run")
    assert [p["name"] for p in drawn] == ["throughput"] and (tmp_path / "run-throughput.png").is_file()
    assert any("Serving latency CDF: skipped" in s for s in skipped)  # only a failed suite had latencies
    results["suites"]["serve"]["status"] = "ok"
    drawn, _ = make_plots(results, tmp_path, "run2")
    assert [p["name"] for p in drawn] == ["throughput", "latency_cdf"]
