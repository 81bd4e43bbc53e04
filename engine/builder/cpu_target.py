"""The CPU an int8 build is for, and the int8 types and weight ranges that suit it.

onnxruntime's x86 int8 kernels multiply uint8 activations by int8 weights (U8S8).
Without VNNI (AVX2-only CPUs, and AVX-512 parts without AVX512_VNNI) the inner step is
``VPMADDUBSW``, which multiplies pairs of u8 x s8 and adds each pair into a *saturating
int16*: 255*127 + 255*127 = 64770 overflows the int16 limit of 32767, so large
activations meeting large weights are clipped and accuracy drops. ``reduce_range=True``
quantizes weights to 7 bits (-64..64), which bounds a pair at 255*64*2 = 32640 and removes
the saturation; with per-channel weights each convolution's channels then get wider
ranges where no pair of neighbouring weights can overflow, and depthwise convolutions
(int32 accumulation) the full 8 bits (:mod:`engine.builder.weight_ranges`). S8S8 does not
help: on x86 it is run as U8S8 after shifting the activations, with the same instruction.
U8U8 (uint8 weights) avoids saturation too, but its kernels are slow on such CPUs.
With VNNI (``VPDPBUSD`` accumulates straight into int32) or on ARM (``SDOT``/``UDOT``)
there is no int16 intermediate and the full 8-bit range is used.

A deploy folder built with full 8-bit weights saturates when it runs on a CPU without
VNNI, so the target is a build setting (``quantization.target_cpu``): ``native`` (the
default) reads this machine's flags, the others name the kind of CPU the model will run
on.
"""
from __future__ import annotations

from dataclasses import dataclass

# The flags that decide the int8 kernels, for each target but "native".
TARGET_FLAGS = {
    "x86": frozenset({"sse2", "avx", "avx2"}),
    "x86_vnni": frozenset({"sse2", "avx", "avx2", "avx512_vnni"}),
    "arm": frozenset({"asimd", "asimddp"}),
}
TARGETS = ("native", *TARGET_FLAGS)
VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "avx512vnni", "amx_int8"})
X86_FLAGS = frozenset({"sse2", "avx", "avx2"})


@dataclass(frozen=True)
class Int8Types:
    """What onnxruntime's static quantizer is given for one target CPU."""
    activation_type: object   # onnxruntime.quantization.QuantType
    weight_type: object
    reduce_range: bool        # 7-bit weights (widened per channel where safe, engine.builder.weight_ranges)
    reason: str               # why, for build.json


def cpu_flags() -> set[str]:
    """This machine's CPU flags (x86 ``flags`` or ARM ``Features`` of /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def target_flags(target: str) -> set[str]:
    """The CPU flags of ``target`` (one of TARGETS): this machine's for ``native``."""
    return cpu_flags() if target == "native" else set(TARGET_FLAGS[target])


def int8_types(flags: set[str] | None = None) -> Int8Types:
    """Activation/weight types and ``reduce_range`` for onnxruntime int8 on a CPU with
    ``flags`` (this machine's when None); see the module docstring for why."""
    from onnxruntime.quantization import QuantType

    flags = cpu_flags() if flags is None else flags
    reduce_range = bool(flags & X86_FLAGS) and not flags & VNNI_FLAGS
    reason = ("x86 without VNNI: U8S8 with weights in ranges where VPMADDUBSW's int16 pairs cannot saturate "
              "(reduce_range's 7 bits, wider per channel where safe)" if reduce_range else
              "VNNI/ARM dot products accumulate in int32: U8S8, full 8-bit weights")
    return Int8Types(QuantType.QUInt8, QuantType.QInt8, reduce_range, reason)
