"""``engine.serve``'s options: one record, parsed from the command's flags (the parser's dests
are its field names), checked once by :meth:`ServeOptions.check` in the flags' words (a
:class:`~engine.data.arg_checks.UsageError`: one line, exit status 2), then read by the
serving machinery, which never sees an argparse namespace."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from engine.data import arg_checks
from engine.data.arg_checks import UsageError
from engine.data.extras import require
from engine.models.resolve import deploy_model_file
from engine.serving.fleet import MODES
from engine.serving.fronts import Tls, parse_host_port
from engine.serving.model import BACKENDS
from engine.serving.security import is_local_endpoint, is_loopback_host

ZEROMQ_OFF = "inproc://engine.serve.zeromq-off"  # --bind off: the batcher's ROUTER, reached by no other process


@dataclass(kw_only=True)
class ServeOptions:
    # what is served
    onnx: Path | None = None
    deploy_model: str | None = None  # -m
    model: str | None = None
    model_library: str | None = None
    weights: str | None = None
    seed: int = 0
    model_repository: Path | None = None
    model_control_mode: str | None = None  # none, explicit or poll (None: none)
    load_model: list[str] | None = None
    repository_poll_secs: float = 15.0
    # how
    bind: str = "tcp://127.0.0.1:5555"
    max_batch: int = 8
    max_queue_delay_us: int = 0
    instances: int = 1
    workers: int = 2
    threads: int | None = None  # None: cores / instances
    device: str = "cpu"
    backend: str = "ort"
    precision: str | None = None
    max_bytes: int = 64 * 2**20
    max_pixels: int = 40_000_000
    fast_decode: bool = False
    max_inflight: int | None = None  # None: max(64, 4 x batch x instances)
    max_inflight_bytes: int = 1 << 30
    drain_timeout_s: float = 30.0
    inline_max_us: float = 1000.0
    curve_secret_key: str | None = None
    curve_authorized_keys: str | None = None
    insecure: bool = False
    http: str | None = None  # HOST:PORT
    grpc: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    # resolved by check()
    tls: Tls | None = field(default=None, init=False)
    http_address: tuple[str, int] | None = field(default=None, init=False)
    grpc_address: tuple[str, int] | None = field(default=None, init=False)

    @classmethod
    def from_namespace(cls, namespace) -> ServeOptions:
        given = vars(namespace)
        return cls(**{f.name: given[f.name] for f in fields(cls) if f.init and f.name in given})

    def check(self) -> None:
        """Refuse what cannot work, before anything binds or loads; fill in the defaults
        that depend on other options."""
        for flag, name, minimum in (("--max-batch", "max_batch", 1), ("--instances", "instances", 1),
                                    ("--workers", "workers", 1), ("--threads", "threads", 1),
                                    ("--max-bytes", "max_bytes", 1), ("--max-pixels", "max_pixels", 1),
                                    ("--max-inflight", "max_inflight", 1),
                                    ("--max-inflight-bytes", "max_inflight_bytes", 1),
                                    ("--max-queue-delay-us", "max_queue_delay_us", 0),
                                    ("--inline-max-us", "inline_max_us", 0),
                                    ("--drain-timeout-s", "drain_timeout_s", 0)):
            arg_checks.at_least(flag, getattr(self, name), minimum)
        self._check_model()
        self._check_security()
        self._check_fronts()
        self.threads = self.threads or max(1, (os.cpu_count() or 1) // self.instances)
        self.max_inflight = self.max_inflight or max(64, 4 * self.max_batch * self.instances)

    def _check_model(self) -> None:
        if self.deploy_model is not None:
            self.onnx = Path(deploy_model_file(self.deploy_model))
        if self.onnx is not None and Path(self.onnx).is_dir():
            raise UsageError(f"--onnx {self.onnx}: is a directory, not a file")
        if self.backend not in BACKENDS:
            raise UsageError(f"--backend {self.backend!r}: use one of {', '.join(BACKENDS)}")
        if self.backend == "openvino":
            require("openvino", "--backend openvino")
        if self.precision is not None and self.backend != "openvino":
            raise UsageError(f"--precision {self.precision}: onnxruntime runs an ONNX model at the precision "
                             "engine.build gave it; use --backend openvino (fp32, bf16)")
        self._check_repository()

    def _check_repository(self) -> None:
        if self.model_repository is None:
            if self.model_control_mode not in (None, "none") or self.load_model:
                raise UsageError("--model-control-mode and --load-model need --model-repository")
            self.model_control_mode = "none"
            return
        if not Path(self.model_repository).is_dir():
            raise UsageError(f"--model-repository {self.model_repository}: no such directory")
        self.model_control_mode = self.model_control_mode or "none"
        if self.model_control_mode not in MODES:
            raise UsageError(f"--model-control-mode {self.model_control_mode!r}: use one of {', '.join(MODES)}")
        if self.load_model and self.model_control_mode != "explicit":
            raise UsageError("--load-model needs --model-control-mode explicit")
        if self.repository_poll_secs <= 0:
            raise UsageError(f"--repository-poll-secs {self.repository_poll_secs:g}: must be > 0")

    def _check_security(self) -> None:
        if bool(self.curve_secret_key) != bool(self.curve_authorized_keys):
            raise UsageError("--curve-secret-key and --curve-authorized-keys go together")
        if self.bind == "off":
            if not (self.http or self.grpc):
                raise UsageError("--bind off: give --http or --grpc, or nothing would serve")
            self.bind = ZEROMQ_OFF
        if not is_local_endpoint(self.bind) and not self.curve_secret_key and not self.insecure:
            raise UsageError(f"--bind {self.bind} is not a loopback address: give --curve-secret-key and "
                             "--curve-authorized-keys, or --insecure to serve it unauthenticated")

    def _check_fronts(self) -> None:
        """The KServe addresses parsed; a non-loopback one needs TLS unless ``--insecure``."""
        if bool(self.tls_cert) != bool(self.tls_key):
            raise UsageError("--tls-cert and --tls-key go together")
        self.tls = Tls(self.tls_cert, self.tls_key) if self.tls_cert else None
        for flag in ("http", "grpc"):
            text = getattr(self, flag)
            if text is None:
                continue
            require("serve", f"--{flag}")
            try:
                host, port = parse_host_port(text, f"--{flag}")
            except ValueError as e:
                raise UsageError(str(e)) from None
            if not is_loopback_host(host) and self.tls is None and not self.insecure:
                raise UsageError(f"--{flag} {text} is not a loopback address: give --tls-cert and --tls-key, or "
                                 "--insecure to serve it unencrypted and unauthenticated")
            setattr(self, f"{flag}_address", (host, port))
