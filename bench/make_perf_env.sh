#!/usr/bin/env bash
# Create /work/main/.venv-perf holding Triton's perf_analyzer, for the KServe tests and benchmark.
# The registry's perf-analyzer package is an empty placeholder; the Linux wheel of
# tritonclient 2.45.0 ships the binary (later wheels need glibc 2.38, Debian 12 has 2.36).
# It runs without a GPU given libb64 (Debian libb64-0d) and libcudart.so.12 (pip
# nvidia-cuda-runtime-cu12, put on LD_LIBRARY_PATH by bench/perf_analyzer.py). It has a venv
# of its own so the engine's .venv keeps its newer tritonclient. Idempotent: a working env is kept.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PERF_VENV:-$ROOT/.venv-perf}"
PYTHON="${PYTHON:-python3}"
TRITONCLIENT="tritonclient==2.45.0"

die() { echo "make_perf_env: $*" >&2; exit 1; }

has_libb64() { ldconfig -p | grep -q 'libb64\.so\.0d'; }

check_env() {
    PERF_VENV="$VENV" "$ROOT/.venv/bin/python" -m bench.perf_analyzer --version >/dev/null 2>&1
}

if ! has_libb64; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && apt-get install -y -qq libb64-0d || die "apt-get could not install libb64-0d"
    else
        die "perf_analyzer needs libb64.so.0d: run 'apt-get install libb64-0d' as root"
    fi
fi

if [ -x "$VENV/bin/perf_analyzer" ] && check_env; then
    exit 0
fi

rm -rf "$VENV"
"$PYTHON" -m venv "$VENV" || die "python -m venv failed"
"$VENV/bin/pip" install -q --upgrade pip || die "pip bootstrap failed"
"$VENV/bin/pip" install -q "$TRITONCLIENT" nvidia-cuda-runtime-cu12 \
    || die "pip install $TRITONCLIENT nvidia-cuda-runtime-cu12 failed"
[ -x "$VENV/bin/perf_analyzer" ] || die "$TRITONCLIENT installed no perf_analyzer binary"
check_env || die "perf_analyzer is installed but does not run (see: .venv/bin/python -m bench.perf_analyzer --version)"
