"""Serving frames: the ZeroMQ wire protocol and server, the KServe v2 / Triton front ends
(HTTP, gRPC, /metrics, statistics, the model repository extension), and what they share:
admission and the preprocessing workers; per model version of the fleet (one model, or a
Triton model repository) a dynamic batcher, its instances and its statistics.

``engine.serve`` wires these parts to its sockets; ``engine.client`` speaks the ZeroMQ
protocol from the other side, ``tritonclient`` the KServe one.
"""
