"""Start and stop the KServe front ends (HTTP on uvicorn, gRPC on grpc.aio), each on its own
thread and event loop, beside the ZeroMQ socket thread of the same server.

Both bind before their ``start()`` returns, so the caller can print the
real address (port 0 picks a free one). A non-loopback host needs TLS (a certificate and
its key) unless the caller allowed it insecure; :meth:`~engine.serving.options.ServeOptions.check`
refuses it before anything binds.
"""
from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

from engine.serving.security import is_loopback_host

MAX_JSON_BYTES = 1 << 20  # what a request may carry beside its images (JSON header, framing)


@dataclass
class Tls:
    cert: str
    key: str


def parse_host_port(text: str, flag: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) or a ValueError naming the flag."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{flag} {text!r}: expected HOST:PORT (port 0 picks a free one)")
    return host.strip("[]"), int(port)


class FrontThread:
    """A front end's thread, its event loop, and the address it bound."""

    def __init__(self, name: str):
        self.name = name
        self.address: str | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def start(self, main) -> str:
        """Run ``main(front)`` (a coroutine function) on a new thread; wait until it bound or failed."""
        def run():
            try:
                asyncio.run(main(self))
            except BaseException as e:  # reported to the starting thread
                self._error = e
                self._ready.set()

        self._thread = threading.Thread(target=run, name=self.name, daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise RuntimeError(f"{self.name}: could not start ({self._error})") from self._error
        return self.address

    def bound(self, address: str) -> None:
        self.loop = asyncio.get_running_loop()
        self.address = address
        self._ready.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


class HttpFront(FrontThread):
    def __init__(self, app, host: str, port: int, tls: Tls | None):
        super().__init__("http")
        self.app, self.host, self.port, self.tls = app, host, port, tls
        self._server = None

    def start(self) -> str:
        return super().start(self._main)

    async def _main(self, front) -> None:
        import uvicorn

        config = uvicorn.Config(self.app, host=self.host, port=self.port, lifespan="off", access_log=False,
                                log_level="warning", ssl_certfile=self.tls.cert if self.tls else None,
                                ssl_keyfile=self.tls.key if self.tls else None, timeout_graceful_shutdown=10)
        self._server = uvicorn.Server(config)
        config.load()
        self._server.lifespan = config.lifespan_class(config)
        await self._server.startup()
        if self._server.should_exit:
            raise OSError(f"cannot listen on {self.host}:{self.port}")
        host, port = self._server.servers[0].sockets[0].getsockname()[:2]
        self.bound(f"{'https' if self.tls else 'http'}://{host}:{port}")
        await self._server.main_loop()
        await self._server.shutdown()

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        self.join(15)


def add_arguments(parser) -> None:
    """The KServe front ends' flags of ``engine.serve``."""
    parser.add_argument("--http", metavar="HOST:PORT", help="also serve KServe v2 / Triton HTTP on this address")
    parser.add_argument("--grpc", metavar="HOST:PORT", help="also serve KServe v2 / Triton gRPC on this address")
    parser.add_argument("--tls-cert", help="TLS certificate (PEM) for --http and --grpc")
    parser.add_argument("--tls-key", help="TLS private key (PEM) for --http and --grpc")


def start_fronts(server, options, log) -> list:
    """Start the front ends the :class:`~engine.serving.options.ServeOptions` ask for (their
    addresses checked and parsed); print ``engine.serve: <kind> on <address>`` for each."""
    from engine.serving.http_front import KServeHttpApp

    fronts = []
    if options.http_address:
        app = KServeHttpApp(server, max_body_bytes=options.max_bytes + MAX_JSON_BYTES)
        fronts.append(HttpFront(app, *options.http_address, options.tls))
    if options.grpc_address:
        from engine.serving.grpc_front import GrpcFront

        fronts.append(GrpcFront(server, *options.grpc_address, options.tls,
                                max_message_bytes=options.max_bytes + MAX_JSON_BYTES))
    for front in fronts:
        address = front.start()
        if options.tls is None and not is_loopback_host(front.host):
            log(f"WARNING: --insecure: anyone who can reach {address} can use this server")
        print(f"engine.serve: {front.name} on {address}", flush=True)
    return fronts


def stop_fronts(fronts: list) -> None:
    for front in fronts:
        front.stop()
