"""The streaming pipeline: a broker process feeding preprocess and device workers.

Shape (see docs in engine/pipeline/broker.py):

    broker (source + scheduler + sink, the process that runs ``engine.run``)
      <-> preprocess workers x N   load item, fused kernel into a shared-memory slot
      <-> device workers x P       each with I instances: gather slots, run backend

All messages are msgpack headers (plus raw logits frames from the device workers) over
ZeroMQ ROUTER/DEALER sockets; pixel tensors stay in the shared-memory slot ring.
"""
