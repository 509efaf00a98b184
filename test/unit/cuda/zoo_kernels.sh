#!/usr/bin/env bash
# Every kernel of every zoo model in every precision, compiled ahead of time:
# `mantissa compile --arch sm_90,sm_80` writes each plan with its kernels (CUBIN for
# both, PTX compute_80), then MantissaCudaTests checks every plan's kernel table
# against what the code generator derives from its steps (checkPlanKernels).
#   zoo_kernels.sh MANTISSA MANTISSA_CUDA_TESTS MODELS_DIR
# NVRTC output is cached in $MANTISSA_CACHE_DIR (the build tree's, set by CTest).
set -euo pipefail
mantissa=$1 tests=$2 models=$3
out=$(mktemp -d "${TMPDIR:-/tmp}/mantissa-zoo-kernels-XXXXXX")
trap 'rm -rf "$out"' EXIT
for model in "$models"/*.mlir; do
  for prec in fp32 fp16 bf16; do
    name=$(basename "$model" .mlir)
    "$mantissa" compile "$model" --precision "$prec" --arch sm_90,sm_80 -v \
      -o "$out/$name-$prec.plan" 2>&1 | sed "s/^/$name $prec: /"
  done
done
MANTISSA_TEST_PLAN_DIR=$out "$tests" --gtest_filter=CudaNvrtc.ThePlansOfAFolderCarryTheirKernels
