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
"""
from __future__ import annotations

import argparse
import json
import sys

from engine.serving.client import Client


def format_topk(name: str, reply: dict) -> list[str]:
    """The seed's top-k text lines for one reply."""
    return [
        f"{name}: Relay top-{i} id: {entry['class']}, prob: {entry['prob']:.8f}, class name: {entry['name']}"
        for i, entry in enumerate(reply["topk"])
    ]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.client",
                                description="Classify images with an engine.serve server.")
    p.add_argument("images", nargs="+", help="image or npz files")
    p.add_argument("--connect", default="tcp://127.0.0.1:5555", help="server endpoint (default tcp://127.0.0.1:5555)")
    p.add_argument("--topk", type=int, default=5, help="classes per image (default 5)")
    p.add_argument("--timeout-ms", type=int, default=30_000, help="wait at most this long for all replies")
    p.add_argument("--json", action="store_true", help="print one JSON reply per line instead of top-k text")
    p.add_argument("--curve-server-key", help="server public key (certificate file or 40 Z85 characters)")
    p.add_argument("--curve-client-key", help="this client's .key_secret certificate")
    args = p.parse_args(argv)
    failures = 0
    try:
        client = Client(args.connect, timeout_ms=args.timeout_ms, curve_server_key=args.curve_server_key,
                        curve_client_key_file=args.curve_client_key)
    except (ValueError, OSError) as e:
        print(f"engine.client: error: {e}", file=sys.stderr)
        return 2
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
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
