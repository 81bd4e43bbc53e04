"""``python -m bench.render RESULTS.json [--out DIR]``: draw a run's summary and plots again.

A results folder keeps the Markdown summary and plots of its latest run only; any run's
can be drawn again from its JSON record (the latency CDF through the record's
percentiles) or, more exactly, from its raw file. They go to the git-ignored
``bench/results/raw/`` unless ``--out`` says otherwise.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.results_files import RAW_DIR, render

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / RAW_DIR


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.render", description=__doc__.split("\n\n")[1])
    parser.add_argument("results", type=Path, metavar="RESULTS.json", help="a run's JSON record or raw file")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="DIR",
                        help=f"where the summary and plots go (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    try:
        results = json.loads(args.results.read_text())
    except (OSError, ValueError) as e:
        parser.error(f"results file {args.results}: {e}")
    if not isinstance(results, dict) or not isinstance(results.get("suites"), dict):
        parser.error(f"results file {args.results}: not a 'python -m bench' results file (no suites)")
    rendering = render(results, args.out, args.results.stem)
    for note in rendering.plots_skipped:
        print(f"[bench.render] {note}")
    print(f"[bench.render] wrote {rendering.summary} and {len(rendering.plots)} plots in {args.out / 'plots'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
