#!/usr/bin/env python3
"""inspect --cost --fit: kernel times generated from planted per-class efficiencies (each step's
roofline / e + the launch overhead) for a small unet in fp16 and mlp_digits in fp32; the fit gives
back each planted efficiency, and the fitted description then models every plan's total as the
"measured" one, where the roofline alone is off. With watts per kernel (planted per op class, as a
profile's calibration gives them) the op classes' powers are fitted too. Malformed measurements are
one clear error.
(A unet w16 L3 at 128x128, batch 8, fp16, and mlp in fp32: large enough that the roofline, not the
launch overhead, is most of their modelled time.)"""
import json, os
from common import Checks, ROOT, gen_unet, run, tmpdir, tool

c = Checks()
d = tmpdir()
LAUNCH = 4e-6  # launch_overhead_s of the built-in h100
PLANTED = {"Conv2d.Forward.tensor": 0.11, "Conv2d.BackwardInput.tensor": 0.09,
           "Conv2d.BackwardWeight.tensor": 0.06, "Conv2d.BackwardInput.fp32": 0.3,
           "Gemm.fp32": 0.5, "BatchNorm": 0.4, "BatchNormBackward": 0.3, "Elementwise": 0.8}
WATTS = {"tensor": 612.0, "fp32": 545.0, "memory": 333.0}


def compile_plan(model, name, *opts):
    plan = os.path.join(d, name + ".plan")
    src = model if model.endswith(".mlir") else os.path.join(ROOT, "models", model + ".mlir")
    run([tool("mantissa"), "compile", src, "-o", plan, "--arch", "none", *opts])
    return plan


def cost(plan, device="h100"):
    out = os.path.join(d, "cost.json")
    run([tool("mantissa-run"), "inspect", "--cost", device, plan, "--json", out])
    return json.load(open(out))


unet = gen_unet(os.path.join(d, "unet.mlir"), 16, 3, 128, 8)
plans = [compile_plan(unet, "unet16", "--precision", "fp16"), compile_plan("mlp", "mlp32")]
measured, total, joules = [], {}, {}
for plan in plans:
    steps = []
    for s in cost(plan)["steps"]:
        e = PLANTED.get(s["cost_class"], 1.0)
        steps.append({"index": s["index"], "seconds": (s["seconds"] - LAUNCH) / e + LAUNCH,
                      "watts": WATTS[s["class"]]})
    measured.append({"plan": plan, "steps": steps})
    total[plan] = sum(s["seconds"] for s in steps)
    joules[plan] = sum(s["seconds"] * s["watts"] for s in steps)
classes = {s["cost_class"] for p in plans for s in cost(p)["steps"]}
c.check({"Conv2d.Forward.tensor", "Gemm.fp32", "Elementwise", "BatchNorm"} <= classes,
        f"the plans' kernels fall into the planted classes and others: {sorted(classes)}")
mfile = os.path.join(d, "measured.json")
json.dump({"plans": measured}, open(mfile, "w"))
fitted = os.path.join(d, "h100-fitted.json")
out = run([tool("mantissa-run"), "inspect", "--cost", "h100", "--fit", mfile, "-o", fitted]).stdout
print(out)
fit = json.load(open(fitted))
eff = fit["efficiency"]
for cls, w in WATTS.items():
    c.check(abs(fit["power_w"][cls] - w) <= 1e-4 * w, f"{cls} power: fitted {fit['power_w'][cls]} W (planted {w:g})")
for cls, e in PLANTED.items():
    if cls in classes:
        c.check(abs(eff.get(cls, 0) - e) <= 1e-4 * e, f"{cls}: fitted efficiency {eff.get(cls)} (planted {e})")
    else:
        print(f"SKIP {cls}: no kernel of this class in the two plans, so nothing to fit (planted {e})")
for plan in plans:
    j = cost(plan, fitted)["joules"]
    c.check(abs(j - joules[plan]) <= 1e-4 * joules[plan],
            f"{os.path.basename(plan)}: fitted model {j:.4f} J/step against the measured {joules[plan]:.4f}")
    before, after = cost(plan)["seconds"], cost(plan, fitted)["seconds"]
    c.check(abs(after - total[plan]) <= 1e-4 * total[plan] and abs(before - total[plan]) > 0.1 * total[plan],
            f"{os.path.basename(plan)}: fitted model {after * 1e3:.4f} ms/step against the measured "
            f"{total[plan] * 1e3:.4f} (roofline alone {before * 1e3:.4f})")

bad = os.path.join(d, "bad.json")
json.dump({"plans": [{"plan": plans[0], "steps": [{"index": 0, "seconds": 1e-3, "watts": -5}]}]}, open(bad, "w"))
p = run([tool("mantissa-run"), "inspect", "--cost", "h100", "--fit", bad, "-o", fitted], check=False)
c.check(p.returncode != 0 and '"watts" must be a power > 0' in p.stderr, f"a negative power is one error: {p.stderr.strip()}")
json.dump({"plans": [{"plan": plans[0], "steps": [{"index": 100000, "seconds": 1e-3}]}]}, open(bad, "w"))
p = run([tool("mantissa-run"), "inspect", "--cost", "h100", "--fit", bad, "-o", fitted], check=False)
c.check(p.returncode != 0 and "no step 100000" in p.stderr and p.stderr.count("\n") == 1,
        f"a step the plan does not have is one error: {p.stderr.strip()}")
json.dump({"plans": [{"plan": plans[0], "steps": [{"index": 0, "seconds": "fast"}]}]}, open(bad, "w"))
p = run([tool("mantissa-run"), "inspect", "--cost", "h100", "--fit", bad, "-o", fitted], check=False)
c.check(p.returncode != 0 and 'plans[0].steps[0]: "seconds" is string, expected number' in p.stderr,
        f"a time that is not a number is one error: {p.stderr.strip()}")
c.done()
