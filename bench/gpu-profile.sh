#!/usr/bin/env bash
# Where unet's step time goes on a GPU, with the .carry folder of bench/gpu-prepare.sh:
#   1. MANTISSA_CUDA_PROFILE=1: CUDA-event time of every plan step (eager, after the
#      first run), unet w32 L4 b16 384^2 fp16: as built, without the 16-byte batch-norm
#      and reduce kernels (MANTISSA_CUDA_VECTOR=0), with the NCHW implicit-GEMM
#      convolutions instead of the default NHWC ones (MANTISSA_CUDA_CONV=gemm), with the
#      NHWC kernels' 4-warp ldmatrix form (=nhwc-w4), and with each convolution's fastest way
#      (MANTISSA_CUDA_CONV=auto, whose per-layer timings MANTISSA_VERBOSE=1 writes too);
#   2. Nsight Compute (ncu, --clock-control none as the device notes ask) on the largest
#      convolution of each kind and on the batch-norm kernels: throughput against the
#      roofline, occupancy, and why warps stall.
# Usage: bench/gpu-profile.sh [.carry] [results-dir] [--no-ncu]
set -uo pipefail
c=${1:-.carry}; out=${2:-gpu-results}
mkdir -p "$out"
. "$(dirname "$0")/gpu-env.sh" # unpacks $c, the CUDA libraries on LD_LIBRARY_PATH
run="$c/bin/mantissa-run"; plan="$c/plans/bench-unet-fp16.plan"
data=(--data nowcast --train-samples 16 --held-out-samples 16 --fixed-batch --quiet)

for env in MANTISSA_CUDA_VECTOR=1 MANTISSA_CUDA_VECTOR=0 MANTISSA_CUDA_CONV=gemm MANTISSA_CUDA_CONV=nhwc-w4 MANTISSA_CUDA_CONV=auto; do
  echo "== 1. per-step times, $env"
  env "$env" MANTISSA_CUDA_PROFILE=1 MANTISSA_VERBOSE=1 "$run" train "$plan" --backend cuda --steps 4 \
    "${data[@]}" 2>"$out/profile-$env.txt" >/dev/null
  grep -E "timed [0-9]+ convolutions" "$out/profile-$env.txt"
  grep -A25 "train_step" "$out/profile-$env.txt" | grep -v "^mantissa cuda:" | head -30
done

ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
if [ "${3:-}" = --no-ncu ]; then
  echo "== 2. skipped (--no-ncu)"
  exit 0
elif [ -z "$ncu" ]; then
  echo "== 2. skipped: no ncu on this machine"
  exit 0
fi
echo "== 2. ncu ($ncu)"
# Without graphs each kernel is its own launch; one training step after the first.
for k in 'regex:mt_conv_nhwc' 'regex:mt_conv_nhwc.*_w4' 'regex:mt_conv_fwd' 'regex:mt_conv_bwdin' 'regex:mt_conv_bwdw' 'regex:mt_bn_(stats8|apply8)' 'regex:mt_bnb_(partial8|dx8)'; do
  name=$(echo "$k" | tr -c 'a-z0-9_\n' '_')
  conv=gemm; [ "$k" = 'regex:mt_conv_nhwc' ] && conv=nhwc; [ "$k" = 'regex:mt_conv_nhwc.*_w4' ] && conv=nhwc-w4
  MANTISSA_CUDA_CONV=$conv MANTISSA_CUDA_GRAPH=0 timeout 240 "$ncu" --clock-control none -k "$k" --launch-skip 2 --launch-count 2 \
    --section SpeedOfLight --section Occupancy --section WarpStateStats --section LaunchStats \
    --section MemoryWorkloadAnalysis \
    "$run" train "$plan" --backend cuda --steps 2 "${data[@]}" >"$out/ncu-$name.txt" 2>&1
  echo "-- $k (rc $?)"
  grep -E "mt_|Duration|Compute \(SM\) Throughput|Memory Throughput|DRAM Throughput|Achieved Occupancy|Theoretical Occupancy|Registers Per Thread|Block Limit|Warp Cycles Per Issued|Stall|Grid Size" \
    "$out/ncu-$name.txt" | head -40
done
