"""``python -m engine.run``: classify a datalist or an image folder through the pipeline.

Exit status: 0 when every item succeeded, 3 when some items failed (each is listed in
the errors file), 2 on a usage error (a bad flag value, a missing input, an output path
that cannot be written, an unknown model: all checked before any work), 1 when the run
could not start or had to stop, 130/143 when interrupted by SIGINT/SIGTERM (what was
done is flushed first). One run at a time writes into a --path_output folder.
With --ray the same job runs on a Ray cluster and writes the same files (docs/cluster.md).
"""
from __future__ import annotations

import argparse
import signal
import sys
import types

from engine.api import job as api_job
from engine.api.options import RunOptions
from engine.cluster.run_options import add_cluster_options
from engine.data.arg_checks import UsageError
from engine.pipeline.run_options import add_backend_options
from engine.pipeline.summary import format_summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine.run", description=__doc__, argument_default=argparse.SUPPRESS,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--datalist", help="text file, one .npz or image path per line")
    src.add_argument("--images", help="folder searched recursively for images")
    src.add_argument("--shards", dest="shards", metavar="SPEC",
                     help="WebDataset tar shards: 'data-{000000..000099}.tar', a glob, or a file of shard paths")
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--onnx", help="ONNX model; its model-info JSON beside it gives the preprocessing")
    model.add_argument("--model", help="zoo model name (exported on the fly into a cache folder)")
    model.add_argument("-m", dest="deploy_model", metavar="PATH",
                       help="the seed's spelling: a deploy-folder prefix DIR/NAME (DIR/NAME.onnx and its model-info "
                            "JSON) or an .onnx file")
    p.add_argument("--model-library", dest="library", metavar="MODEL_LIBRARY",
                   help="timm (default for VGG), torchvision or mmcls; models with one source ignore it")
    p.add_argument("--weights", help="checkpoint for --model (.pth/.pt/.safetensors); random weights without it")
    p.add_argument("--seed", type=int, help="seed of the random weights when no --weights")
    p.add_argument("--preprocess", help="JSON/YAML data config (resize, crop, mean, std, ...) overriding the model's")
    p.add_argument("--vdsp_params", "--vdsp-params", dest="vdsp_params", metavar="FILE",
                   help="the vendor's preprocessing file (vamp, sdk1.0 or current layout) overriding the model's "
                        "data config (docs/formats.md)")
    add_backend_options(p)
    p.add_argument("-i", "--instances", type=int,
                   help="model instances per device process (default 1; 3 on a GPU, each on its own CUDA "
                        "stream, so their host-side work overlaps each other's kernels)")
    p.add_argument("-p", "--processes", type=int, help="device worker processes")
    p.add_argument("-b", "--batch", dest="batch_size", metavar="BATCH", type=int, help="batch size")
    p.add_argument("--workers", type=int, help="preprocess processes")
    p.add_argument("--threads", type=int, help="threads per instance (default: cores / instances)")
    p.add_argument("--auto", action="store_true",
                   help="measure instances x threads x batch first (engine.tune) and run with the fastest")
    p.add_argument("--auto-budget", type=float, help="seconds the --auto sweep aims to take")
    p.add_argument("--topk", type=int)
    p.add_argument("--iterations", type=int, help="loop over the datalist N times (benchmark)")
    p.add_argument("--warmup", type=int, help="items excluded from timing")
    p.add_argument("--slots", type=int, help="shared-memory slots (default: from workers/batch)")
    p.add_argument("--batch-delay-ms", type=float, help="longest wait for a partial batch")
    p.add_argument("--transport", choices=("ipc", "tcp"), help="stage endpoints")
    p.add_argument("--tcp-host")
    p.add_argument("--tcp-port", type=int, help="broker port for --transport tcp (0: any free)")
    p.add_argument("--max-pixels", type=int,
                   help="decompression-bomb limit in pixels per image (0 turns it off)")
    p.add_argument("--fast-decode", dest="fast_decode", action="store_true",
                   help="decode a JPEG far larger than the model's resize target (shorter side >= 4x it) at a "
                        "reduced DCT scale, then resize: faster on big photos, but not the exact pixels "
                        "(off by default; docs/pipeline.md has the measured effect)")
    p.add_argument("--label", help="labels: '<file> <class index>' lines")
    p.add_argument("--labels-from-folders", action="store_true", help="labels from val/<wnid>/ folders")
    p.add_argument("--path_output", "--path-output", dest="path_output", help="write output_XXXXXX.npz here")
    p.add_argument("--results", dest="results", metavar="DIR_OR_FILE.parquet",
                   help="one row per item in a Parquet table (a .parquet file, or a folder of part files)")
    p.add_argument("--results-logits", dest="results_logits", choices=("float16", "float32"),
                   help="--results: add each item's logits")
    p.add_argument("--output-dtype", choices=("float32", "float16"))
    p.add_argument("--save-topk", help="write top-k results in the sample script's text format")
    p.add_argument("--report", help="write every figure and the configuration as JSON")
    p.add_argument("--errors", help="failed items as JSON lines (default: beside --report)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_cluster_options(p)
    return p


def main(argv=None) -> int:
    options = RunOptions.from_namespace(build_parser().parse_args(argv))
    try:
        job = api_job.prepare(options)
    except UsageError as e:
        print(f"engine: error: {e}", file=sys.stderr)
        return api_job.EXIT_USAGE
    try:
        outcome = api_job.execute(job, api_job.configure(job))
    except api_job.RunFailed as e:
        print(f"engine: error: {e}", file=sys.stderr)
        return api_job.EXIT_FATAL
    finally:
        job.release()
    report = outcome.report
    print(format_summary(report))
    if report["errors"]:
        where = f" (listed in {outcome.errors_path})" if outcome.errors_path else ""
        print(f"failed items: {len(report['errors'])}{where}")
        for rec in report["errors"][:10]:
            print(f"  {rec['item']}: {rec['error']}")
    if outcome.exit_status == api_job.EXIT_FATAL:
        print(f"engine: error: the run stopped: {report['stopped']}", file=sys.stderr)
    return outcome.exit_status


class _CallableModule(types.ModuleType):
    """``engine.run`` is this command and, called, the API's :func:`engine.api.job.run`:
    importing the submodule ``engine.run`` rebinds the package attribute to it, so the
    module itself answers the call."""

    def __call__(self, **keywords) -> dict:
        return api_job.run(**keywords)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main())
