"""Joining the Ray cluster of ``--ray auto|ADDRESS``, refused within seconds when nobody
answers there (Ray itself would retry for a minute or more)."""
from __future__ import annotations

import logging
import socket

from engine.data.arg_checks import UsageError
from engine.data.extras import require

REACH_TIMEOUT_S = 3.0


def head_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` of the head's GCS, as ``ray start --head`` prints it."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise UsageError(f"--ray {address}: give auto or the head's HOST:PORT (e.g. 10.0.0.1:6379)")
    return host, int(port)


def check_reachable(address: str) -> None:
    """A TCP connection to the head, or a :class:`UsageError` saying why not."""
    host, port = head_address(address)
    try:
        socket.create_connection((host, port), timeout=REACH_TIMEOUT_S).close()
    except OSError as e:
        raise UsageError(f"--ray {address}: cannot reach the cluster's head ({e})") from e


def connect(address: str) -> dict:
    """Join the cluster (``auto``: the one ``ray start`` left on this host); its resources."""
    require("ray", "--ray")
    import ray

    if address != "auto":
        check_reachable(address)
    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise UsageError(f"--ray {address}: cannot join the cluster ({str(e).splitlines()[0]})") from e
    return ray.cluster_resources()
