#!/usr/bin/env bash
# The demo: compile mlp_digits for fp16 AMP with dynamic loss scaling and train it
# on the CPU backend; ends with a summary that includes the held-out accuracy.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh >&2
build=${MANTISSA_BUILD_DIR:-build}
mkdir -p "$build/demo"
"$build/bin/mantissa" compile models/mlp_digits.mlir --precision fp16 --loss-scale dynamic \
  --optimizer sgd --lr 0.05 --momentum 0.9 --seed 0 -o "$build/demo/mlp_digits.plan"
"$build/bin/mantissa" train "$build/demo/mlp_digits.plan" --data digits --epochs 30 \
  --json "$build/demo/summary.json"
