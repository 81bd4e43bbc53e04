#!/usr/bin/env bash
# Create /work/main/.venv-simd: numpy + pillow-simd built with AVX2, for the preprocess
# benchmark's baseline only. pillow-simd replaces PIL and is not bit-identical to stock
# Pillow, so it lives apart from the engine's .venv. Idempotent: a working env is kept.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SIMD_VENV:-$ROOT/.venv-simd}"
PYTHON="${PYTHON:-python3}"

die() { echo "make_simd_env: $*" >&2; exit 1; }

check_env() {
    "$VENV/bin/python" - <<'PY' 2>/dev/null
import PIL, numpy
from PIL import Image
assert "post" in PIL.__version__ or "simd" in PIL.__version__.lower(), PIL.__version__
Image.new("RGB", (8, 8)).resize((4, 4), Image.BILINEAR)
print("pillow-simd", PIL.__version__, "numpy", numpy.__version__)
PY
}

if [ -x "$VENV/bin/python" ] && check_env; then
    exit 0
fi

grep -qw avx2 /proc/cpuinfo || die "this CPU has no AVX2: pillow-simd's AVX2 build cannot run here"
command -v "$PYTHON" >/dev/null || die "no $PYTHON to create the venv with"
command -v cc >/dev/null || die "no C compiler (cc): install build-essential"

need_pkgs=()
for h in /usr/include/jpeglib.h:libjpeg-dev /usr/include/zlib.h:zlib1g-dev; do
    [ -e "${h%%:*}" ] || need_pkgs+=("${h##*:}")
done
pyinc="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
[ -e "$pyinc/Python.h" ] || need_pkgs+=(python3-dev)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && apt-get install -y -qq "${need_pkgs[@]}" \
            || die "apt-get could not install ${need_pkgs[*]}"
    else
        die "missing build headers (${need_pkgs[*]}) and no root apt-get to install them"
    fi
fi

rm -rf "$VENV"
"$PYTHON" -m venv "$VENV" || die "python -m venv failed"
"$VENV/bin/pip" install -q --upgrade pip setuptools wheel || die "pip bootstrap failed"
"$VENV/bin/pip" install -q numpy pybind11 || die "pip install numpy pybind11 failed"
CC="cc -mavx2" "$VENV/bin/pip" install -q --no-binary :all: --no-build-isolation \
    pillow-simd || die "building pillow-simd failed (see pip output above)"
check_env || die "pillow-simd installed but does not import or resize"
