#!/usr/bin/env bash
# Builds what the GPU check needs into .carry/ (binaries, CUDA plugin, plans), on a
# machine with MLIR and the CUDA toolkit (no GPU needed). Then, on a GPU machine with
# the CUDA 13 toolkit: bench/gpu-check.sh [.carry] [results-dir], and the precision
# tuner's checks: bench/gpu-tune-check.sh [.carry] [results-dir].
set -euo pipefail
cd "$(dirname "$0")/.."
build=${MANTISSA_BUILD_DIR:-build}
./scripts/setup.sh >&2
ninja -C "$build" mantissa mantissa-run mantissa_cuda cuda_vs_cpu MantissaCudaTests >&2
c=.carry; rm -rf $c; mkdir -p $c/plans $c/bin $c/tune
cp "$build/bin/mantissa-run" "$build/bin/cuda_vs_cpu" "$build/bin/MantissaCudaTests" $c/bin/
cp "$(find "$build" -name libmantissa_cuda.so | head -1)" $c/bin/
# Kernels compiled ahead of time for the H100/H200 (sm_90): the GPU run loads CUBIN.
m() { "$build/bin/mantissa" "$@"; }
export MANTISSA_CACHE_DIR=${MANTISSA_CACHE_DIR:-$PWD/$build/nvrtc-cache}
python3 models/gen_unet.py --width 8 --levels 3 --size 64 --batch 4 > $c/unet_check.mlir
python3 models/gen_unet.py --width 32 --levels 4 --size 384 --batch 16 > $c/unet.mlir
for prec in fp32 fp16 bf16; do
  # One step of each zoo model, CUDA against the CPU oracle (unet at a size the CPU can check).
  for model in mlp_digits cnn_digits mlp; do
    m compile --arch sm_90 models/$model.mlir --precision $prec --optimizer sgd --lr 0.01 --momentum 0.9 -o $c/plans/check-$model-$prec.plan
  done
  m compile --arch sm_90 $c/unet_check.mlir --precision $prec --optimizer sgd --lr 0.01 --momentum 0.9 -o $c/plans/check-unet-$prec.plan
  # The benchmark configurations of shared/bench/pytorch_reference.py: SGD lr 1e-3 momentum 0.9.
  m compile --arch sm_90 models/mlp.mlir --precision $prec --optimizer sgd --lr 0.001 --momentum 0.9 -o $c/plans/bench-mlp-$prec.plan
  m compile --arch sm_90 $c/unet.mlir --precision $prec --optimizer sgd --lr 0.001 --momentum 0.9 -o $c/plans/bench-unet-$prec.plan
done
# The same compiled otherwise, for gpu_bench.py --ab-plan NAME: nocopies (no persistent
# working copies: what keeping them costs in memory and saves in time), noepilogue (a
# linear's bias and relu outside its GEMM: mlp), noremat (no remat-concat: the U-Net's
# skip connections kept, no slices). Each for both models; where a switch changes nothing
# the two plans are the same.
for prec in fp16 bf16; do
  for variant in "nocopies --no-working-copies" "noepilogue --no-gemm-epilogue" "noremat --no-remat-concat"; do
    read -r name flag <<< "$variant"
    m compile --arch sm_90 models/mlp.mlir --precision $prec --optimizer sgd --lr 0.001 --momentum 0.9 $flag -o $c/plans/bench-mlp-$prec-$name.plan
    m compile --arch sm_90 $c/unet.mlir --precision $prec --optimizer sgd --lr 0.001 --momentum 0.9 $flag -o $c/plans/bench-unet-$prec-$name.plan
  done
done
m compile --arch sm_90 models/mlp_digits.mlir --precision fp16 --loss-scale dynamic --optimizer sgd --lr 0.05 --momentum 0.9 -o $c/plans/mlp_digits-fp16.plan
m compile --arch sm_90 $c/unet.mlir --precision fp16 --optimizer adam --lr 0.001 -o $c/plans/unet-train-fp16.plan
# The other two ways kernels reach the GPU: PTX JIT (a plan for sm_80 only) and NVRTC
# at startup (a plan without kernels).
m compile models/mlp_digits.mlir --precision fp16 --arch sm_80 -o $c/plans/kernels-sm80.plan
m compile models/mlp_digits.mlir --precision fp16 --arch none -o $c/plans/kernels-none.plan
du -h $c/plans/bench-unet-fp16.plan
# Binaries (~27 MB each, static OpenBLAS) gzip 3x and plans with kernels (~1 MB each,
# mostly the fixed kernels' CUBIN and PTX, the same in every plan) 5x: packed, so that
# .carry stays well under the device tool's 64 MiB carry limit. gpu-check.sh and
# gpu_bench.py unpack them.
# The U-Net energy study (bench/unet_energy_study.py): unet(w, L=4) at 384x384, batch 16,
# fp32 and fp16 AMP, SGD lr 1e-3 momentum 0.9 as the benchmark plans.
for w in 8 16 32 64; do
  python3 models/gen_unet.py --width $w --levels 4 --size 384 --batch 16 > $c/unet-w$w.mlir
  for prec in fp32 fp16; do
    m compile --arch sm_90 $c/unet-w$w.mlir --precision $prec --optimizer sgd --lr 0.001 --momentum 0.9 -o $c/plans/study-unet-w$w-$prec.plan
  done
done
# Issue 5 (bench/gpu-tune-check.sh): tune unet's precision on the CPU with a w4 proxy of the
# same op groups (exact fp16/bf16 emulation), priced at w32 L4 b16 384^2 by the H100 cost
# model; then the tuned, uniform fp16/bf16 and fp32 plans of the full model (the benchmark's
# SGD lr 1e-3 momentum 0.9) and the candidates' manifest.
python3 models/gen_unet.py --width 4 --levels 4 --size 32 --batch 8 > $c/unet_tune_proxy.mlir
m tune $c/unet_tune_proxy.mlir --cost-model $c/unet.mlir --device h100 --objective time \
  --data nowcast --train-samples 128 --held-out-samples 64 --steps 40 --budget 70 --max-metric-gap 0.05 \
  --optimizer adam --lr 0.003 -o $c/tune/unet-policy.json --plot $c/tune/unet-front.svg \
  --emit-candidates $c/tune/candidates > $c/tune/tune.txt
cp $c/tune/candidates/manifest.json $c/tune/manifest.json
# Every candidate's full-size plan (--arch none: NVRTC there, ~0.2 MB each) goes to the GPU
# to be measured (gpu_tune.py: `mantissa-run measure`, then `mantissa tune --select` here);
# the proxy plans the tuner trained stay behind.
mkdir -p $c/plans/tune-candidates
mv $c/tune/candidates/*-cost.plan $c/plans/tune-candidates/
rm -f $c/tune/candidates/*.plan
for p in tuned fp16 bf16 fp32; do
  prec=$([ $p = tuned ] && echo $c/tune/unet-policy.json || echo $p)
  m compile --arch sm_90 $c/unet.mlir --precision $prec --optimizer sgd --lr 0.001 --momentum 0.9 -o $c/plans/tune-unet-$p.plan
done
# Symbols are not needed there (the plugin keeps its dynamic symbol table, which is
# what dlsym reads).
strip $c/bin/*
tar czf $c/payload.tgz -C $c bin plans && rm -rf $c/bin $c/plans
cp bench/gpu-check.sh bench/gpu_bench.py bench/torch_models.py bench/gpu-energy-check.sh bench/energy_check.py \
   bench/nvml_energy.py bench/unet_energy_study.py bench/gpu-tune-check.sh bench/gpu_tune.py \
   bench/gpu-profile.sh bench/gpu-env.sh bench/gpu-session.sh $c/
du -sh $c
