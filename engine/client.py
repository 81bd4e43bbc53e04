"""A client for ``engine.serve`` (contract): the ``Client`` class and a small CLI.

    from engine.serving.client import Client
    with Client("tcp://127.0.0.1:5555") as client:
        print(client.classify("cat.jpg", topk=5)["topk"][0])
        ids = [client.submit(frame) for frame in frames]     # pipelined
        replies = client.results(len(ids), timeout=10)       # {id: reply}

    python -m engine.client --connect tcp://127.0.0.1:5555 img1.jpg img2.png

Items are a path (JPEG/PNG/npz sent as they are, other images decoded here and sent
raw), encoded bytes (JPEG, PNG or npz, recognised by their signature), a uint8 HWC RGB
array, or a PIL image.

The CLI pings the server before sending anything, so a wrong address or a server that
is not running is said in one line within seconds rather than after the reply timeout.
Exit status: 0 every image classified, 3 some failed (each named), 2 usage error (a bad
--connect endpoint, a missing image file), 1 nothing answered at the address.
"""
from __future__ import annotations

import argparse
import json
import sys

import zmq

from engine.data import arg_checks
from engine.data.arg_checks import UsageError
from engine.serving.client import Client

EXIT_OK, EXIT_NO_SERVER, EXIT_USAGE, EXIT_SOME_FAILED = 0, 1, 2, 3
PING_TIMEOUT_MS = 5000


def format_topk(name: str, reply: dict) -> list[str]:
    """The seed's top-k text lines for one reply."""
    return [
        f"{name}: Relay top-{i} id: {entry['class']}, prob: {entry['prob']:.8f}, class name: {entry['name']}"
        for i, entry in enumerate(reply["topk"])
    ]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine.client",
                                description="Classify images with an engine.serve server.")
    p.add_argument("images", nargs="+", help="image or npz files")
    p.add_argument("--connect", default="tcp://127.0.0.1:5555", help="server endpoint (default tcp://127.0.0.1:5555)")
    p.add_argument("--topk", type=int, default=5, help="classes per image (default 5)")
    p.add_argument("--timeout-ms", type=int, default=30_000, help="wait at most this long for all replies")
    p.add_argument("--json", action="store_true", help="print one JSON reply per line instead of top-k text")
    p.add_argument("--curve-server-key", help="server public key (certificate file or 40 Z85 characters)")
    p.add_argument("--curve-client-key", help="this client's .key_secret certificate")
    return p


def connect(args) -> Client:
    """A client whose server answered a ping; UsageError for what is wrong before that."""
    if not args.connect.startswith(("tcp://", "ipc://")):
        raise UsageError(f"--connect {args.connect}: not a ZeroMQ endpoint; write tcp://HOST:PORT or ipc://PATH")
    arg_checks.at_least("--topk", args.topk, 1)
    arg_checks.at_least("--timeout-ms", args.timeout_ms, 1)
    for path in args.images:
        arg_checks.input_file("image", path)
    try:
        client = Client(args.connect, timeout_ms=min(args.timeout_ms, PING_TIMEOUT_MS),
                        curve_server_key=args.curve_server_key, curve_client_key_file=args.curve_client_key)
    except (ValueError, OSError, zmq.ZMQError) as e:
        raise UsageError(f"--connect {args.connect}: {e}") from None
    try:
        client.ping()
    except TimeoutError:
        client.close()
        raise TimeoutError(f"nothing answered at {args.connect} within {client.timeout_ms / 1000:g} s: "
                           "is engine.serve running there?") from None
    client.timeout_ms = args.timeout_ms
    return client


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        client = connect(args)
    except UsageError as e:
        print(f"engine.client: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except TimeoutError as e:
        print(f"engine.client: error: {e}", file=sys.stderr)
        return EXIT_NO_SERVER
    failures = 0
    with client:
        ids = {}
        for path in args.images:
            try:
                ids[client.submit(path, args.topk)] = path
            except (OSError, ValueError) as e:
                print(f"engine.client: {path}: {e}", file=sys.stderr)
                failures += 1
        try:
            replies = client.results(len(ids), timeout=args.timeout_ms / 1000)
        except TimeoutError as e:
            print(f"engine.client: error: {e}", file=sys.stderr)
            replies = e.partial
            failures += len(ids) - len(replies)
        for request_id, path in ids.items():
            reply = replies.get(request_id)
            if reply is None:
                continue
            if args.json:
                print(json.dumps({"image": path, **reply}))
            elif reply.get("ok"):
                print("\n".join(format_topk(path, reply)))
            if not reply.get("ok"):
                print(f"engine.client: {path}: {reply.get('error')}", file=sys.stderr)
                failures += 1
    return EXIT_SOME_FAILED if failures else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
