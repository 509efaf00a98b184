#!/usr/bin/env bash
# Issue 5's GPU checks (3 and 4), with the .carry folder of bench/gpu-prepare.sh:
#   3. unet w32 L4 b16 384^2: ms/step and J/step of the tuned policy against uniform fp16,
#      bf16, fp32 and PyTorch AMP (fp16 + GradScaler, bf16); the tuned policy is at least as
#      fast as the best uniform policy that met the bound in the tuner's CPU emulation;
#   4. the cost model's median absolute error per kernel against CUDA-event kernel times.
# Usage: bench/gpu-tune-check.sh [.carry] [results-dir]
set -uo pipefail
c=${1:-.carry}; out=${2:-gpu-results}
mkdir -p "$out"
. "$(dirname "$0")/gpu-env.sh" # unpacks $c, the CUDA libraries on LD_LIBRARY_PATH
echo "tuner's choice (CPU emulation, modelled H100 cost):"
tail -n 12 "$c/tune/tune.txt"
cat "$c/tune/unet-policy.json"
cp "$c/tune/tune.txt" "$c/tune/unet-policy.json" "$c/tune/unet-front.svg" "$out/" 2>/dev/null
python3 "$c/gpu_tune.py" --carry "$c" --out "$out" 2>&1 | tee "$out/gpu_tune.txt"
exit "${PIPESTATUS[0]}"
