#!/usr/bin/env python3
"""Loss scaling: gradients that underflow fp16 at scale 1 (zero gradients, no learning) learn
with dynamic scaling; an injected overflow skips that step (parameters and optimizer state
unchanged) and halves the scale; the scale grows after the growth interval."""
import os
import numpy as np
from common import Checks, compile_model, tmpdir, train
import torch_models

c = Checks()
d = tmpdir()
here = os.path.dirname(os.path.abspath(__file__))
model = os.path.join(here, "models", "underflow.mlir")
sgd = ["--optimizer", "sgd", "--lr", "50000", "--precision", "fp16", "--seed", "1"]


def state(path):
    return torch_models.read_safetensors(path)


# 1. Scale 1 (static): every gradient underflows, nothing moves.
p1 = compile_model(model, os.path.join(d, "s1.plan"), *sgd, "--loss-scale", "1")
init = os.path.join(d, "init.safetensors")
train(p1, "--steps", "0", "--save", init)
s1 = train(p1, "--steps", "200", "--data", "digits", "--save", os.path.join(d, "s1.safetensors"),
           json_out=os.path.join(d, "s1.json"))
a, b = state(init), state(os.path.join(d, "s1.safetensors"))
c.check(all(np.array_equal(a[n], b[n]) for n in ["fc.weight", "fc.bias"]),
        "fp16 at loss scale 1: gradients underflow to zero, parameters unchanged after 200 steps")
print(f"  scale 1: held-out accuracy {s1['eval']['accuracy']:.3f}")

# 2. Dynamic scaling: the same model learns.
pd = compile_model(model, os.path.join(d, "dyn.plan"), *sgd, "--loss-scale", "dynamic")
sd = train(pd, "--steps", "200", "--data", "digits", json_out=os.path.join(d, "dyn.json"))
print(f"  dynamic: held-out accuracy {sd['eval']['accuracy']:.3f}, loss scale {sd['loss_scale']}")
c.check(sd["eval"]["accuracy"] >= 0.85 and s1["eval"]["accuracy"] < 0.5,
        f"dynamic scaling learns: accuracy {sd['eval']['accuracy']:.3f} (scale 1: {s1['eval']['accuracy']:.3f})")

# 3. An injected overflow at step 5 is skipped: the state after 6 steps equals the state after 5,
#    the scale is halved, one step is counted as skipped.
pm = compile_model("mlp_digits", os.path.join(d, "mlp.plan"), "--precision", "fp16", "--loss-scale", "dynamic",
                   "--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.9")
a5 = os.path.join(d, "a5.safetensors"); b6 = os.path.join(d, "b6.safetensors")
ja = train(pm, "--steps", "5", "--save", a5, json_out=os.path.join(d, "a5.json"))
jb = train(pm, "--steps", "6", "--inject-nonfinite", "5", "--save", b6, json_out=os.path.join(d, "b6.json"))
A, B = state(a5), state(b6)
same = all(np.array_equal(A[n], B[n]) for n in A if n not in ("scaler.scale", "scaler.growth_tracker", "trainer.step"))
c.check(same, "overflow at step 5: parameters, momentum buffers and optimizer step unchanged")
c.check(float(B["scaler.scale"]) == float(A["scaler.scale"]) / 2 and jb["skipped_steps"] == 1,
        f"overflow halves the scale: {float(A['scaler.scale'])} -> {float(B['scaler.scale'])}, skipped {jb['skipped_steps']}")

# 4. Growth: with growth interval 10, 25 finite steps double the scale twice.
pg = compile_model("mlp_digits", os.path.join(d, "grow.plan"), "--precision", "fp16", "--loss-scale", "dynamic",
                   "--growth-interval", "10", "--optimizer", "sgd", "--lr", "0.05")
jg = train(pg, "--steps", "25", json_out=os.path.join(d, "g.json"))
c.check(jg["skipped_steps"] == 0 and jg["loss_scale"] == 65536.0 * 4,
        f"scale grows x2 every 10 finite steps: 65536 -> {jg['loss_scale']} after 25 steps (skipped {jg['skipped_steps']})")
c.done()
