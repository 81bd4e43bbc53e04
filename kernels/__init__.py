"""Numba kernels: pure functions on arrays, no I/O, no processes."""
