"""``python -m engine.valprep VAL_DIR (--solution CSV | --ground-truth TXT --id-map FILE)``.

Lays a flat ILSVRC2012 ``val/`` folder out as ``val/<wnid>/`` and writes ``val_label.txt`` and
``label.txt``; the ground-truth formats and the checks made before anything moves are
:mod:`engine.data.val_layout`'s.

Exit status: 0 done, 2 refused (every problem listed, nothing moved), 1 failed midway.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.data.val_layout import (
    LISTED,
    carry_out,
    label_file_texts,
    make_plan,
    overwrite_problems,
    permission_problems,
    read_devkit_ground_truth,
    read_id_map,
    read_solution_csv,
    write_label_files,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_REFUSED = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine.valprep",
                                     description="Arrange a flat ILSVRC2012 val/ folder into val/<wnid>/ "
                                                 "folders and write its label files.",
                                     epilog="Exit status: 0 done, 2 refused (nothing moved), 1 failed midway.")
    parser.add_argument("val_dir", metavar="VAL_DIR", help="folder holding the validation images")
    truth = parser.add_mutually_exclusive_group(required=True)
    truth.add_argument("--solution", metavar="CSV", help="Kaggle's LOC_val_solution.csv")
    truth.add_argument("--ground-truth", metavar="TXT", help="the devkit's ILSVRC2012_validation_ground_truth.txt")
    parser.add_argument("--id-map", metavar="FILE",
                        help="'<ILSVRC2012_ID> <wnid>' lines; required with --ground-truth")
    parser.add_argument("--link", action="store_true",
                        help="symlink the images into --target instead of moving them")
    parser.add_argument("--target", metavar="DIR",
                        help="build the class folders here (default: inside VAL_DIR, moving the images)")
    parser.add_argument("--out-dir", metavar="DIR",
                        help="where val_label.txt and label.txt go (default: the folder above the class folders)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace val_label.txt / label.txt in --out-dir even when their content differs")
    parser.add_argument("--dry-run", action="store_true", help="check and report, change nothing")
    return parser


def _print_list(title: str, lines: list[str]) -> None:
    print(title, file=sys.stderr)
    for line in lines[:LISTED]:
        print(f"  {line}", file=sys.stderr)
    if len(lines) > LISTED:
        print(f"  ... and {len(lines) - LISTED} more", file=sys.stderr)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.ground_truth and not args.id_map:
        parser.error("--ground-truth needs --id-map (its ids are in meta.mat order, not the wnid sort order)")
    if args.solution and args.id_map:
        parser.error("--id-map goes with --ground-truth, not --solution")
    if args.link and not args.target:
        parser.error("--link needs --target: the links go into a folder of their own")
    val_dir = Path(args.val_dir).resolve()
    dest_root = Path(args.target).resolve() if args.target else val_dir
    if args.link and dest_root == val_dir:
        parser.error("--target must differ from VAL_DIR with --link")
    if not val_dir.is_dir():
        print(f"engine.valprep: {val_dir}: not a directory", file=sys.stderr)
        return EXIT_REFUSED
    try:
        if args.solution:
            truth = read_solution_csv(args.solution)
        else:
            truth = read_devkit_ground_truth(args.ground_truth, read_id_map(args.id_map))
    except (OSError, ValueError) as e:
        print(f"engine.valprep: {e}", file=sys.stderr)
        return EXIT_REFUSED
    plan = make_plan(val_dir, truth, dest_root)
    out_dir = Path(args.out_dir).resolve() if args.out_dir else dest_root.parent
    texts = label_file_texts(plan, out_dir)
    plan.problems += permission_problems(plan, dest_root, args.link)
    if not args.overwrite:
        plan.problems += overwrite_problems(texts)
    if plan.problems:
        _print_list(f"engine.valprep: refusing, nothing was moved; {len(plan.problems)} problems:", plan.problems)
        return EXIT_REFUSED
    verb = "link" if args.link else "move"
    classes = len({dest.parent.name for _, dest in plan.moves})
    print(f"{len(truth)} images in the ground truth: {len(plan.in_place)} already in place, "
          f"{len(plan.moves)} to {verb} into {classes} class folders under {dest_root}")
    if plan.unlisted:
        _print_list(f"{len(plan.unlisted)} images in {val_dir} have no ground-truth line; left where they are:",
                    [str(p) for p in plan.unlisted])
    if args.dry_run:
        for src, dest in plan.moves[:10]:
            print(f"  would {verb} {src} -> {dest}")
        if len(plan.moves) > 10:
            print(f"  ... and {len(plan.moves) - 10} more")
        print(f"dry run: would write {' and '.join(map(str, texts))}; nothing changed")
        return EXIT_OK
    try:
        carry_out(plan, args.link)
    except OSError as e:
        print(f"engine.valprep: failed midway: {e}. Files already placed are recognised: "
              f"fix the cause and run again to finish.", file=sys.stderr)
        return EXIT_FAILED
    write_label_files(texts)
    print(f"wrote {' and '.join(map(str, texts))} ({len(plan.labels)} labels)")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
