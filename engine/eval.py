"""``python -m engine.eval``: top-1/top-5 accuracy from saved results.

- ``topk RESULT.txt``: the top-k text format (see :mod:`engine.data.topk_text`).
- ``table RESULTS``: an ``engine.run --results`` Parquet table (labels: its ``label``
  column unless ``--label``/``--labels-from-folders`` is given).
- ``imagenet --result_path DIR --datalist FILE``: raw ``output_XXXXXX.npz`` files, the
  i-th datalist entry paired with ``output_{i:06d}.npz`` (never by sorted glob, which
  silently shifts every later pair when one file is missing).

True classes come from ``--label FILE`` (``<file> <index>`` lines) or
``--labels-from-folders`` (``val/<wnid>/...``). Class ids are compared, not names.

Every item that cannot be scored (no result, no label, a result of the wrong shape) is
listed by name with its reason, and the rates are taken over the items scored only.
Exit status: 0 all scored, 3 some items could not be scored, 2 usage error (unreadable
input, an output path that cannot be written; checked before scoring).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine.data import arg_checks
from engine.data.datalist import read_datalist
from engine.data.extras import require
from engine.data.labels import LabelSource
from engine.data.scoring import (
    LISTED_PER_REASON,
    Accuracy,
    accuracy_line,
    class_names_for,
    score_npz_outputs,
    score_topk_file,
    write_per_class_csv,
)
from engine.data.table_scoring import score_results_table

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_PARTIAL = 3


def _print_skipped(acc: Accuracy) -> None:
    for reason, items in acc.skipped.items():
        print(f"not scored, {reason}: {len(items)}", file=sys.stderr)
        for item in items[:LISTED_PER_REASON]:
            print(f"  {item}", file=sys.stderr)
        if len(items) > LISTED_PER_REASON:
            print(f"  ... and {len(items) - LISTED_PER_REASON} more (all listed in the JSON report)",
                  file=sys.stderr)


def _report(acc: Accuracy, summary: dict, args) -> int:
    """Print the accuracy line and the JSON summary; return the exit status."""
    _print_skipped(acc)
    if acc.min_ranks is not None and acc.min_ranks < acc.topk:
        print(f"note: some items have only {acc.min_ranks} ranked classes; "
              f"top5_rate counts a hit within those", file=sys.stderr)
    if acc.scored:
        print(accuracy_line(acc.top1_rate, acc.top5_rate))
    else:
        print("no item could be scored: no accuracy to report", file=sys.stderr)
    print(f"scored {acc.scored} of {acc.scored + acc.skipped_count} items"
          + (f", {acc.skipped_count} not scored" if acc.skipped_count else ""), file=sys.stderr)
    text = json.dumps(summary, indent=2)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")
    else:
        print(text)
    complete = acc.scored and not acc.skipped_count and not summary.get("unpaired_results")
    return EXIT_OK if complete else EXIT_PARTIAL


def _add_label_options(parser: argparse.ArgumentParser, required: bool) -> None:
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--label", metavar="FILE", help="'<file> <class index>' lines (val_label.txt)")
    group.add_argument("--labels-from-folders", action="store_true",
                       help="true class from each item's parent folder, a WordNet id (val/<wnid>/...)")
    parser.add_argument("--per-class", metavar="CSV", help="write per-class counts and rates to CSV")
    parser.add_argument("--names", metavar="FILE", help="class names, one per line (label.txt), for --per-class")
    parser.add_argument("--json", metavar="FILE", help="write the JSON summary here instead of stdout")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine.eval", description="Top-1/top-5 accuracy from saved "
                                     "results (top-k text files or output_XXXXXX.npz files).")
    sub = parser.add_subparsers(dest="mode", required=True)
    topk = sub.add_parser("topk", help="accuracy from a top-k text results file")
    topk.add_argument("result", metavar="RESULT.txt")
    _add_label_options(topk, required=True)
    table = sub.add_parser("table", help="accuracy from an engine.run --results Parquet table")
    table.add_argument("result", metavar="RESULTS.parquet|DIR")
    _add_label_options(table, required=False)
    imagenet = sub.add_parser("imagenet", help="accuracy from output_XXXXXX.npz files in datalist order")
    imagenet.add_argument("--result_path", "--result-path", dest="result_path", required=True, metavar="DIR")
    imagenet.add_argument("--datalist", required=True, metavar="FILE")
    imagenet.add_argument("--num-classes", type=int, metavar="C",
                          help="expected class count (default: the most common among the results)")
    _add_label_options(imagenet, required=True)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        arg_checks.check_output_file("--json", args.json)
        arg_checks.check_output_file("--per-class", args.per_class)
        labels = LabelSource(args.label, from_folders=args.labels_from_folders)
        if args.mode in ("topk", "table"):
            if args.mode == "table":
                require("results", "engine.eval table")
                acc, seen = score_results_table(args.result, labels if labels.active else None)
            else:
                acc, seen = score_topk_file(args.result, labels)
            summary = {"mode": args.mode, "result": str(args.result), **acc.summary()}
            num_classes = None
        else:
            items = read_datalist(args.datalist)
            acc, unpaired, num_classes = score_npz_outputs(args.result_path, items, labels, args.num_classes)
            seen = {}
            summary = {"mode": "imagenet", "result_path": str(args.result_path), "datalist": str(args.datalist),
                       "num_classes": num_classes, **acc.summary(), "unpaired_results": unpaired}
            if unpaired:
                print(f"{len(unpaired)} result files pair with no datalist entry (first: {unpaired[0]}): "
                      f"is this the datalist the results were made from?", file=sys.stderr)
        if args.per_class:
            Path(args.per_class).parent.mkdir(parents=True, exist_ok=True)
            write_per_class_csv(args.per_class, acc, class_names_for(args.names, seen, num_classes))
    except (OSError, ValueError) as e:
        print(f"engine.eval: {e}", file=sys.stderr)
        return EXIT_USAGE
    return _report(acc, summary, args)


if __name__ == "__main__":
    sys.exit(main())
