#!/usr/bin/env python3
"""fuse-elementwise changes the schedule, not the numbers: for mlp_digits, cnn_digits and a small unet
in fp32, fp16 and bf16, a fused plan without GEMM epilogues (--no-gemm-epilogue) and an unfused one
(--no-fuse) trained for 5 steps on the same batches on the CPU end with bit-identical parameters,
buffers, optimizer and loss-scaler state. --no-fuse also keeps emit-plan from folding convolution biases
into the batch norms that read them (input_bias), so the small unet's conv -> batch norm blocks check
that fold too.

Bit-exact is the expectation, not a tolerance: only elementwise ops fuse, the fused program is the
members' programs in order with every f16/bf16 value read inside rounded where the unfused plan stored
it (fp32 values are stored exactly), so GEMM, convolution and reduction inputs are the same values.

The default plan also moves each linear's bias (and relu) into its GEMM's epilogue, which rounds once
where the unfused plan rounds the product and then the sum: in fp32 that is the same bits (checked
here), in fp16/bf16 one rounding fewer (CudaBackendTest's CpuGemmEpilogue checks those bits against an
exact reference; here the trained parameters move from the unfused plan's by at most 3x what the
precision itself moves them from fp32's: the size of a rounding's perturbation).
Prints the kernel (step) counts of the plans per function."""
import os, re
import numpy as np
from common import Checks, compile_model, run, small_models, tmpdir, tool, train
import torch_models

STEPS = "5"
c = Checks()
d = tmpdir()
MODELS = small_models(d)


def kernel_counts(plan):
    """{function: (steps, elementwise steps)} from mantissa inspect."""
    out = run([tool("mantissa"), "inspect", plan]).stdout
    counts, fn = {}, None
    for line in out.splitlines():
        m = re.match(r"function (\w+): (\d+) steps", line)
        if m:
            fn = m.group(1)
            counts[fn] = [int(m.group(2)), 0]
        elif fn and re.match(r"\s+\d+ \S+ \S+ Elementwise ", line):
            counts[fn][1] += 1
    return counts


def max_rel_diff(A, B):
    """The largest relative L2 distance of a tensor of B from A's (inf if the names or shapes differ)."""
    if set(A) != set(B) or any(A[n].shape != B[n].shape for n in A):
        return float("inf")
    worst = 0.0
    for n in A:
        a, b = A[n].astype(np.float64), B[n].astype(np.float64)
        worst = max(worst, float(np.linalg.norm(a - b) / max(np.linalg.norm(a), 1e-30)))
    return worst


def param_distance(A, B):
    """The relative L2 distance of B's parameters from A's, all of them as one vector (the names both
    hold that are parameters: not optimizer or loss-scaler state)."""
    names = sorted(n for n in A if n in B and not n.startswith(("scaler.", "optimizer.")) and "buffer" not in n
                   and not n.endswith((".exp_avg", ".exp_avg_sq", "running_mean", "running_var", "num_batches_tracked")))
    a = np.concatenate([A[n].astype(np.float64).ravel() for n in names])
    b = np.concatenate([B[n].astype(np.float64).ravel() for n in names])
    return float(np.linalg.norm(a - b) / np.linalg.norm(a))


VARIANTS = {"unfused": ["--no-fuse"], "fused": ["--no-gemm-epilogue"], "default": []}
print(f"{'model':12} {'precision':9} {'function':10} {'steps unfused -> fused -> epilogues':>36} "
      f"{'elementwise unfused -> fused -> epilogues':>42}")
for name, model, compile_opts, train_opts in MODELS:
    for precision in ("fp32", "fp16", "bf16"):
        states, all_counts = {}, {}
        for variant, opts in VARIANTS.items():
            tag = f"{name}.{precision}.{variant}"
            plan = compile_model(model, os.path.join(d, tag + ".plan"), "--precision", precision, *compile_opts, *opts)
            all_counts[variant] = kernel_counts(plan)
            out = os.path.join(d, tag + ".safetensors")
            train(plan, "--steps", STEPS, "--no-shuffle", "--threads", "2", "--save", out, *train_opts)
            states[variant] = torch_models.read_safetensors(out)
        for fn in ("train_step", "eval_step"):
            (s0, e0), (s1, e1), (s2, e2) = (all_counts[v][fn] for v in VARIANTS)
            print(f"{name:12} {precision:9} {fn:10} {s0:>14} -> {s1:<7} -> {s2:<9} {e0:>20} -> {e1:<7} -> {e2:<7}")
        counts = {False: all_counts["unfused"], True: all_counts["fused"]}
        # Epilogues remove kernels where a model has a linear (not cnn_digits' or the unet's convolutions).
        has_linear = name.startswith("mlp")
        c.check(all(all_counts["default"][f][0] <= counts[True][f][0] for f in counts[True]) and
                (not has_linear or all_counts["default"]["train_step"][0] < counts[True]["train_step"][0]),
                f"{name} {precision}: GEMM epilogues remove train_step kernels "
                f"({counts[True]['train_step'][0]} -> {all_counts['default']['train_step'][0]}) and add none")
        if precision == "fp32":
            fp32_state = states["unfused"]
            diff = max_rel_diff(states["unfused"], states["default"])
            c.check(diff == 0.0, f"{name} fp32: with GEMM epilogues, the same bits as unfused after {STEPS} steps "
                                 f"(max relative difference {diff:g})")
        else:
            # One rounding fewer per linear perturbs training by about what a rounding does; a wrong
            # epilogue (a bias or relu lost or doubled) would move it by orders of magnitude more.
            diff = param_distance(states["unfused"], states["default"])
            noise = param_distance(fp32_state, states["unfused"])
            c.check(diff <= 3 * noise, f"{name} {precision}: with GEMM epilogues (one rounding fewer per linear), "
                                       f"the parameters are {diff:.3g} from unfused after {STEPS} steps (relative L2), "
                                       f"at most 3x {precision}'s own distance from fp32 ({noise:.3g})")
        A, B = states["unfused"], states["fused"]
        differ = [n for n in A if n not in B or A[n].shape != B[n].shape or not np.array_equal(A[n], B[n])]
        worst = max((float(np.max(np.abs(A[n].astype(np.float64) - B[n].astype(np.float64))))
                     for n in differ if n in B and A[n].shape == B[n].shape), default=0.0)
        c.check(set(A) == set(B) and not differ,
                f"{name} {precision}: fused and unfused plans agree bit for bit in all {len(A)} tensors after "
                f"{STEPS} steps" + (f"; differ: {differ[:5]} (max abs diff {worst:g})" if differ else ""))
c.done()
