#!/usr/bin/env python3
"""persist-working-copies changes where the low-precision copies of the weights live, not the numbers:
for mlp_digits, cnn_digits and a small unet in fp16 and bf16, a plan that keeps the copies between
steps (the default) and one that casts the fp32 masters every step (--no-working-copies) trained for
5 steps on the same batches on the CPU end with bit-identical parameters, buffers, optimizer and
loss-scaler state and the same held-out loss. The copies are derived state, so checkpoints do not
hold them: a run resumed from a checkpoint must make them from the loaded masters, which the resume
check (3 steps, save, 2 more from the checkpoint against 5 in one go) would catch if it did not.

Also: the default plan has one WorkingCopy tensor per parameter that the other plan casts to fp16 or
bf16 (batch norm's weights stay fp32 and have none), no cast of a parameter left in train_step or
eval_step, and fewer train_step steps than the plan without copies."""
import os, re
import numpy as np
from common import Checks, compile_model, run, small_models, tmpdir, tool, train
import torch_models

STEPS = 5
c = Checks()
d = tmpdir()
MODELS = small_models(d)


def plan_facts(plan):
    """(working copies, train_step steps, steps of either function that cast a parameter, the
    parameters they cast) from mantissa inspect."""
    out = run([tool("mantissa"), "inspect", plan, "--all-tensors"]).stdout
    copies = len(re.findall(r"^  t\d+ WorkingCopy \S+ ", out, re.M))
    params = set(re.findall(r"^  t\d+ Param (\S+) ", out, re.M))
    steps = int(re.search(r"^function train_step: (\d+) steps", out, re.M).group(1))
    param_casts, cast, cast_params = 0, False, set()
    for line in out.splitlines():
        m = re.match(r"  \d+ \S+ (\S+) ", line)
        if m:
            cast = m.group(1) == "graph.cast"
        m = re.match(r"\s+in\d+ = t\d+\(([^)]*)\)", line)
        if cast and m and m.group(1) in params:
            param_casts += 1
            cast_params.add(m.group(1))
            cast = False
    return copies, steps, param_casts, cast_params


def state(plan, tag, *opts):
    out = os.path.join(d, tag + ".safetensors")
    j = train(plan, "--no-shuffle", "--threads", "2", "--save", out, *opts, json_out=out + ".json")
    return torch_models.read_safetensors(out), j


for name, model, compile_opts, train_opts in MODELS:
    for precision in ("fp16", "bf16"):
        tag = f"{name}.{precision}"
        kept = compile_model(model, os.path.join(d, tag + ".plan"), "--precision", precision, *compile_opts)
        cast_plan = compile_model(model, os.path.join(d, tag + ".cast.plan"), "--precision", precision,
                             *compile_opts, "--no-working-copies")
        (copies, steps, casts, _), (copies0, steps0, casts0, cast) = plan_facts(kept), plan_facts(cast_plan)
        c.check(copies == len(cast) > 0 and copies0 == 0 and casts == 0 and steps < steps0,
                f"{tag}: {copies} working copies, one per parameter cast to {precision} without them; steps "
                f"that cast a parameter {casts0} -> {casts}; train_step {steps0} -> {steps} steps")
        A, ja = state(kept, tag + ".kept", "--steps", str(STEPS), *train_opts)
        B, jb = state(cast_plan, tag + ".cast", "--steps", str(STEPS), *train_opts)
        differ = [n for n in A if n not in B or not np.array_equal(A[n], B[n])]
        c.check(set(A) == set(B) and not differ and not any(":" in n for n in A),
                f"{tag}: with and without working copies, all {len(A)} checkpointed tensors agree bit for "
                f"bit after {STEPS} steps, and none of them is a copy" + (f"; differ: {differ[:5]}" if differ else ""))
        ha, hb = ja.get("eval", {}), jb.get("eval", {})
        c.check(ha == hb and ha, f"{tag}: the same held-out figures ({ha})")
        # Resume: 3 steps and a checkpoint, then 2 more from it.
        ck = os.path.join(d, tag + ".ck")
        train(kept, "--steps", "3", "--no-shuffle", "--threads", "2", "--checkpoint", ck, "--every", "3",
              *train_opts)
        R, jr = state(kept, tag + ".resumed", "--steps", str(STEPS), "--checkpoint", ck, "--every", "3",
                      "--resume", *train_opts)
        differ = [n for n in A if n not in R or not np.array_equal(A[n], R[n])]
        # Deterministic training: a resume that began at step 0 would end equal too, so assert where it began.
        c.check(jr.get("start_step") == 3 and not differ, f"{tag}: resumed after 3 steps (start_step "
                f"{jr.get('start_step')}), the run ends as the uninterrupted one" + (f"; differ: {differ[:5]}" if differ else ""))
c.done()
