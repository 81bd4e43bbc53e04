"""``python -m engine.image2npz``: an image folder to seed-style ``.npz`` files and a datalist.

Every ``.jpg .jpeg .png .bmp .webp`` file (any case) under ``--dataset_path`` is decoded
to RGB exactly as ``engine.data.decode.decode_image`` does it and stored uncompressed
(``np.savez``) under the key ``input_0`` as uint8 CHW at its original size, in
``TARGET/<parent folder name>/<stem>.npz``. The datalist (``--text_path``) lists the
written files' absolute paths, sorted.

Both output paths are checked before any image is read (a datalist that cannot be
written would otherwise lose the whole conversion at the end). Unreadable images, and
images whose output path another image would also take (``a.jpg`` next to ``a.png``, or
two folders with the same name), are skipped and listed with the reason.

Exit status: 0 all converted, 3 some images skipped (each listed, the rest converted),
2 usage error (bad flag values, no images, an output path that cannot be written).
Every output is written to a temporary file and
renamed into place, so an interrupted or repeated run never leaves a partial ``.npz``.
Outputs are always rewritten rather than trusted by date: a target folder may hold files
from another dataset with the same names.

``--shards OUT_PREFIX --shard-size N`` writes the folder as WebDataset tar shards instead
(engine/data/shard_writer.py), in the order an ``engine.run --images`` run of the folder
takes, and lists the shards in ``--text_path`` (what ``engine.run --shards`` takes).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from engine.data import arg_checks
from engine.data.arg_checks import UsageError
from engine.data.decode import DEFAULT_MAX_PIXELS
from engine.data.npz_convert import convert_folder
from engine.data.shard_writer import write_shards

EXIT_OK, EXIT_USAGE, EXIT_SKIPPED = 0, 2, 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m engine.image2npz",
        description="Convert an image folder to uint8 CHW .npz files (key input_0) and a "
                    "sorted datalist of their absolute paths.")
    parser.add_argument("--dataset_path", "--dataset-path", required=True, type=Path,
                        help="folder searched recursively for .jpg .jpeg .png .bmp .webp")
    out = parser.add_mutually_exclusive_group(required=True)
    out.add_argument("--target_path", "--target-path", type=Path,
                     help="output folder: TARGET/<parent folder>/<stem>.npz")
    out.add_argument("--shards", dest="shards", type=Path, metavar="OUT_PREFIX",
                     help="write WebDataset tar shards OUT_PREFIX-000000.tar, ... instead (the images' own bytes, "
                          "cls labels from val/<wnid>/ folders); --text_path then lists the shards")
    parser.add_argument("--shard-size", dest="shard_size", type=int, default=1000,
                        help="images per shard with --shards (default: %(default)s)")
    parser.add_argument("--text_path", "--text-path", type=Path, default=Path("npz_datalist.txt"),
                        help="datalist (or with --shards the shard list) to write (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="parallel processes (default: the CPU count, %(default)s)")
    parser.add_argument("--max_pixels", "--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help="refuse larger images, a decompression-bomb guard; 0 disables "
                             "(default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def check_args(args) -> None:
    arg_checks.at_least("--workers", args.workers, 1)
    arg_checks.at_least("--max_pixels", args.max_pixels, 0)
    if not args.dataset_path.is_dir():
        raise UsageError(f"--dataset_path {args.dataset_path}: not a directory")
    arg_checks.at_least("--shard-size", args.shard_size, 1)
    if args.shards is not None:
        arg_checks.check_output_file("--shards", args.shards.with_name(f"{args.shards.name}-000000.tar"))
    else:
        arg_checks.check_output_dir("--target_path", args.target_path)
    arg_checks.check_output_file("--text_path", args.text_path)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_args(args)
        if args.shards is not None:
            summary = write_shards(args.dataset_path, args.shards, args.shard_size, args.text_path,
                                   workers=args.workers, quiet=args.quiet, max_pixels=args.max_pixels or None)
        else:
            summary = convert_folder(args.dataset_path, args.target_path, args.text_path,
                                     workers=args.workers, quiet=args.quiet,
                                     max_pixels=args.max_pixels or None)
    except ValueError as e:  # UsageError, or no images under --dataset_path
        print(f"engine.image2npz: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    print(summary.report(), file=sys.stdout if summary.ok else sys.stderr)
    return EXIT_OK if summary.ok else EXIT_SKIPPED


if __name__ == "__main__":
    sys.exit(main())
