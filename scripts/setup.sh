#!/usr/bin/env bash
# Installs what Mantissa needs on Debian 12 (only what is missing) and builds it.
# Used by demo.sh and test.sh; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  cmake ninja-build g++ pkg-config        # build
  libmlir-22-dev mlir-22-tools llvm-22-dev llvm-22-tools  # the compiler half (MLIR 22); lit, FileCheck
  flatbuffers-compiler libflatbuffers-dev # the plan format
  libopenblas-pthread-dev                 # CPU GEMM (linked statically into mantissa-run)
  zlib1g-dev                              # .npz and digits.csv.gz (linked statically)
  libgtest-dev                            # unit tests
  python3-sklearn                         # the digits data set (embedded at build time)
  python3-numpy python3-torch             # tests against PyTorch on the CPU
  chromium                                # renders the energy report in its test (headless)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

build=${MANTISSA_BUILD_DIR:-build}
if [ ! -f "$build/build.ninja" ]; then
  cmake -G Ninja -S . -B "$build" -DCMAKE_BUILD_TYPE=Release
fi
ninja -C "$build" -j"$(nproc)"
