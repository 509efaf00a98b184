#!/usr/bin/env bash
# One part of the GPU checks per call of the device tool (each call at most 10 minutes,
# at most 8 files back), with the .carry folder of bench/gpu-prepare.sh:
#   bash .carry/gpu-session.sh PART [.carry]
# writes the part's results under $OUT/r/PART and packs them into $OUT/PART.tgz. The parts,
# in the order a session with a GPU should run them (each fits one call):
#   check        gpu-check.sh: CUDA against the CPU, training, overflow, resume, unit tests
#   bench        gpu_bench.py fp16/bf16 beside PyTorch eager and torch.compile, A/B the 4-warp
#                ldmatrix NHWC convolutions (MANTISSA_CUDA_CONV=nhwc-w4)
#   bench-ab     the same without PyTorch: A/B each convolution's fastest way timed at start
#                (MANTISSA_CUDA_CONV=auto), GEMM epilogues (plans without, and the fallback
#                kernel), remat-concat, scratch in one buffer instead of the arena's free bytes
#                (MANTISSA_CUDA_SCRATCH=buffer: device memory and ms/step)
#   energy-mlp   gpu-energy-check.sh for mlp (calibration, measure-mode cost, conservation,
#                top-10 kernels, J/step beside PyTorch)
#   energy-unet  the same for unet
#   tune         gpu-tune-check.sh: the tuned policy against the uniform ones, the cost model
#                and its fitted efficiencies; then `mantissa tune --select` on the build machine
#   profile      gpu-profile.sh with Nsight Compute
#   bench-fp32   gpu_bench.py in fp32
#   study        the U-Net energy study (unet_energy_study.py)
# Each part stops itself 30 s before the call's 10 minutes, so that what it has is packed.
set -uo pipefail
part=${1:?usage: gpu-session.sh PART [.carry] (see the header for the parts)}
c=${2:-.carry}
out=${OUT:?set OUT to the folder whose files come back (the device tool sets it)}
case $part in
  check|bench|bench-ab|energy-mlp|energy-unet|tune|profile|bench-fp32|study) ;;
  *) echo "gpu-session.sh: unknown part '$part' (see the header of this script)" >&2; exit 2 ;;
esac
r="$out/r/$part"
mkdir -p "$r"
. "$(dirname "$0")/gpu-env.sh" # unpacks $c, the CUDA libraries on LD_LIBRARY_PATH
limit=${GPU_SESSION_SECONDS:-570}
t() { timeout --signal=INT --kill-after=10 "$limit" "$@"; }
case $part in
  check) t bash "$c/gpu-check.sh" "$c" "$r" ;;
  bench) t python3 "$c/gpu_bench.py" --carry "$c" --precisions fp16 bf16 --ab-env MANTISSA_CUDA_CONV=nhwc-w4 \
           --json "$r/bench.json" 2>&1 | tee "$r/bench.txt" ;;
  bench-ab) t python3 "$c/gpu_bench.py" --carry "$c" --precisions fp16 bf16 --no-pytorch \
              --ab-env MANTISSA_CUDA_CONV=auto --ab-plan noepilogue --ab-env MANTISSA_CUDA_EPILOGUE=0 --ab-plan noremat \
              --ab-env MANTISSA_CUDA_SCRATCH=buffer \
              --json "$r/bench-ab.json" 2>&1 | tee "$r/bench-ab.txt" ;;
  energy-mlp) t bash "$c/gpu-energy-check.sh" "$c" "$r" --no-study --models mlp ;;
  energy-unet) t bash "$c/gpu-energy-check.sh" "$c" "$r" --no-study --models unet ;;
  tune) t bash "$c/gpu-tune-check.sh" "$c" "$r" ;;
  profile) t bash "$c/gpu-profile.sh" "$c" "$r" ;;
  bench-fp32) t python3 "$c/gpu_bench.py" --carry "$c" --precisions fp32 --json "$r/bench-fp32.json" 2>&1 |
                tee "$r/bench-fp32.txt" ;;
  study) t python3 "$c/unet_energy_study.py" --carry "$c" --out "$r" 2>&1 | tee "$r/study.txt" ;;
esac
rc=${PIPESTATUS[0]}
[ "$rc" = 124 ] && echo "gpu-session.sh: $part stopped at ${limit} s; what it wrote is packed" | tee -a "$r/STOPPED"
tar czf "$out/$part.tgz" -C "$out/r" "$part"
echo "gpu-session.sh: $part exited $rc; results in $out/$part.tgz"
exit "$rc"
