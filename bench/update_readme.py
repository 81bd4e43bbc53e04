"""``python -m bench.update_readme [RESULTS.json]``: the README's performance tables from results files.

Rewrites only the text between ``<!-- perf-table:start -->`` and
``<!-- perf-table:end -->``, from the given results file or else the newest non-smoke
one in ``bench/results/`` in which a CPU suite ran, so the README never carries a number
no results file holds. Where the README also has ``<!-- perf-table-gpu:start -->`` and
``<!-- perf-table-gpu:end -->``, the ``gpu`` suite of the newest results file in which it
ran goes there (GPU runs happen on other machines, at other times). A table gives the
date, the machine, each ratio with its goal and whether it was met, and the key absolute
figures (a suite's rows marked ``"key": true``, or all its rows when it marks none).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from bench import SUITES
from bench.machine import describe
from bench.report import fmt

START = "<!-- perf-table:start -->"
END = "<!-- perf-table:end -->"
GPU_START = "<!-- perf-table-gpu:start -->"
GPU_END = "<!-- perf-table-gpu:end -->"
GPU_SUITES = ("gpu",)
CPU_SUITES = tuple(name for name in SUITES if name not in GPU_SUITES)
REPO = Path(__file__).resolve().parents[1]
DEFAULT_README = REPO / "README.md"
DEFAULT_RESULTS_DIR = REPO / "bench" / "results"


class UpdateError(Exception):
    pass


def load_results(path: Path) -> dict:
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UpdateError(f"results file {path}: {e}") from None
    if not isinstance(results, dict) or "suites" not in results or "date" not in results:
        raise UpdateError(f"results file {path}: not a 'python -m bench' results file (no date or suites)")
    return results


def ran(results: dict, suites) -> bool:
    """Whether any of ``suites`` ran to completion in ``results``."""
    return any(results["suites"].get(name, {}).get("status") == "ok" for name in suites)


def latest_results(results_dir: Path, suites=CPU_SUITES) -> Path | None:
    """The results file with the newest date inside it in which one of ``suites`` ran,
    smoke runs left out; None when there is none."""
    candidates = []
    for path in sorted(results_dir.glob("*.json")):
        try:
            results = load_results(path)
        except UpdateError:
            continue
        if not results.get("smoke") and ran(results, suites):
            candidates.append((results["date"], path.name, path))
    return max(candidates)[2] if candidates else None


def _key_rows(suite: dict) -> list[dict]:
    rows = [r for r in suite.get("rows") or [] if isinstance(r, dict)]
    marked = [r for r in rows if r.get("key")]
    return marked or rows


def render_table(results: dict, source: str) -> str:
    """The Markdown that goes between the markers."""
    lines = [f"Measured {results['date']} on {describe(results.get('machine') or {})}; "
             f"`{results.get('command', 'python -m bench')}`, results file `{source}`.", ""]
    suites = results.get("suites", {})
    ok = {n: s for n, s in suites.items() if s.get("status") == "ok"}
    ratios = [(n, r) for n, s in ok.items() for r in s.get("ratios") or []]
    if ratios:
        lines += ["| suite | ratio | value | goal | met |", "|---|---|---|---|---|"]
        for name, r in ratios:
            met = r.get("met")
            met_text = "-" if met is None else ("met" if met else "not met")
            lines.append(f"| {name} | {fmt(r.get('name'))} | {fmt(r.get('value'))} | "
                         f"{fmt(r.get('goal') or '-')} | {met_text} |")
        lines.append("")
    figures = [(n, r) for n, s in ok.items() for r in _key_rows(s)]
    if figures:
        lines += ["| suite | figure | value | unit |", "|---|---|---|---|"]
        lines += [f"| {n} | {fmt(r.get('name'))} | {fmt(r.get('value'))} | {fmt(r.get('unit', ''))} |"
                  for n, r in figures]
        lines.append("")
    not_run = [f"{n} ({': '.join(str(x) for x in (s.get('status'), s.get('error')) if x)})"
               for n, s in suites.items() if s.get("status") != "ok"]
    if not_run:
        lines += ["Not measured in this run: " + "; ".join(not_run) + ".", ""]
    if not ratios and not figures:
        lines += ["This results file holds no figures.", ""]
    return "\n".join(lines)


def replace_between_markers(text: str, body: str, where: str, start: str = START, end: str = END) -> str:
    """``text`` with what lies between the two markers replaced by ``body``."""
    starts, ends = text.count(start), text.count(end)
    if starts != 1 or ends != 1:
        raise UpdateError(f"{where}: needs exactly one '{start}' and one '{end}' "
                          f"(found {starts} and {ends}); add them where the table goes")
    head, rest = text.split(start)
    if end not in rest:
        raise UpdateError(f"{where}: '{end}' comes before '{start}'")
    _, tail = rest.split(end)
    return f"{head}{start}\n{body.strip()}\n{end}{tail}"


def _source(results_path: Path, readme: Path) -> str:
    try:
        return str(results_path.resolve().relative_to(readme.resolve().parent))
    except ValueError:
        return str(results_path)


def update_readme(readme: Path, results_path: Path, gpu_results_path: Path | None = None) -> bool:
    """Rewrite the table (and the GPU table, given its results file and the README's
    markers for it); returns whether the README changed."""
    results = load_results(results_path)
    if results.get("smoke"):
        raise UpdateError(f"{results_path} is a smoke run: its figures are not measurements")
    try:
        text = readme.read_text()
    except OSError as e:
        raise UpdateError(f"README {readme}: {e.strerror or e}") from None
    new = replace_between_markers(text, render_table(results, _source(results_path, readme)), str(readme))
    if gpu_results_path is not None and GPU_START in new:
        gpu = load_results(gpu_results_path)
        gpu_only = {**gpu, "suites": {n: s for n, s in gpu["suites"].items() if n in GPU_SUITES}}
        new = replace_between_markers(new, render_table(gpu_only, _source(gpu_results_path, readme)),
                                      str(readme), GPU_START, GPU_END)
    if new == text:
        return False
    tmp = readme.with_name(readme.name + ".tmp")
    tmp.write_text(new)
    os.replace(tmp, readme)
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.update_readme",
                                     description="Rewrite the README's performance tables from bench results files.")
    parser.add_argument("results", nargs="?", type=Path, metavar="RESULTS.json",
                        help="results file (default: the newest non-smoke one in --results-dir in which a CPU "
                             "suite ran)")
    parser.add_argument("--readme", type=Path, default=DEFAULT_README)
    parser.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS_DIR)
    args = parser.parse_args(argv)
    try:
        results_path = args.results or latest_results(args.results_dir)
        if results_path is None:
            raise UpdateError(f"no results file in {args.results_dir}: run 'python -m bench' first")
        changed = update_readme(args.readme, results_path, latest_results(args.results_dir, GPU_SUITES))
    except UpdateError as e:
        print(f"bench.update_readme: {e}", file=sys.stderr)
        return 2
    print(f"{args.readme}: performance table {'updated' if changed else 'already up to date'} from {results_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
