"""python -m engine.serve: classify images sent over ZeroMQ, with dynamic batching.

    python -m engine.serve --onnx vgg11_224.onnx --bind tcp://127.0.0.1:5555 \\
        --max-batch 8 --max-queue-delay-us 2000 --instances 1 --workers 2

The wire protocol is described in :mod:`engine.serving.protocol`. The server binds
loopback by default; any other address needs CURVE keys (or ``--insecure``). It prints
``engine.serve: listening on ENDPOINT`` once it is ready (with the real port when bound
to ``tcp://127.0.0.1:*``), and drains the requests in flight on SIGTERM or Ctrl-C.
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

import zmq

from engine.data.arg_checks import UsageError
from engine.models.catalog import UnknownModelError
from engine.serving import launch
from engine.serving.fronts import add_arguments, start_fronts, stop_fronts
from engine.serving.model import add_backend_arguments
from engine.serving.options import ServeOptions
from engine.serving.security import enable_curve_server, is_local_endpoint
from engine.serving.server import Limits, Server


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine.serve", description=__doc__.split("\n")[0],
                                argument_default=argparse.SUPPRESS)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--onnx", type=Path,
                     help="ONNX model (its model-info JSON beside it gives preprocessing and class names)")
    src.add_argument("-m", dest="deploy_model", metavar="PATH", help="deploy-folder prefix DIR/NAME, or an .onnx file")
    src.add_argument("--model", help="zoo model (e.g. vgg11) or any timm/torchvision image classifier "
                                     "(e.g. resnet50.a1_in1k), exported to ONNX at start-up")
    p.add_argument("--model-library",
                   help="timm or torchvision (any image classifier they offer; default: timm when it has the "
                        "name, else torchvision), or mmcls for a VGG")
    p.add_argument("--weights", help="checkpoint for --model (default: seeded random weights)")
    p.add_argument("--seed", type=int, help="seed for random weights (default 0)")
    p.add_argument("--bind",
                   help="ROUTER endpoint (default tcp://127.0.0.1:5555); 'off' serves only --http/--grpc")
    p.add_argument("--max-batch", type=int, help="largest batch (default 8)")
    p.add_argument("--max-queue-delay-us", type=int,
                   help="longest a request waits for its batch to fill, in microseconds (default 0)")
    p.add_argument("--instances", type=int, help="model instances (sessions) (default 1)")
    p.add_argument("--workers", type=int, help="preprocessing threads (default 2)")
    p.add_argument("--threads", type=int,
                   help="intra-op threads per instance (default: cores / instances)")
    p.add_argument("--device", help="cpu, cuda, cuda:N or auto (default cpu)")
    add_backend_arguments(p)
    p.add_argument("--max-bytes", type=int, help="largest payload in bytes (default 64 MiB)")
    p.add_argument("--max-pixels", type=int,
                   help="largest image in pixels; bigger ones are refused before decoding (default 40M)")
    p.add_argument("--fast-decode", action="store_true", help="reduced-scale decode of big JPEGs (inexact; see docs)")
    p.add_argument("--max-inflight", type=int,
                   help="requests admitted at once; more get a 'busy' reply (default max(64, 4 x batch x instances))")
    p.add_argument("--max-inflight-bytes", type=int,
                   help="payload bytes admitted at once (default 1 GiB)")
    p.add_argument("--drain-timeout-s", type=float, help="longest SIGTERM waits for in-flight requests")
    p.add_argument("--inline-max-us", type=float,
                   help="with no queue delay, an idle server answers a request on its socket thread if its "
                        "estimated preprocess + inference time is below this, saving two thread hand-offs "
                        "(default 1000; 0: never)")
    p.add_argument("--curve-secret-key", help="server certificate (.key_secret) to require CURVE")
    p.add_argument("--curve-authorized-keys", help="folder of authorized client public keys (*.key)")
    p.add_argument("--insecure", action="store_true", help="allow a non-loopback bind without CURVE (or TLS)")
    add_arguments(p)
    launch.add_arguments(p, src)
    return p


def main(argv=None) -> int:
    options = ServeOptions.from_namespace(build_parser().parse_args(argv))
    log = lambda msg: print(f"engine.serve: {msg}", file=sys.stderr, flush=True)  # noqa: E731
    try:  # usage errors exit 2; a model that cannot be exported or loaded on the device, 1
        options.check()
        model = None if options.model_repository else launch.open_single(options)
    except (UsageError, UnknownModelError, FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"engine.serve: error: {e}", file=sys.stderr)
        return 1 if isinstance(e, RuntimeError) else 2
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    auth, fronts, server = None, [], None
    try:
        if options.curve_secret_key:
            auth = enable_curve_server(router, options.curve_secret_key, options.curve_authorized_keys)
        router.setsockopt(zmq.MAXMSGSIZE, 2 * options.max_bytes + 2**20)
        router.bind(options.bind)
        limits = Limits(options.max_bytes, options.max_pixels, options.max_inflight, options.max_inflight_bytes,
                        options.fast_decode)
        server = Server(router, workers=options.workers, limits=limits, drain_timeout_s=options.drain_timeout_s,
                        inline_max_us=options.inline_max_us, log=log)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: server.stop())
        fleet = server.attach(lambda run_instance: launch.build_fleet(options, limits, run_instance, log, model))
        endpoint = router.getsockopt_string(zmq.LAST_ENDPOINT)
        if not auth and not is_local_endpoint(options.bind):
            log(f"WARNING: --insecure: anyone who can reach {endpoint} can use this server")
        launch.announce(fleet, options, auth is not None, log)
        fronts = start_fronts(server, options, log)
        print(f"engine.serve: listening on {endpoint}", flush=True)
        server.serve()
        log(f"stopped: {server.stats()}")
    except (FileNotFoundError, ValueError, RuntimeError, zmq.ZMQError) as e:
        print(f"engine.serve: error: {e}", file=sys.stderr)
        return 2
    finally:
        stop_fronts(fronts)
        for part in filter(None, (server, model)):  # the models' threads hold sockets context.term waits for
            part.close()
        router.close()
        if auth is not None:
            auth.stop()
        context.term()
    return 0


if __name__ == "__main__":
    sys.exit(main())
