"""Serving frames: the ZeroMQ wire protocol and server, the KServe v2 / Triton front ends
(HTTP, gRPC, /metrics), and what they share: admission, the workers, the dynamic batcher, the model.

``engine.serve`` wires these parts to its sockets; ``engine.client`` speaks the ZeroMQ
protocol from the other side, ``tritonclient`` the KServe one.
"""
