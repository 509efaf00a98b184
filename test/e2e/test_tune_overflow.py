#!/usr/bin/env python3
"""mantissa tune on a model with one layer fp16 cannot carry (test/e2e/models/fp16_overflow.mlir:
weights of scale 1e6 overflow fp16): the written policy keeps that layer in fp32 or bf16 and
demotes the others; mantissa compile reads the policy back (the plan runs "big" without fp16)."""
import json, os, re
from common import Checks, ROOT, run, tool, tmpdir, tune_table

c = Checks()
d = tmpdir()
model = os.path.join(ROOT, "test", "e2e", "models", "fp16_overflow.mlir")
policy = os.path.join(d, "policy.json")
p = run([tool("mantissa"), "tune", model, "-o", policy, "--steps", "200", "--budget", "16", "--optimizer", "sgd",
         "--lr", "0.05", "--momentum", "0.9", "--cost-batch", "65536", "--max-metric-gap", "0.02", "--threads", "1"])
print(p.stdout)
rows = tune_table(p.stdout)
by_label = {r["label"]: r for r in rows}
fp16 = by_label.get("uniform fp16 (autocast)")
c.check(fp16 is not None and fp16["gap"] > 0.5, "uniform fp16 fails on this model (the overflow is real): "
        f"gap {fp16['gap'] if fp16 else None}")
groups = json.load(open(policy)).get("groups", {})
default = json.load(open(policy))["default"]
big = groups.get("big", default)
c.check(big in ("fp32", "bf16"), f"'big' stays out of fp16: {big}")
for g in ("fc2", "head"):
    c.check(groups.get(g, default) in ("fp16", "bf16"), f"'{g}' is demoted: {groups.get(g, default)}")
m = re.search(r"candidates trained: (\d+) of budget (\d+)", p.stdout)
c.check(m is not None and int(m.group(1)) <= int(m.group(2)) == 16, f"budget accounted: {m.group(0) if m else None}")

# The policy round-trips through mantissa compile: "big" computes in what the policy says.
plan = os.path.join(d, "tuned.plan")
run([tool("mantissa"), "compile", model, "--precision", policy, "-o", plan])
listing = run([tool("mantissa"), "inspect", plan]).stdout
want = {"fp32": "f32", "bf16": "bf16"}[big]
gemms = re.findall(r"^\s*\d+ big graph.linear Gemm (\S+)", listing, re.M)
c.check(gemms != [] and all(g == want for g in gemms), f"the compiled plan's GEMMs of 'big' run in {want}: {gemms}")

# The tuner's policy edited by hand with "kinds" and "ops" still reads back, with the most specific
# entry winning (ops > groups > kinds > default): with fc2 taken out of "groups", it follows the kind
# (fp16, over the default), big keeps its group's precision, and "ops" puts head in fp32.
tuned = json.load(open(policy))
groups = {g: p for g, p in tuned.get("groups", {}).items() if g != "fc2"}
edited = dict(tuned, groups=groups, kinds={"linear": "fp16"}, ops={"head": "fp32"})
edited_path = os.path.join(d, "edited.json")
json.dump(edited, open(edited_path, "w"))
plan = os.path.join(d, "edited.plan")
run([tool("mantissa"), "compile", model, "--precision", edited_path, "-o", plan])
listing = run([tool("mantissa"), "inspect", plan]).stdout
dtype = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
for g in ("big", "fc2", "head"):
    expect = dtype[edited["ops"].get(g) or groups.get(g) or "fp16"]
    got = re.findall(rf"^\s*\d+ {g} graph.linear Gemm (\S+)", listing, re.M)
    c.check(got != [] and all(x == expect for x in got), f"hand-edited policy: {g}'s GEMMs run in {expect}: {got}")
c.done()
