"""``python -m bench.update_readme [RESULTS.json]``: the README's key ratios and docs/benchmarks.md's
full tables, from results files.

The README shows the few ratios that say how fast the engine is against what it replaces:
those a suite marks ``"readme": True`` (one or two per suite), each with its goal and
whether it was met, the date and the machine; at most :data:`MAX_README_ROWS` in all, or
this refuses (unmark one: a table a reader skims has to stay short). docs/benchmarks.md
gets every ratio and the key absolute figures of the same run (a suite's rows marked
``"key": true``, or all its rows when it marks none).

Each file is rewritten only between its markers: ``<!-- perf-table:start -->`` /
``<!-- perf-table:end -->`` (README) and ``<!-- bench-tables:start -->`` /
``<!-- bench-tables:end -->`` (docs/benchmarks.md), from the given results file or else
each CPU suite's newest non-smoke run in ``bench/results/`` (so a run of a few suites
updates their rows and keeps the others', each with its date), so neither carries a number
no results file holds. Where a file also has the ``-gpu`` markers, the
``gpu`` suite of the newest results file in which it ran goes there (GPU runs happen on
other machines, at other times).
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
FULL_START = "<!-- bench-tables:start -->"
FULL_END = "<!-- bench-tables:end -->"
FULL_GPU_START = "<!-- bench-tables-gpu:start -->"
FULL_GPU_END = "<!-- bench-tables-gpu:end -->"
MAX_README_ROWS = 15
GPU_SUITES = ("gpu",)
CPU_SUITES = tuple(name for name in SUITES if name not in GPU_SUITES)
REPO = Path(__file__).resolve().parents[1]
DEFAULT_README = REPO / "README.md"
BENCHMARKS_DOC = Path("docs") / "benchmarks.md"  # beside the README
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


def newest_per_suite(results_dir: Path, suites=CPU_SUITES) -> list[tuple[Path, dict]]:
    """The results files that hold each of ``suites``' newest run (a suite that never ran
    to completion: its newest attempt), each file cut down to the suites it gives, newest
    file first; smoke runs left out. A run of a few suites updates those rows and keeps
    the others' figures, each with its own date."""
    newest: dict[str, tuple[tuple, Path, dict]] = {}
    for path in sorted(results_dir.glob("*.json")):
        try:
            results = load_results(path)
        except UpdateError:
            continue
        if results.get("smoke"):
            continue
        for name, suite in results["suites"].items():
            if name not in suites:
                continue
            rank = (suite.get("status") == "ok", results["date"], path.name)
            if name not in newest or rank > newest[name][0]:
                newest[name] = (rank, path, results)
    chosen: dict[Path, dict] = {}
    for name, (_, path, results) in newest.items():
        chosen.setdefault(path, {**results, "suites": {}})["suites"][name] = results["suites"][name]
    return sorted(chosen.items(), key=lambda item: item[1]["date"], reverse=True)


def _key_rows(suite: dict) -> list[dict]:
    rows = [r for r in suite.get("rows") or [] if isinstance(r, dict)]
    marked = [r for r in rows if r.get("key")]
    return marked or rows


def _ok(results: dict) -> dict[str, dict]:
    return {n: s for n, s in results.get("suites", {}).items() if s.get("status") == "ok"}


def readme_ratios(results: dict) -> list[tuple[str, dict]]:
    """``(suite, ratio)`` for every ratio its suite marked for the README."""
    return [(n, r) for n, s in _ok(results).items() for r in s.get("ratios") or [] if r.get("readme")]


def _suite_names(results: dict) -> str:
    return ", ".join(results.get("suites", {}))


def _header(parts: list[tuple[dict, str]]) -> list[str]:
    """When the figures were measured, where and how: one line, or one per results file."""
    lines = [f"Measured {r['date']} on {describe(r.get('machine') or {})}; "
             f"`{r.get('command', 'python -m bench')}`, results file `{source}`" for r, source in parts]
    if len(lines) == 1:
        return [lines[0] + ".", ""]
    return ["Each suite's newest run:", ""] + [f"- {_suite_names(r)}: {line[0].lower()}{line[1:]}."
                                               for (r, _), line in zip(parts, lines)] + [""]


def _ratio_table(ratios: list[tuple[str, dict]]) -> list[str]:
    lines = ["| suite | ratio | value | goal | met |", "|---|---|---|---|---|"]
    for name, r in ratios:
        met = r.get("met")
        met_text = "-" if met is None else ("met" if met else "not met")
        lines.append(f"| {name} | {fmt(r.get('name'))} | {fmt(r.get('value'))} | "
                     f"{fmt(r.get('goal') or '-')} | {met_text} |")
    return lines + [""]


def _not_run(parts: list[tuple[dict, str]]) -> list[str]:
    not_run = [f"{n} ({': '.join(str(x) for x in (s.get('status'), s.get('error')) if x)})"
               for results, _ in parts for n, s in results.get("suites", {}).items() if s.get("status") != "ok"]
    return ["Not measured in this run: " + "; ".join(not_run) + ".", ""] if not_run else []


def render_readme_table(parts: list[tuple[dict, str]]) -> str:
    """The README's table: the marked ratios with their goals."""
    ratios = [marked for results, _ in parts for marked in readme_ratios(results)]
    lines = _header(parts)
    lines += _ratio_table(ratios) if ratios else ["No ratio of this run is marked for the README.", ""]
    return "\n".join(lines + _not_run(parts))


def render_table(parts: list[tuple[dict, str]]) -> str:
    """docs/benchmarks.md's tables: every ratio, then the key absolute figures."""
    oks = [_ok(results) for results, _ in parts]
    lines = _header(parts)
    ratios = [(n, r) for ok in oks for n, s in ok.items() for r in s.get("ratios") or []]
    if ratios:
        lines += _ratio_table(ratios)
    figures = [(n, r) for ok in oks for n, s in ok.items() for r in _key_rows(s)]
    if figures:
        lines += ["| suite | figure | value | unit |", "|---|---|---|---|"]
        lines += [f"| {n} | {fmt(r.get('name'))} | {fmt(r.get('value'))} | {fmt(r.get('unit', ''))} |"
                  for n, r in figures]
        lines.append("")
    lines += _not_run(parts)
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


def _source(results_path: Path, document: Path) -> str:
    try:
        return os.path.relpath(results_path.resolve(), document.resolve().parent)
    except ValueError:
        return str(results_path)


def _measured(path: Path, suites=None, results: dict | None = None) -> dict:
    """A results file's figures (only ``suites``' when given); a smoke run is refused."""
    results = results or load_results(path)
    if results.get("smoke"):
        raise UpdateError(f"{path} is a smoke run: its figures are not measurements")
    if suites is not None:
        results = {**results, "suites": {n: s for n, s in results["suites"].items() if n in suites}}
    return results


def _rewritten(document: Path, tables: list[tuple[str, str, str]]) -> tuple[str, str]:
    """The document's text, and its text with each ``(body, start, end)`` between its
    markers (the GPU markers are optional)."""
    try:
        text = document.read_text()
    except OSError as e:
        raise UpdateError(f"{document}: {e.strerror or e}") from None
    new = text
    for body, start, end in tables:
        if start not in (GPU_START, FULL_GPU_START) or start in new:
            new = replace_between_markers(new, body, str(document), start, end)
    return text, new


def _write(document: Path, old: str, new: str) -> bool:
    if new == old:
        return False
    tmp = document.with_name(document.name + ".tmp")
    tmp.write_text(new)
    os.replace(tmp, document)
    return True


def update_readme(readme: Path, results: Path | list[tuple[Path, dict]], gpu_results_path: Path | None = None,
                  benchmarks: Path | None = None) -> tuple[bool, bool]:
    """Rewrite the README's key ratios and the benchmarks document's full tables (and their
    GPU tables, given a GPU results file); whether each changed. ``results``: one results
    file, or (file, figures) pairs as :func:`newest_per_suite` gives them. Nothing is
    written unless both documents can be."""
    benchmarks = benchmarks or readme.parent / BENCHMARKS_DOC
    pairs = [(results, None)] if isinstance(results, Path) else results
    cpu = [(_measured(path, results=figures), path) for path, figures in pairs]
    readme_tables = [(render_readme_table([(r, _source(p, readme)) for r, p in cpu]), START, END)]
    doc_tables = [(render_table([(r, _source(p, benchmarks)) for r, p in cpu]), FULL_START, FULL_END)]
    marked = [m for r, _ in cpu for m in readme_ratios(r)]
    if gpu_results_path is not None:
        gpu = _measured(gpu_results_path, GPU_SUITES)
        marked += readme_ratios(gpu)
        readme_tables.append((render_readme_table([(gpu, _source(gpu_results_path, readme))]), GPU_START, GPU_END))
        doc_tables.append((render_table([(gpu, _source(gpu_results_path, benchmarks))]), FULL_GPU_START,
                           FULL_GPU_END))
    if len(marked) > MAX_README_ROWS:
        suites = ", ".join(sorted({n for n, _ in marked}))
        raise UpdateError(f"{len(marked)} ratios are marked \"readme\": True (suites {suites}); the README shows at "
                          f"most {MAX_README_ROWS}: unmark the least telling ones in their suites")
    readme_text, doc_text = _rewritten(readme, readme_tables), _rewritten(benchmarks, doc_tables)
    return _write(readme, *readme_text), _write(benchmarks, *doc_text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.update_readme",
                                     description="Rewrite the README's key ratios and docs/benchmarks.md's full "
                                                 "tables from bench results files.")
    parser.add_argument("results", nargs="?", type=Path, metavar="RESULTS.json",
                        help="results file (default: each CPU suite's newest non-smoke run in --results-dir)")
    parser.add_argument("--readme", type=Path, default=DEFAULT_README)
    parser.add_argument("--benchmarks", type=Path, default=None,
                        help=f"the document of full tables (default: {BENCHMARKS_DOC} beside the README)")
    parser.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS_DIR)
    args = parser.parse_args(argv)
    try:
        results = args.results or newest_per_suite(args.results_dir)
        if not results:
            raise UpdateError(f"no results file in {args.results_dir}: run 'python -m bench' first")
        changed = update_readme(args.readme, results, latest_results(args.results_dir, GPU_SUITES), args.benchmarks)
    except UpdateError as e:
        print(f"bench.update_readme: {e}", file=sys.stderr)
        return 2
    for document, did in zip((args.readme, args.benchmarks or args.readme.parent / BENCHMARKS_DOC), changed):
        sources = args.results or ", ".join(path.name for path, _ in results)
        print(f"{document}: performance tables {'updated' if did else 'already up to date'} from {sources}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
