#!/usr/bin/env python3
"""mantissa inspect --numerics: the logit gradients of test/e2e/models/underflow.mlir (about 1e-8)
underflow fp16 at loss scale 1 but not at 65536, and never bf16; the activations of
fp16_overflow.mlir's "big" layer (about 1e6) overflow fp16 but not bf16, and its other layers
neither."""
import os, re
from common import Checks, ROOT, run, tool, tmpdir

c = Checks()
d = tmpdir()
ROW = re.compile(r"^t\d+\s+(\S+) (\S+)\s.*?\s([0-9.]+)%\s+([0-9.]+)%\s+([0-9.]+)%\s+([0-9.]+)%$")


def numerics(model, *opts):
    plan = os.path.join(d, os.path.basename(model) + ".plan")
    run([tool("mantissa"), "compile", os.path.join(ROOT, "test", "e2e", "models", model), "-o", plan])
    out = run([tool("mantissa"), "inspect", "--numerics", plan, "--steps", "3", *opts]).stdout
    print(out)
    rows = {}
    for line in out.splitlines():
        m = ROW.match(line)
        if m:
            rows[m.group(1)] = dict(zip(("f16_unf", "f16_ovf", "bf16_unf", "bf16_ovf"), map(float, m.groups()[2:])))
    return rows


plain = numerics("underflow.mlir")
scaled = numerics("underflow.mlir", "--loss-scale", "65536")
key = next((k for k in plain if k.startswith("softmax_cross_entropy_backward")), None)
c.check(key is not None, "the logit gradient (softmax_cross_entropy_backward) is listed")
if key:
    c.check(plain[key]["f16_unf"] > 50, f"logit gradients underflow fp16 at scale 1: {plain[key]['f16_unf']}%")
    c.check(scaled[key]["f16_unf"] == 0, f"and not at scale 65536: {scaled[key]['f16_unf']}%")
    c.check(plain[key]["bf16_unf"] == 0, f"nor bf16 at scale 1: {plain[key]['bf16_unf']}%")

big = numerics("fp16_overflow.mlir")
c.check("big" in big and big["big"]["f16_ovf"] > 50 and big["big"]["bf16_ovf"] == 0,
        f"'big' overflows fp16, not bf16: {big.get('big')}")
c.check("fc2" in big and big["fc2"]["f16_ovf"] == 0, f"'fc2' does not overflow fp16: {big.get('fc2')}")

# From a checkpoint: the steps count from 0, so one more step runs after step 3.
plan = os.path.join(d, "underflow.mlir.plan")
ckpt = os.path.join(d, "ckpt.safetensors")
run([tool("mantissa-run"), "train", plan, "--steps", "3", "--quiet", "--save", ckpt])
out = run([tool("mantissa"), "inspect", "--numerics", plan, "--load", ckpt, "--steps", "4"]).stdout
c.check("after 4 training steps" in out and "softmax_cross_entropy_backward" in out,
        "inspect --numerics from a checkpoint")
p = run([tool("mantissa"), "inspect", "--numerics", plan, "--load", ckpt, "--steps", "3"], check=False)
c.check(p.returncode != 0 and "no training step ran" in p.stderr, "a checkpoint with no step left to run is an error")
c.done()
