"""KServe v2 over gRPC: Triton's ``GRPCInferenceService`` on grpc.aio, in a thread of the server process.

The service definition is the one ``tritonclient`` ships as generated stubs, so any Triton
gRPC client speaks to it. Implemented: ServerLive, ServerReady, ModelReady, ServerMetadata,
ModelMetadata, ModelConfig and ModelInfer (``raw_input_contents`` or typed contents in,
``raw_output_contents`` out); the rest answer UNIMPLEMENTED. Bad input answers
INVALID_ARGUMENT naming the problem, a full server UNAVAILABLE ("busy"), an unknown model
NOT_FOUND.
"""
from __future__ import annotations

import asyncio

import grpc
import numpy as np
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc

from engine.serving import kserve
from engine.serving.fronts import FrontThread, Tls
from engine.serving.kserve import KServeError, OutputRequest
from engine.serving.kserve_infer import InferenceFailed, Unavailable, infer


class _Service(service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, server, config: dict):
        self.server = server
        self.config = json_format.ParseDict(config, model_config_pb2.ModelConfig())

    async def _check_model(self, request, context) -> None:
        model = self.server.model.name
        name = getattr(request, "name", None) or getattr(request, "model_name", "")
        version = getattr(request, "version", "") or getattr(request, "model_version", "")
        if name != model or version not in ("", kserve.VERSION):
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"unknown model {name!r}; this server serves {model!r} version {kserve.VERSION}")

    async def ServerLive(self, request, context):
        return service_pb2.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        return service_pb2.ServerReadyResponse(ready=not self.server.stopping())

    async def ModelReady(self, request, context):
        ready = request.name == self.server.model.name and request.version in ("", kserve.VERSION)
        return service_pb2.ModelReadyResponse(ready=ready and not self.server.stopping())

    async def ServerMetadata(self, request, context):
        return service_pb2.ServerMetadataResponse(**kserve.server_metadata())

    async def ModelMetadata(self, request, context):
        await self._check_model(request, context)
        meta = kserve.model_metadata(self.server.model)
        tensor = service_pb2.ModelMetadataResponse.TensorMetadata
        return service_pb2.ModelMetadataResponse(
            name=meta["name"], versions=meta["versions"], platform=meta["platform"],
            inputs=[tensor(**t) for t in meta["inputs"]], outputs=[tensor(**t) for t in meta["outputs"]])

    async def ModelConfig(self, request, context):
        await self._check_model(request, context)
        return service_pb2.ModelConfigResponse(config=self.config)

    async def ModelInfer(self, request, context):
        await self._check_model(request, context)
        try:
            inputs = _inputs(request)
            outputs = [(o.name, OutputRequest(_int_param(o.parameters, "classification"))) for o in request.outputs]
            (datatype, shape, value), _ = await infer(self.server, request.id or None, inputs, outputs)
        except KServeError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except Unavailable as e:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(e))
        except InferenceFailed as e:
            await context.abort(grpc.StatusCode.INTERNAL, str(e))
        raw = kserve.join_bytes_elements(value) if datatype == "BYTES" else np.ascontiguousarray(value).tobytes()
        output = service_pb2.ModelInferResponse.InferOutputTensor(name=kserve.OUTPUT_NAME, datatype=datatype,
                                                                   shape=shape)
        return service_pb2.ModelInferResponse(model_name=self.server.model.name, model_version=kserve.VERSION,
                                              id=request.id, outputs=[output], raw_output_contents=[raw])


def _int_param(parameters, key: str) -> int:
    if key not in parameters:
        return 0
    param = parameters[key]
    if param.WhichOneof("parameter_choice") not in ("int64_param", "uint64_param"):
        raise KServeError(f"output parameter {key!r} must be an integer")
    return param.int64_param or param.uint64_param


def _inputs(request) -> list[tuple]:
    """(name, datatype, shape, data) per input, from raw contents (in input order) or typed contents."""
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise KServeError(f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs")
    inputs = []
    for i, tensor in enumerate(request.inputs):
        if raw:
            data = raw[i]
        elif tensor.datatype == "BYTES":
            data = list(tensor.contents.bytes_contents)
        else:
            data = list(tensor.contents.uint_contents)
        inputs.append((tensor.name, tensor.datatype, list(tensor.shape), data))
    return inputs


class GrpcFront(FrontThread):
    def __init__(self, server, host: str, port: int, tls: Tls | None, *, max_message_bytes: int, max_batch: int,
                 max_queue_delay_us: int):
        super().__init__("grpc")
        self.host, self.port, self.tls = host, port, tls
        self.service = _Service(server, kserve.model_config(server.model, max_batch, max_queue_delay_us))
        self.max_message_bytes = max_message_bytes
        self._stopped: asyncio.Event | None = None

    def start(self) -> str:
        return super().start(self._main)

    async def _main(self, front) -> None:
        self._stopped = asyncio.Event()
        grpc_server = grpc.aio.server(options=[("grpc.max_receive_message_length", self.max_message_bytes),
                                               ("grpc.max_send_message_length", self.max_message_bytes)])
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(self.service, grpc_server)
        address = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        if self.tls is None:
            port = grpc_server.add_insecure_port(address)
        else:
            with open(self.tls.key, "rb") as key, open(self.tls.cert, "rb") as cert:
                credentials = grpc.ssl_server_credentials([(key.read(), cert.read())])
            port = grpc_server.add_secure_port(address, credentials)
        await grpc_server.start()
        self.bound(f"{self.host}:{port}")
        await self._stopped.wait()
        await grpc_server.stop(grace=10)

    def stop(self) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._stopped.set)
        self.join(15)
