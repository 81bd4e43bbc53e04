"""``python -m engine.image2npz``: an image folder to seed-style ``.npz`` files and a datalist.

Every ``.jpg .jpeg .png .bmp .webp`` file (any case) under ``--dataset_path`` is decoded
to RGB exactly as ``engine.data.decode.decode_image`` does it and stored uncompressed
(``np.savez``) under the key ``input_0`` as uint8 CHW at its original size, in
``TARGET/<parent folder name>/<stem>.npz``. The datalist (``--text_path``) lists the
written files' absolute paths, sorted.

Unreadable images, and images whose output path another image would also take (``a.jpg``
next to ``a.png``, or two folders with the same name), are skipped and listed with the
reason; the exit status is then 1. Every output is written to a temporary file and
renamed into place, so an interrupted or repeated run never leaves a partial ``.npz``.
Outputs are always rewritten rather than trusted by date: a target folder may hold files
from another dataset with the same names.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from engine.data.decode import DEFAULT_MAX_PIXELS
from engine.data.npz_convert import convert_folder


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m engine.image2npz",
        description="Convert an image folder to uint8 CHW .npz files (key input_0) and a "
                    "sorted datalist of their absolute paths.")
    parser.add_argument("--dataset_path", "--dataset-path", required=True, type=Path,
                        help="folder searched recursively for .jpg .jpeg .png .bmp .webp")
    parser.add_argument("--target_path", "--target-path", required=True, type=Path,
                        help="output folder: TARGET/<parent folder>/<stem>.npz")
    parser.add_argument("--text_path", "--text-path", type=Path, default=Path("npz_datalist.txt"),
                        help="datalist to write (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="parallel processes (default: the CPU count, %(default)s)")
    parser.add_argument("--max_pixels", "--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help="refuse larger images, a decompression-bomb guard; 0 disables "
                             "(default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    if args.max_pixels < 0:
        parser.error(f"--max_pixels must be 0 (no limit) or positive, got {args.max_pixels}")
    if not args.dataset_path.is_dir():
        parser.error(f"--dataset_path {args.dataset_path}: not a directory")
    try:
        summary = convert_folder(args.dataset_path, args.target_path, args.text_path,
                                 workers=args.workers, quiet=args.quiet,
                                 max_pixels=args.max_pixels or None)
    except ValueError as e:
        parser.error(str(e))
    print(summary.report(), file=sys.stdout if summary.ok else sys.stderr)
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
