"""The streaming pipeline: a broker process feeding preprocess and device workers.

Shape (see docs in engine/pipeline/broker.py):

    broker (source + scheduler + sink, the process that runs ``engine.run``)
      <-> preprocess workers x N   load items, fused kernel into their shared-memory slots
      <-> device workers x P       each with I instances: run a block of slots, rank the logits

All messages are msgpack headers (plus raw top-k / output frames from the device workers)
over ZeroMQ ROUTER/DEALER sockets, one per group of items (a preprocess task, a device
batch); pixel tensors stay in the shared-memory slot ring.
"""
