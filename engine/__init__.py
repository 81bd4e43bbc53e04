"""Streaming inference engine for ImageNet classifiers.

``engine/<tool>.py`` are the commands (``python -m engine.<tool>``): they parse arguments,
call a subsystem, print and choose the exit code. The machinery lives in the subsystem
packages, and imports point one way (checked by import-linter, ``.importlinter``):

    commands -> pipeline | serving | builder -> models | backends -> data -> kernels

See docs/architecture.md.
"""
