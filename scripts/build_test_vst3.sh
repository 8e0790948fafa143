#!/usr/bin/env bash
# Build the self-written PBTestGain test plugin (plugin_bridge/plugins/testplugin) as a Linux VST3
# against Debian's dpf-source (apt-get install dpf-source g++ make).
#
#   scripts/build_test_vst3.sh [OUT_DIR]      (default: build/vst3, outside git)
#
# Prints the path of the .vst3 bundle on success.  Idempotent: an up-to-date bundle is not rebuilt.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${1:-$ROOT/build/vst3}"
DPF_PATH="${DPF_PATH:-/usr/share/dpf}"
SRC="$ROOT/plugin_bridge/plugins/testplugin"

if [ ! -f "$DPF_PATH/Makefile.plugins.mk" ]; then
    echo "dpf-source not found at $DPF_PATH (apt-get install dpf-source)" >&2
    exit 2
fi
command -v "${CXX:-g++}" >/dev/null || { echo "no C++ compiler (apt-get install g++)" >&2; exit 2; }
command -v make >/dev/null || { echo "make not found (apt-get install make)" >&2; exit 2; }

mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
make -s -C "$SRC" vst3 DPF_PATH="$DPF_PATH" DPF_TARGET_DIR="$OUT" DPF_BUILD_DIR="$OUT/obj" \
     HAVE_OPENGL=false HAVE_CAIRO=false HAVE_DGL=false SKIP_STRIPPING=true >&2
BUNDLE="$OUT/PBTestGain.vst3"
test -f "$BUNDLE/Contents/$(uname -m)-linux/PBTestGain.so" || { echo "build produced no $BUNDLE" >&2; exit 1; }
echo "$BUNDLE"
