#!/usr/bin/env bash
# The GPU checks of the CUDA backend, run with the binaries and plans that
# bench/gpu-prepare.sh put into a folder (default .carry):
#   1. one training step of every zoo model in fp32/fp16/bf16: CUDA against the CPU executor;
#   2. mlp_digits trained on the GPU reaches >= 0.95 held-out accuracy;
#   3. full-size unet (w32, L4, b16, 384^2) trains on the GPU with falling loss;
#   4. a forced overflow is skipped on the GPU exactly as on the CPU;
#   5. a run resumed from a checkpoint on the GPU ends as an uninterrupted one;
#   0. kernels load from the plan as CUBIN (sm_90), or JIT from PTX, or NVRTC at startup;
#      the CUDA unit tests (MantissaCudaTests) on the GPU;
# then (if --bench) the side-by-side benchmark against PyTorch (bench/gpu_bench.py).
# The precision tuner's GPU checks are a separate run: bash .carry/gpu-tune-check.sh .carry DIR.
set -uo pipefail
c=${1:-.carry}; out=${2:-gpu-results}; shift 2 || true
mkdir -p "$out"
. "$(dirname "$0")/gpu-env.sh" # unpacks $c, the CUDA libraries on LD_LIBRARY_PATH
run=$c/bin/mantissa-run
fail=0
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"

echo "== 0. kernels: CUBIN from the plan, PTX JIT, NVRTC at startup (MANTISSA_VERBOSE=1)"
for k in check-mlp_digits-fp16:"CUBIN sm_90" kernels-sm80:"JIT-compiles its PTX" kernels-none:"at startup"; do
  plan=${k%%:*} want=${k#*:}
  MANTISSA_VERBOSE=1 "$c/bin/cuda_vs_cpu" "$c/plans/$plan.plan" --steps 1 --tol 2e-3 --atol 1e-6 > "$out/kernels-$plan.txt" 2>&1
  rc=$?; line=$(grep -m1 "mantissa cuda:" "$out/kernels-$plan.txt")
  if [ $rc = 0 ] && grep -q "$want" <<<"$line"; then echo "PASS $plan: $line"; else echo "FAIL $plan (rc $rc, want '$want'): $line"; tail -5 "$out/kernels-$plan.txt"; fail=1; fi
done

echo "== 0b. the CUDA unit tests: every kernel kind against the CPU executor, kernels from the plan (CUBIN, PTX JIT), the no-usable-kernel error, the CUPTI timeline against the events timeline"
if MANTISSA_CACHE_DIR=$(mktemp -d) "$c/bin/MantissaCudaTests" --gtest_filter='CudaExecutor.*:CudaNvrtc.*:CuptiTimeline.*:KernelRecords.*' > "$out/cuda-unit-tests.txt" 2>&1; then
  echo "PASS $(grep -E '^\[  (PASSED|SKIPPED) +\] [0-9]+ test' "$out/cuda-unit-tests.txt" | tr '\n' ' ')"
else
  echo "FAIL"; grep -E "FAILED|Failure" "$out/cuda-unit-tests.txt" | head -20; fail=1
fi

echo "== 1. one step, CUDA vs CPU (L2-normwise relative error of the loss and every persistent tensor)"
for prec in fp32 fp16 bf16; do
  # fp32: both compute in fp32, only summation order differs. fp16/bf16: tensors are
  # rounded to 11/8 significant bits, so one summation-order difference in a GEMM or
  # a reduction moves a stored value by one ulp: 2^-11 = 4.9e-4 and 2^-8 = 3.9e-3.
  # An absolute floor of 1e-6 covers parameters that start at zero (batch-norm
  # shifts), which after one step hold only lr x a heavily cancelling gradient sum.
  # Beyond those, a tensor passes when CUDA is no more than 1.5x as far from the f64
  # truth (the fp32 plan run in f64) as the CPU's exact emulation (cuda_vs_cpu --truth).
  # Biases right before a batch norm have an exact gradient of 0: what both backends
  # hold there is the rounding noise of batch-norm backward's cancelling sums, ~1e-6
  # in fp32/fp16 and 8x that in bf16 (8 vs 11 significant bits): the absolute floor.
  tol=$(case $prec in fp32) echo 1e-4;; fp16) echo 2e-3;; bf16) echo 1e-2;; esac)
  atol=$(case $prec in bf16) echo 2e-5;; *) echo 1e-6;; esac)
  for model in mlp_digits cnn_digits mlp unet; do
    if "$c/bin/cuda_vs_cpu" "$c/plans/check-$model-$prec.plan" --steps 1 --tol $tol --atol $atol \
         --truth "$c/plans/check-$model-fp32.plan" > "$out/check-$model-$prec.txt" 2>&1; then
      echo "PASS $model $prec (tol $tol, atol $atol): $(grep -E 'loss|compared' "$out/check-$model-$prec.txt" | tail -2 | tr '\n' ' ')"
    else
      echo "FAIL $model $prec (tol $tol, atol $atol)"; tail -15 "$out/check-$model-$prec.txt"; fail=1
    fi
  done
done

echo "== 1b. unet fp16/bf16 with the NCHW implicit-GEMM convolutions (MANTISSA_CUDA_CONV=gemm; section 1"
echo "      ran the default NHWC ones), with the 4-warp ldmatrix NHWC kernels (=nhwc-w4), with"
echo "      each convolution's fastest way timed at start (=auto), with NHWC copies of one"
echo "      sample at a time (MANTISSA_CUDA_NHWC_MB=0.01: chunks of samples), and with every step's"
echo "      scratch in one buffer (MANTISSA_CUDA_SCRATCH=buffer; section 1 put it in the arena's free"
echo "      bytes), same criterion"
for env in MANTISSA_CUDA_CONV=gemm MANTISSA_CUDA_CONV=nhwc-w4 MANTISSA_CUDA_CONV=auto MANTISSA_CUDA_NHWC_MB=0.01 MANTISSA_CUDA_SCRATCH=buffer; do
  for prec in fp16 bf16; do
    tol=$(case $prec in fp16) echo 2e-3;; bf16) echo 1e-2;; esac)
    atol=$(case $prec in bf16) echo 2e-5;; *) echo 1e-6;; esac)
    if env "$env" MANTISSA_VERBOSE=1 "$c/bin/cuda_vs_cpu" "$c/plans/check-unet-$prec.plan" \
         --steps 1 --tol $tol --atol $atol --truth "$c/plans/check-unet-fp32.plan" \
         > "$out/check-unet-$prec-$env.txt" 2>&1; then
      echo "PASS unet $prec $env: $(grep -E 'loss|compared|timed|scratch of' "$out/check-unet-$prec-$env.txt" | tail -4 | tr '\n' ' ')"
    else
      echo "FAIL unet $prec $env"; tail -15 "$out/check-unet-$prec-$env.txt"; fail=1
    fi
  done
done

echo "== 1c. every zoo model in fp16 and fp32 with the arena's free bytes set to NaN before each step"
echo "      (MANTISSA_CUDA_POISON=1: where a step's scratch goes; a kernel that read a temp"
echo "      before writing it, or a scratch it had not written, would spread NaN), 2 steps"
for prec in fp32 fp16; do
  tol=$(case $prec in fp32) echo 1e-4;; fp16) echo 2e-3;; esac)
  for model in mlp_digits cnn_digits mlp unet; do
    if MANTISSA_CUDA_POISON=1 "$c/bin/cuda_vs_cpu" "$c/plans/check-$model-$prec.plan" --steps 2 --tol $tol \
         --atol 1e-6 --truth "$c/plans/check-$model-fp32.plan" > "$out/check-$model-$prec-poison.txt" 2>&1; then
      echo "PASS poisoned $model $prec: $(grep -E 'loss|compared' "$out/check-$model-$prec-poison.txt" | tail -2 | tr '\n' ' ')"
    else
      echo "FAIL poisoned $model $prec"; tail -15 "$out/check-$model-$prec-poison.txt"; fail=1
    fi
  done
done

echo "== 2. mlp_digits fp16 on the GPU"
$run train $c/plans/mlp_digits-fp16.plan --backend cuda --data digits --epochs 30 --json "$out/mlp_digits-gpu.json" 2>&1 | tail -8
acc=$(python3 -c "import json;print(json.load(open('$out/mlp_digits-gpu.json'))['eval']['accuracy'])")
python3 -c "import sys; sys.exit(0 if $acc >= 0.95 else 1)" && echo "PASS held-out accuracy $acc >= 0.95" || { echo "FAIL accuracy $acc"; fail=1; }

echo "== 3. full-size unet fp16 on the GPU: falling loss"
$run train $c/plans/unet-train-fp16.plan --backend cuda --data nowcast --train-samples 64 --held-out-samples 16 \
  --steps 120 --log-every 10 --json "$out/unet-gpu.json" 2>&1 | tee "$out/unet-gpu.txt" | tail -16
python3 - "$out/unet-gpu.txt" <<'PY' || fail=1
import re, sys
losses = [float(m.group(1)) for m in re.finditer(r"loss ([0-9.eE+-]+)", open(sys.argv[1]).read())]
first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
ok = len(losses) >= 6 and last < 0.7 * first
print(("PASS" if ok else "FAIL") + f" unet loss falls: first logs {first:.5f} -> last logs {last:.5f}")
sys.exit(0 if ok else 1)
PY

echo "== 4. forced overflow at step 5, CPU and GPU"
for b in cpu cuda; do
  $run train $c/plans/mlp_digits-fp16.plan --backend $b --steps 5 --quiet --save "$out/ovf-$b-5.safetensors" --json "$out/ovf-$b-5.json" > /dev/null
  $run train $c/plans/mlp_digits-fp16.plan --backend $b --steps 6 --inject-nonfinite 5 --quiet --save "$out/ovf-$b-6.safetensors" --json "$out/ovf-$b-6.json" > /dev/null
done
python3 - "$out" "$c" <<'PY' || fail=1
import sys, json, numpy as np
sys.path.insert(0, sys.argv[2]); import torch_models as tm
o = sys.argv[1]
A5, A6, B5, B6 = (tm.read_safetensors(f"{o}/ovf-{b}-{n}.safetensors") for b in ("cpu", "cuda") for n in (5, 6))
skip = lambda s: [k for k in s if not k.startswith(("scaler.", "trainer."))]
same_gpu = all(np.array_equal(B5[k], B6[k]) for k in skip(B5))
halved = float(B6["scaler.scale"]) == float(B5["scaler.scale"]) / 2 == float(A6["scaler.scale"])
j = json.load(open(f"{o}/ovf-cuda-6.json"))
rel = max(np.abs(B6[k] - A6[k]).max() / max(np.abs(A6[k]).max(), 1e-12) for k in skip(B6))
ok = same_gpu and halved and j["skipped_steps"] == 1 and rel < 2e-3
print(("PASS" if ok else "FAIL") + f" GPU: step 5 skipped (state unchanged: {same_gpu}), scale {float(B5['scaler.scale'])} -> {float(B6['scaler.scale'])} as on the CPU, skipped {j['skipped_steps']}; GPU vs CPU state after 6 steps: {rel:.1e}")
sys.exit(0 if ok else 1)
PY
echo "== 5. resumed on the GPU: 3 steps and a checkpoint, then 3 more from it, against 6 in one go"
# The fp16 working copies are not checkpointed: the resumed run must cast them on the
# device from the loaded masters (Executor::write), or its first steps use stale ones.
$run train $c/plans/mlp_digits-fp16.plan --backend cuda --steps 6 --quiet --save "$out/resume-ref.safetensors" > /dev/null
$run train $c/plans/mlp_digits-fp16.plan --backend cuda --steps 3 --quiet --checkpoint "$out/resume-ck" --every 3 > /dev/null
$run train $c/plans/mlp_digits-fp16.plan --backend cuda --steps 6 --quiet --checkpoint "$out/resume-ck" --every 3 \
  --resume --save "$out/resume-out.safetensors" > /dev/null
python3 - "$out" "$c" <<'PY' || fail=1
import sys, numpy as np
sys.path.insert(0, sys.argv[2]); import torch_models as tm
A = tm.read_safetensors(f"{sys.argv[1]}/resume-ref.safetensors")
B = tm.read_safetensors(f"{sys.argv[1]}/resume-out.safetensors")
differ = [k for k in A if k not in B or not np.array_equal(A[k], B[k])]
print(("PASS" if not differ and set(A) == set(B) else "FAIL") +
      f" resumed run equals the uninterrupted one in all {len(A)} tensors" + (f"; differ: {differ[:5]}" if differ else ""))
sys.exit(0 if not differ and set(A) == set(B) else 1)
PY
echo "== checks: $([ $fail = 0 ] && echo all passed || echo FAILURES)"
tar czf "$out.tgz" -C "$(dirname "$out")" "$(basename "$out")" 2>/dev/null
exit $fail
