#!/usr/bin/env python3
"""The memory plan, checked on the CPU: temps in one arena at their planned offsets
(MANTISSA_CPU_ARENA=1, as the CUDA backend places them), so that the temps the plan
lets share bytes (by liveness, and a result in place of an input that dies at its step)
really share them. Trained for 5 steps from the same batches, the arena run must end
with every parameter, buffer, optimizer and loss-scaler tensor bit-identical to the
default run (one array per tensor). A memory plan that overlapped two live temps, or an
in-place result whose kernel read an element after writing another, would change them.
Again with MANTISSA_CPU_ARENA=poison: before each step, every arena element that no temp
live at that step holds is NaN (where the CUDA backend puts a step's scratch); a kernel
that read a temp before writing it, or outside its liveness, would spread the NaN.

Models: mlp_digits, cnn_digits and a small unet (concatenations, batch norm + relu,
max pooling, the MSE loss) in fp32, fp16 and bf16; prints the arena against the sum of
the temps."""
import os, re
import numpy as np
from common import Checks, compile_model, run, small_models, tmpdir, tool
import torch_models

STEPS = "5"
c = Checks()
d = tmpdir()
MODELS = small_models(d)

for name, model, compile_opts, train_opts in MODELS:
    for precision in ("fp32", "fp16", "bf16"):
        tag = f"{name}.{precision}"
        plan = compile_model(model, os.path.join(d, tag + ".plan"), "--precision", precision, *compile_opts)
        out = run([tool("mantissa"), "inspect", plan]).stdout
        m = re.search(r"temp arena: (\d+) bytes for (\d+) bytes of temps", out)
        states = {}
        for arena in ("0", "1", "poison"):
            path = os.path.join(d, f"{tag}.arena{arena}.safetensors")
            env = dict(os.environ, MANTISSA_CPU_ARENA=arena)
            run([tool("mantissa-run"), "train", plan, "--quiet", "--steps", STEPS, "--no-shuffle",
                 "--threads", "2", "--save", path, *train_opts], env=env)
            states[arena] = torch_models.read_safetensors(path)
        A = states["0"]
        for arena, how in (("1", ""), ("poison", ", with its free bytes NaN before each step")):
            B = states[arena]
            differ = [n for n in A if n not in B or A[n].shape != B[n].shape or not np.array_equal(A[n], B[n])]
            c.check(set(A) == set(B) and not differ,
                    f"{name} {precision}: temps in a {m.group(1)}-byte arena (for {m.group(2)} bytes of temps){how} "
                    f"give the same {len(A)} tensors bit for bit after {STEPS} steps"
                    + (f"; differ: {differ[:5]}" if differ else ""))
c.done()
