#!/usr/bin/env python3
"""bench/gpu-check.sh's sections 1, 1b and 1c on the emulated GPU (FakeCuda.cpp): the CUDA
plugin, built against a CUDA runtime and cuBLAS that run on the CPU, trains small zoo models
from plans compiled ahead of time for sm_90 (the CUBIN path a GPU takes), and cuda_vs_cpu
compares every persistent tensor with the CPU executor after each step, with gpu-check's
tolerances. What this checks that the kernel tests do not: the executor's launch order and
arguments, graph capture and replay (from the second step), scratch placement in the arena's
free bytes, the NHWC chunks, the convolution variants, and that no kernel reads arena bytes
outside their liveness (MANTISSA_CUDA_POISON=1). What it cannot check: a GPU's own numerics
(summation order on tensor cores), timing, and concurrency. Then mantissa-run itself on the
emulated GPU: an injected overflow is skipped, and the scale halved, as on the CPU."""
import json, os, re, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from common import BUILD, Checks, compile_model, gen_unet, run, tmpdir, tool

c = Checks()
d = tmpdir()
plugin = os.path.join(BUILD, "fakegpu", "libmantissa_cuda_fake.so")
env = dict(os.environ, MANTISSA_CUDA_PLUGIN=plugin,
           MANTISSA_FAKE_CUDA_CACHE=os.path.join(BUILD, "fakegpu", "kernels"))
cvc = tool("cuda_vs_cpu")

unet = gen_unet(os.path.join(d, "unet.mlir"), 4, 2, 16, 2)
models = {"mlp_digits": "mlp_digits", "cnn_digits": "cnn_digits", "unet": unet}
plans = {}
for name, src in models.items():
    for prec in ("fp32", "fp16", "bf16"):
        plans[name, prec] = compile_model(src, os.path.join(d, f"{name}-{prec}.plan"), "--precision", prec,
                                          "--arch", "sm_90")

# gpu-check.sh's tolerances (its comments say why): normwise relative error per tensor, an
# absolute floor, and otherwise no farther from the f64 truth than 1.5x the CPU emulation.
TOL = {"fp32": ("1e-4", "1e-6"), "fp16": ("2e-3", "1e-6"), "bf16": ("1e-2", "2e-5")}


def compare(name, prec, steps, extra_env=None, label=""):
    tol, atol = TOL[prec]
    e = dict(env, MANTISSA_VERBOSE="1", **(extra_env or {}))
    p = run([cvc, plans[name, prec], "--steps", str(steps), "--tol", tol, "--atol", atol, "--truth",
             plans[name, "fp32"]], check=False, env=e)
    out = p.stdout + p.stderr
    where = re.findall(r"(kernels: .*|scratch of .*|compared .*)", out)
    ok = p.returncode == 0 and "host emulation" in out and "compared" in out
    c.check(ok, f"{name} {prec}{label}, {steps} steps on the emulated GPU vs the CPU (tol {tol}): "
                + ("; ".join(where[-3:]) if ok else "\n" + out[-3000:]))
    return out


# Section 1: every model and precision; two steps, so the second replays the captured graph.
for name in models:
    for prec in ("fp32", "fp16", "bf16"):
        out = compare(name, prec, 2)
        if (name, prec) == ("mlp_digits", "fp16"):
            c.check(re.search(r"kernels: (\d+) modules from the plan, \1 CUBIN sm_90", out) is not None,
                    "the kernels came from the plan's sm_90 CUBIN (the AOT path)")

# Section 1b: the convolution variants and the scratch placements, on the unet.
for var in ({"MANTISSA_CUDA_CONV": "gemm"}, {"MANTISSA_CUDA_CONV": "nhwc-w4"}, {"MANTISSA_CUDA_CONV": "auto"},
            {"MANTISSA_CUDA_NHWC_MB": "0.001"}, {"MANTISSA_CUDA_SCRATCH": "buffer"}):
    for prec in ("fp16", "bf16"):
        compare("unet", prec, 2, var, " " + " ".join(f"{k}={v}" for k, v in var.items()))

# Section 1c: the arena's free bytes set to NaN (0xff) before every step.
for name in models:
    for prec in ("fp32", "fp16"):
        compare(name, prec, 2, {"MANTISSA_CUDA_POISON": "1"}, " poisoned")

# A planted fault must fail the comparison: the emulation drops one kernel launch of the
# first step (MANTISSA_FAKE_CUDA_DROP_LAUNCH, counted over the process).
p = run([cvc, plans["mlp_digits", "fp16"], "--steps", "1", "--tol", "2e-3", "--atol", "1e-6"], check=False,
        env=dict(env, MANTISSA_FAKE_CUDA_DROP_LAUNCH="12"))
c.check(p.returncode == 1 and "dropped launch 12" in p.stderr,
        f"a dropped launch (a planted fault) fails the comparison (exit {p.returncode})")

# mantissa-run on the emulated GPU: a non-finite value injected at step 5 is skipped (the
# state after 6 steps is that after 5) and the scale halved, as on the CPU.
runs = {}
for backend in ("cpu", "cuda"):
    js = os.path.join(d, f"overflow-{backend}.json")
    run([tool("mantissa-run"), "train", plans["mlp_digits", "fp16"], "--backend", backend, "--steps", "6",
         "--quiet", "--inject-nonfinite", "5", "--json", js], env=env)
    runs[backend] = json.load(open(js))
keys = ("skipped_steps", "loss_scale")
c.check(all(runs["cuda"][k] == runs["cpu"][k] for k in keys) and runs["cpu"]["skipped_steps"] == 1,
        "injected overflow: " + ", ".join(f"{k} {runs['cuda'][k]} (CPU {runs['cpu'][k]})" for k in keys))
c.done()
