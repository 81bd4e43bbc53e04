"""KServe v2 over gRPC: Triton's ``GRPCInferenceService`` on grpc.aio, in a thread of the server process.

The service definition is the one ``tritonclient`` ships as generated stubs, so any Triton
gRPC client speaks to it. Implemented: ServerLive, ServerReady, ModelReady, ServerMetadata,
ModelMetadata, ModelConfig, ModelInfer (``raw_input_contents`` or typed contents in,
``raw_output_contents`` out), ModelStreamInfer (bidirectional: each request answered as it
completes, with its id; a bad one answers an error for itself only), ModelStatistics, and
RepositoryIndex / RepositoryModelLoad / RepositoryModelUnload; the rest (shared memory,
tracing, logging) answer UNIMPLEMENTED. Bad input answers INVALID_ARGUMENT naming the
problem, a full server or a model being unloaded UNAVAILABLE, an unknown model NOT_FOUND.
"""
from __future__ import annotations

import asyncio

import grpc
import numpy as np
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc

from engine.serving import kserve
from engine.serving.fleet import ControlRefused, ModelNotFound
from engine.serving.fronts import FrontThread, Tls
from engine.serving.kserve import KServeError, OutputRequest
from engine.serving.kserve_infer import InferenceFailed, Unavailable, infer


class Refused(Exception):
    """A request answered with a gRPC status: ``code`` and the message."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


class _Service(service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, server):
        self.server = server
        self.fleet = server.fleet

    def _resolve(self, name: str, version: str):
        try:
            return self.fleet.resolve(name, version or None)
        except ModelNotFound as e:
            raise Refused(grpc.StatusCode.NOT_FOUND, str(e)) from None

    async def _answer(self, context, make):
        """``make()``'s response, or the call aborted with the status it refused with."""
        try:
            return make()
        except Refused as e:
            await context.abort(e.code, str(e))

    async def ServerLive(self, request, context):
        return service_pb2.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        return service_pb2.ServerReadyResponse(ready=not self.server.stopping())

    async def ModelReady(self, request, context):
        ready = self.fleet.ready(request.name, request.version or None)
        return service_pb2.ModelReadyResponse(ready=ready and not self.server.stopping())

    async def ServerMetadata(self, request, context):
        return service_pb2.ServerMetadataResponse(**kserve.server_metadata())

    async def ModelMetadata(self, request, context):
        def make():
            deployment = self._resolve(request.name, request.version)
            meta = kserve.model_metadata(deployment, self.fleet.versions(deployment.name))
            tensor = service_pb2.ModelMetadataResponse.TensorMetadata
            return service_pb2.ModelMetadataResponse(
                name=meta["name"], versions=meta["versions"], platform=meta["platform"],
                inputs=[tensor(**t) for t in meta["inputs"]], outputs=[tensor(**t) for t in meta["outputs"]])
        return await self._answer(context, make)

    async def ModelConfig(self, request, context):
        def make():
            config = kserve.model_config(self._resolve(request.name, request.version))
            return service_pb2.ModelConfigResponse(config=json_format.ParseDict(config, model_config_pb2.ModelConfig()))
        return await self._answer(context, make)

    async def ModelStatistics(self, request, context):
        def make():
            try:
                deployments = self.fleet.deployments(request.name or None, request.version or None)
            except ModelNotFound as e:
                raise Refused(grpc.StatusCode.NOT_FOUND, str(e)) from None
            stats = [json_format.ParseDict(d.stats.triton(d.name, d.version), service_pb2.ModelStatistics())
                     for d in deployments]
            return service_pb2.ModelStatisticsResponse(model_stats=stats)
        return await self._answer(context, make)

    async def RepositoryIndex(self, request, context):
        rows = [service_pb2.RepositoryIndexResponse.ModelIndex(name=r.name, version=r.version, state=r.state,
                                                                reason=r.reason)
                for r in self.fleet.index(request.ready)]
        return service_pb2.RepositoryIndexResponse(models=rows)

    async def RepositoryModelLoad(self, request, context):
        return await self._control(context, self.fleet.load, request, service_pb2.RepositoryModelLoadResponse)

    async def RepositoryModelUnload(self, request, context):
        return await self._control(context, self.fleet.unload, request, service_pb2.RepositoryModelUnloadResponse)

    async def _control(self, context, action, request, response):
        try:
            kserve.check_load_parameters(request.parameters)
            await asyncio.to_thread(action, request.model_name)
        except (KServeError, ControlRefused) as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        return response()

    async def ModelInfer(self, request, context):
        try:
            return await self._infer(request)
        except Refused as e:
            await context.abort(e.code, str(e))

    async def ModelStreamInfer(self, request_iterator, context):
        """Answer each request of the stream as it completes; an error answers only its own request."""
        answers: asyncio.Queue = asyncio.Queue()
        pending: set[asyncio.Task] = set()

        async def one(request):
            try:
                answers.put_nowait(service_pb2.ModelStreamInferResponse(infer_response=await self._infer(request)))
            except Refused as e:
                answers.put_nowait(service_pb2.ModelStreamInferResponse(
                    error_message=str(e),
                    infer_response=service_pb2.ModelInferResponse(id=request.id, model_name=request.model_name,
                                                                  model_version=request.model_version)))

        async def read():
            async for request in request_iterator:
                task = asyncio.create_task(one(request))
                pending.add(task)
                task.add_done_callback(pending.discard)
            await asyncio.gather(*pending)
            answers.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while (answer := await answers.get()) is not None:
                yield answer
        finally:
            reader.cancel()
            for task in list(pending):
                task.cancel()

    async def _infer(self, request) -> service_pb2.ModelInferResponse:
        deployment = self._resolve(request.model_name, request.model_version)
        try:
            try:
                inputs = _inputs(request)
                outputs = [(o.name, OutputRequest(_int_param(o.parameters, "classification")))
                           for o in request.outputs]
            except KServeError:
                deployment.stats.record_refused()
                self.server.tally.add("grpc", "requests")
                self.server.tally.add("grpc", "errors")
                raise
            (datatype, shape, value), _ = await infer(self.server, "grpc", deployment, request.id or None, inputs,
                                                      outputs)
        except KServeError as e:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from None
        except Unavailable as e:
            raise Refused(grpc.StatusCode.UNAVAILABLE, str(e)) from None
        except InferenceFailed as e:
            raise Refused(grpc.StatusCode.INTERNAL, str(e)) from None
        raw = kserve.join_bytes_elements(value) if datatype == "BYTES" else np.ascontiguousarray(value).tobytes()
        output = service_pb2.ModelInferResponse.InferOutputTensor(name=kserve.OUTPUT_NAME, datatype=datatype,
                                                                   shape=shape)
        return service_pb2.ModelInferResponse(model_name=deployment.name, model_version=deployment.version,
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
    def __init__(self, server, host: str, port: int, tls: Tls | None, *, max_message_bytes: int):
        super().__init__("grpc")
        self.host, self.port, self.tls = host, port, tls
        self.service = _Service(server)
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
