"""``python -m bench [--quick|--full] [--only NAME] [--smoke]``: every suite, one report.

Each suite (``bench/suite_<name>.py``, ``run(quick) -> dict``, see :mod:`bench`) runs in
a process of its own, so one suite's warm caches, threads or crash never touch the next
one's figures; a suite that is missing, raises, crashes or overruns its time limit is
reported with the reason and the others still run.

Writes ``<out>/<date>-<host>.json`` (machine, date, command, every suite's dict, per-sample
series summarized), a Markdown summary next to it, PNG plots into ``<out>/plots/`` (those
of earlier runs removed) and the run as measured into the git-ignored ``<out>/raw/``; see
:mod:`bench.results_files`.

``--smoke`` is for tests of this entry point: quick mode, ``BENCH_SMOKE=1`` in each
suite's environment (a suite may shrink its work to seconds when it sees it), and no
torch import for GPU discovery. Its results are marked ``"smoke": true`` and never feed
the README.
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench import SuiteSkipped
from bench.results_files import jsonable, write_run

SMOKE_ENV = "BENCH_SMOKE"
DEFAULT_OUT = Path(__file__).resolve().parent / "results"
# The build suite takes about 15 minutes here (an adaround build alone about 5).
QUICK_BUDGET_S = 1500
DEFAULT_TIMEOUT_S = {"quick": QUICK_BUDGET_S, "full": 4 * 3600}
SCHEMA = 1


def _contract_problem(result) -> str | None:
    """Why a suite's return value breaks the contract in :mod:`bench`, or None."""
    if not isinstance(result, dict):
        return f"run() returned {type(result).__name__}, not a dict"
    for key in ("rows", "ratios", "notes"):
        if key in result and not isinstance(result[key], list):
            return f"run() returned '{key}' as {type(result[key]).__name__}, not a list"
    for row in result.get("rows", []) + result.get("ratios", []):
        if not isinstance(row, dict) or "name" not in row or "value" not in row:
            return f"run() returned a row or ratio without name and value: {row!r}"
    if "series" in result and not isinstance(result["series"], dict):
        return "run() returned 'series' that is not a dict"
    return None


def run_suite_here(package: str, name: str, quick: bool) -> dict:
    """Import and run one suite in this process; never raises."""
    module_name = f"{package}.suite_{name}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name == module_name:
            return {"suite": name, "status": "missing", "error": f"no module {module_name}"}
        return {"suite": name, "status": "failed", "error": f"importing {module_name}: {e}",
                "traceback": traceback.format_exc()}
    except Exception as e:
        return {"suite": name, "status": "failed", "error": f"importing {module_name}: {type(e).__name__}: {e}",
                "traceback": traceback.format_exc()}
    if not callable(getattr(module, "run", None)):
        return {"suite": name, "status": "failed", "error": f"{module_name} has no run(quick) function"}
    try:
        result = module.run(quick)
    except SuiteSkipped as e:
        return {"suite": name, "status": "skipped", "error": str(e)}
    except Exception as e:
        return {"suite": name, "status": "failed", "error": f"{type(e).__name__}: {e}",
                "traceback": traceback.format_exc()}
    problem = _contract_problem(result)
    if problem:
        return {"suite": name, "status": "failed", "error": problem}
    return {"suite": name, **result, "status": "ok"}


def _child_main(args) -> int:
    result = run_suite_here(args.suite_package, args.run_one, quick=not args.full)
    try:
        text = json.dumps(result, default=jsonable)
    except (TypeError, ValueError) as e:
        text = json.dumps({"suite": args.run_one, "status": "failed", "error": f"result not JSON serialisable: {e}"})
    Path(args.result_file).write_text(text)
    return 0


def run_suite_isolated(package: str, name: str, mode: str, timeout_s: float, smoke: bool) -> dict:
    """Run one suite in a child process (its own session, killed whole on overrun)."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        result_file = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "bench", "--run-one", name, "--suite-package", package,
               "--result-file", str(result_file), f"--{mode}"]
        env = dict(os.environ)
        if smoke:
            env[SMOKE_ENV] = "1"
        else:
            env.pop(SMOKE_ENV, None)
        proc = subprocess.Popen(cmd, env=env, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            rc = None
        finally:  # also on Ctrl-C: the suite's session is in no terminal's process group
            _kill_leftovers(proc.pid)
            proc.wait()
        if rc is None:
            return {"suite": name, "status": "failed", "error": f"timed out after {timeout_s:.0f} s"}
        if rc != 0 or not result_file.exists():
            how = f"killed by signal {signal.Signals(-rc).name}" if rc < 0 else f"exit status {rc}"
            return {"suite": name, "status": "failed", "error": f"suite process ended with {how} and no result"}
        return json.loads(result_file.read_text())


def _kill_leftovers(pgid: int) -> None:
    """Processes a suite started and left behind die with its session."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def results_stem(now: datetime.datetime, host: str) -> str:
    safe_host = re.sub(r"[^A-Za-z0-9._-]", "_", host) or "host"
    return f"{now:%Y-%m-%d-%H%M%S}-{safe_host}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Run every benchmark suite and write one "
                                     "report: JSON, Markdown summary and PNG plots.")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="full", action="store_false",
                      help=f"the default: short runs; a suite is stopped after {QUICK_BUDGET_S // 60} minutes")
    mode.add_argument("--full", dest="full", action="store_true", help="long runs, larger sweeps")
    parser.set_defaults(full=False)
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="run only these suites (repeat or comma-separate)")
    parser.add_argument("--smoke", action="store_true", help="seconds-long mode for tests of this entry point")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="DIR",
                        help=f"where results, summary and plots go (default {DEFAULT_OUT})")
    parser.add_argument("--suite-timeout", type=float, metavar="S",
                        help=f"seconds before a suite is stopped (default: {QUICK_BUDGET_S} quick, "
                             f"{DEFAULT_TIMEOUT_S['full']} full)")
    parser.add_argument("--suite-package", default="bench", metavar="PKG",
                        help="package holding SUITES and suite_<name> modules (default: bench)")
    parser.add_argument("--run-one", help=argparse.SUPPRESS)
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
    return parser


def _selected_suites(parser, args) -> list[str]:
    try:
        available = list(importlib.import_module(args.suite_package).SUITES)
    except (ImportError, AttributeError) as e:
        parser.error(f"--suite-package {args.suite_package}: no SUITES list ({e})")
    if not args.only:
        return available
    wanted = [n.strip() for item in args.only for n in item.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in available]
    if unknown:
        parser.error(f"unknown suite {', '.join(unknown)}; the suites are {', '.join(available)}")
    return wanted


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.run_one:
        return _child_main(args)
    names = _selected_suites(parser, args)
    mode = "full" if args.full else "quick"
    timeout_s = args.suite_timeout or DEFAULT_TIMEOUT_S[mode]
    started = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.perf_counter()
    from bench.machine import machine_info  # the parent's tools; suite processes skip them

    machine = machine_info(probe_torch=not args.smoke)
    command = "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])
    suites = {}
    for name in names:
        print(f"[bench] {name}: running ({mode})", flush=True)
        t_suite = time.perf_counter()
        result = run_suite_isolated(args.suite_package, name, mode, timeout_s, args.smoke)
        result["elapsed_s"] = round(time.perf_counter() - t_suite, 3)
        suites[name] = result
        print(f"[bench] {name}: {result['status']} in {result['elapsed_s']:.1f} s"
              + (f": {result['error']}" if result.get("error") else ""), flush=True)
    results = {"schema": SCHEMA, "date": started.isoformat(timespec="seconds"), "host": machine["host"],
               "command": command.strip(), "mode": mode, "smoke": args.smoke, "machine": machine,
               "elapsed_s": round(time.perf_counter() - t0, 3), "suites": suites}
    return write_report(results, args.out, results_stem(started, machine["host"]))


def write_report(results: dict, out: Path, stem: str) -> int:
    """Write the run's files (:func:`bench.results_files.write_run`); print where and each
    goal's verdict; exit status 1 if any suite did not run."""
    from bench.report import fmt  # matplotlib: slow to import

    files = write_run(results, out, stem)
    for name, suite in results["suites"].items():
        for r in suite.get("ratios") or []:
            met = {True: "met", False: "NOT met"}.get(r.get("met"), "no verdict")
            print(f"[bench] {name}: {r['name']} = {fmt(r['value'])} (goal {r.get('goal') or '-'}: {met})")
    for note in files.rendering.plots_skipped:
        print(f"[bench] {note}")
    print(f"[bench] wrote {files.record}, {files.rendering.summary} and {len(files.rendering.plots)} plots "
          f"in {out / 'plots'}; raw samples in {files.raw}")
    if results["mode"] == "quick" and results["elapsed_s"] > QUICK_BUDGET_S:
        print(f"[bench] warning: --quick took {results['elapsed_s']:.0f} s, over its {QUICK_BUDGET_S} s budget")
    not_ok = [n for n, s in results["suites"].items() if s["status"] not in ("ok", "skipped")]
    if not_ok:
        print(f"[bench] suites that did not run: {', '.join(not_ok)}", file=sys.stderr)
    return 1 if not_ok else 0


if __name__ == "__main__":
    sys.exit(main())
