#!/usr/bin/env python3
"""fuse-elementwise changes the schedule, not the numbers: for mlp_digits, cnn_digits and a small unet
in fp32, fp16 and bf16, a fused plan and an unfused one (--no-fuse) trained for 5 steps on the same
batches on the CPU end with bit-identical parameters, buffers, optimizer and loss-scaler state.
--no-fuse also keeps emit-plan from folding convolution biases into the batch norms that read them
(input_bias), so the small unet's conv -> batch norm blocks check that fold too.

Bit-exact is the expectation, not a tolerance: only elementwise ops fuse, the fused program is the
members' programs in order with every f16/bf16 value read inside rounded where the unfused plan stored
it (fp32 values are stored exactly), so GEMM, convolution and reduction inputs are the same values.
Prints the kernel (step) counts of both plans per function."""
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


print(f"{'model':12} {'precision':9} {'function':10} {'steps unfused -> fused':>24} {'elementwise unfused -> fused':>30}")
for name, model, compile_opts, train_opts in MODELS:
    for precision in ("fp32", "fp16", "bf16"):
        states, counts = {}, {}
        for fused in (False, True):
            tag = f"{name}.{precision}.{'fused' if fused else 'unfused'}"
            plan = compile_model(model, os.path.join(d, tag + ".plan"), "--precision", precision, *compile_opts,
                                 *([] if fused else ["--no-fuse"]))
            counts[fused] = kernel_counts(plan)
            out = os.path.join(d, tag + ".safetensors")
            train(plan, "--steps", STEPS, "--no-shuffle", "--threads", "2", "--save", out, *train_opts)
            states[fused] = torch_models.read_safetensors(out)
        for fn in ("train_step", "eval_step"):
            (s0, e0), (s1, e1) = counts[False][fn], counts[True][fn]
            print(f"{name:12} {precision:9} {fn:10} {s0:>14} -> {s1:<7} {e0:>20} -> {e1:<7}")
        # cnn_digits in fp32 has no elementwise chain: conv (bias inside) -> relu -> max_pool, and the
        # updates read GEMM/reduction outputs. Every other case has one (bias add + relu, cast chains).
        fewer = counts[True]["train_step"][0] < counts[False]["train_step"][0]
        no_more = all(counts[True][f][0] <= counts[False][f][0] for f in counts[False])
        c.check(no_more and (fewer or (name, precision) == ("cnn_digits", "fp32")),
                f"{name} {precision}: fusion removes train_step kernels "
                f"({counts[False]['train_step'][0]} -> {counts[True]['train_step'][0]}) and adds none")
        A, B = states[False], states[True]
        differ = [n for n in A if n not in B or A[n].shape != B[n].shape or not np.array_equal(A[n], B[n])]
        worst = max((float(np.max(np.abs(A[n].astype(np.float64) - B[n].astype(np.float64))))
                     for n in differ if n in B and A[n].shape == B[n].shape), default=0.0)
        c.check(set(A) == set(B) and not differ,
                f"{name} {precision}: fused and unfused plans agree bit for bit in all {len(A)} tensors after "
                f"{STEPS} steps" + (f"; differ: {differ[:5]} (max abs diff {worst:g})" if differ else ""))
c.done()
