#!/usr/bin/env bash
# Runs every test: unit tests (GoogleTest), lit + FileCheck tests of every pass, and
# the numeric and end-to-end tests (finite differences, PyTorch on the CPU), all
# through CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh >&2
build=${MANTISSA_BUILD_DIR:-build}
ctest --test-dir "$build" --output-on-failure -j"$(nproc)" "$@"
