"""Serving frames over ZeroMQ: wire protocol, payload decoding, dynamic batching, the model.

``engine.serve`` wires these parts to a ROUTER socket; ``engine.client`` speaks the same
protocol from the other side.
"""
