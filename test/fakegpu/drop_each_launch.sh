#!/usr/bin/env bash
# How sharp cuda_vs_cpu is: drops each kernel launch of a run in turn on the emulated GPU
# (MANTISSA_FAKE_CUDA_DROP_LAUNCH) and says whether the comparison notices. Not a CTest
# (one run per launch: minutes); the figures in the notes come from it.
#
#   test/fakegpu/drop_each_launch.sh BUILD PLAN TRUTH_FP32_PLAN TOL [STEPS]
#
# Prints one line per launch, "caught N NAME" or "MISSED N NAME", then the totals.
set -uo pipefail
build=$1 plan=$2 truth=$3 tol=$4 steps=${5:-2}
caught=0 missed=0 n=1
out=$(mktemp)
trap 'rm -f "$out"' EXIT
while :; do
  MANTISSA_FAKE_CUDA_DROP_LAUNCH=$n MANTISSA_CUDA_PLUGIN="$build/fakegpu/libmantissa_cuda_fake.so" \
    MANTISSA_FAKE_CUDA_CACHE="$build/fakegpu/kernels" MANTISSA_CACHE_DIR="$build/nvrtc-cache" \
    "$build/bin/cuda_vs_cpu" "$plan" --steps "$steps" --tol "$tol" --atol 1e-6 --truth "$truth" >"$out" 2>&1
  rc=$?
  name=$(grep -o "dropped launch $n ([^)]*)" "$out" | sed "s/dropped launch //")
  [ -z "$name" ] && break # past the last launch
  if [ $rc = 1 ]; then echo "caught $name"; caught=$((caught + 1))
  elif [ $rc = 0 ]; then echo "MISSED $name"; missed=$((missed + 1))
  else echo "error (exit $rc) $name"; tail -3 "$out"; exit 2; fi
  n=$((n + 1))
done
echo "$caught of $((caught + missed)) dropped launches caught, $missed missed"
