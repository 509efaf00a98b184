#!/usr/bin/env python3
"""mantissa tune's per-group gradient error on test/e2e/models/grad_underflow.mlir, a digits classifier
whose layer "fc1" has weight gradients of about 1e-8 (its input is scaled by 1e-5): below fp16's
smallest subnormal unless the loss is scaled. With --loss-scaling none, demoting fc1 alone to fp16
loses most of its weight gradient (large relative error against fp32 from the same state and batches),
while fc1 in bf16 and fc2 and head in either precision stay close to fp32 (and the fp32 run's own gradients
show the cause: most of fc1's underflow fp16 at scale 1); the short run's metric
alone does not reject fc1=fp16, the gradient-underflow bound (--max-grad-underflow, 10 %) does, and the
written policy keeps fc1 out of fp16.
With dynamic loss scaling (the default) the same demotion's gradient error is small: the error was
the underflow. The printed table and the manifest's JSON agree."""
import json, os
from common import Checks, ROOT, run, tool, tmpdir, sensitivity_table

c = Checks()
d = tmpdir()
model = os.path.join(ROOT, "test", "e2e", "models", "grad_underflow.mlir")
common = ["--steps", "200", "--budget", "12", "--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.9",
          "--cost-batch", "65536", "--max-metric-gap", "0.02", "--threads", "1"]
GRAD_BOUND = 0.1  # "small": rounding


def tune(name, *opts):
    policy, emit = os.path.join(d, f"{name}.json"), os.path.join(d, name)
    p = run([tool("mantissa"), "tune", model, "-o", policy, "--emit-candidates", emit, *common, *opts])
    print(p.stdout)
    rows = {(r["group"], r["precision"]): r for r in sensitivity_table(p.stdout)}
    manifest = json.load(open(os.path.join(emit, "manifest.json")))
    return rows, manifest, json.load(open(policy))


rows, manifest, policy = tune("no-scaling", "--loss-scaling", "none")
c.check(set(rows) == {(g, p) for g in ("fc1", "fc2", "head") for p in ("fp16", "bf16")},
        f"the sensitivity table has every group in fp16 and bf16: {sorted(rows)}")
fc1 = rows.get(("fc1", "fp16"), {})
c.check((fc1.get("grad@1") or 0) > 0.5,
        f"fc1=fp16 without loss scaling loses most of its weight gradient: error {fc1.get('grad@1')} > 0.5")
c.check((fc1.get("grad-mean") or 0) > 0.3, f"... and over the run: mean error {fc1.get('grad-mean')} > 0.3")
# The cause, from the fp32 run's gradients alone (common/Float16.h's rounding): most of fc1's weight
# gradient is below fp16's range at scale 1, almost none of fc2's and head's.
c.check((fc1.get("grad-unf") or 0) > 50, f"{fc1.get('grad-unf')}% of fc1's fp32 weight gradient underflows fp16 (> 50%)")
for g in ("fc2", "head"):
    u = rows.get((g, "fp16"), {}).get("grad-unf")
    c.check(u is not None and u < 1, f"{u}% of {g}'s fp32 parameter gradients underflow fp16 (< 1%)")
for key in [("fc1", "bf16"), ("fc2", "fp16"), ("fc2", "bf16"), ("head", "fp16"), ("head", "bf16")]:
    r = rows.get(key, {})
    # in@1: the gradients of the groups before it (fc1 has none), which its input's gradient feeds.
    c.check(r.get("grad@1") is not None and r["grad@1"] < GRAD_BOUND and (r["in@1"] or 0) < GRAD_BOUND
            and (r["in@1"] is not None) == (key[0] != "fc1"),
            f"{key[0]}={key[1]}: gradient error {r.get('grad@1')}, of the groups before it {r.get('in@1')}, "
            f"< {GRAD_BOUND}")
c.check(fc1.get("gap") is not None and fc1["gap"] <= 0.02 and fc1.get("verdict") == "gradients underflow fp16",
        f"fc1=fp16's held-out gap {fc1.get('gap')} is within the bound: the gradient underflow rejects it "
        f"({fc1.get('verdict')})")
fc1_precision = policy.get("groups", {}).get("fc1", policy["default"])
c.check(fc1_precision in ("fp32", "bf16"), f"the written policy keeps fc1 out of fp16: {fc1_precision}")

# The manifest's JSON carries the same numbers as the table (printed to 3 significant digits).
# The same (group, precision) keys on both sides, and fc1=fp16 among the rows compared: with keys
# that did not match, the comparison below would run over nothing.
sens = {(s["group"], s["precision"]): s for s in manifest.get("sensitivity", [])}
compared = [k for k, r in rows.items() if r.get("grad@1") is not None and k in sens]
agree = all(abs(sens[k]["grad_error_first"] - rows[k]["grad@1"]) <= 0.0051 * abs(rows[k]["grad@1"]) + 1e-12 and
            abs(sens[k]["grad_error_mean"] - rows[k]["grad-mean"]) <= 0.0051 * abs(rows[k]["grad-mean"]) + 1e-12
            for k in compared)
c.check(set(sens) == set(rows) and ("fc1", "fp16") in compared and agree,
        f"manifest.json's sensitivity matches the table: keys {sorted(sens)}, {len(compared)} rows compared")
fc1_sens = sens.get(("fc1", "fp16"), {})
index = fc1_sens.get("candidate")
cand = manifest["candidates"][index - 1] if isinstance(index, int) and 1 <= index <= len(manifest["candidates"]) else {}
first = cand.get("grad_error", {}).get("fc1", {}).get("first")
c.check(first is not None and first == fc1_sens.get("grad_error_first"),
        f"fc1=fp16's candidate {index} ({cand.get('label')}) in manifest.json has its grad_error: {first}")

# Dynamic loss scaling carries fc1's gradients in fp16.
rows, _, _ = tune("dynamic")
fc1 = rows.get(("fc1", "fp16"), {})
c.check(fc1.get("grad@1") is not None and fc1["grad@1"] < GRAD_BOUND,
        f"fc1=fp16 with dynamic loss scaling: gradient error {fc1.get('grad@1')} < {GRAD_BOUND}")
c.check(fc1.get("grad-unf") is not None and fc1["grad-unf"] < 1,
        f"at the initial loss scale 65536, {fc1.get('grad-unf')}% of fc1's fp32 weight gradient underflows (< 1%)")
c.done()
