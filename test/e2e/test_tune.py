#!/usr/bin/env python3
"""mantissa tune on cnn_digits (argument: cnn) or a small unet (argument: unet) on the CPU: the written policy, compiled and
trained afresh (mantissa compile + mantissa-run train, as a user would), meets the metric bound
against fp32 on held-out data; its modelled cost is below all-fp32's and no worse than the
autocast default (uniform fp16); the table and the SVG are written. Then the cluster path:
--emit-candidates, mantissa-run measure (CPU here), tune --select."""
import json, os, sys
from common import Checks, ROOT, gen_unet, run, tool, tmpdir, train, tune_table

c = Checks()
d = tmpdir()


def tune_and_check(name, model, bound, tune_opts, compile_opts, train_opts, metric, emit=None):
    policy, svg = os.path.join(d, f"{name}.json"), os.path.join(d, f"{name}.svg")
    # One thread per process: ctest runs two tests at once on two cores.
    args = [tool("mantissa"), "tune", model, "-o", policy, "--plot", svg, "--max-metric-gap", str(bound),
            "--threads", "1", *tune_opts, *compile_opts]
    if emit:
        args += ["--emit-candidates", emit]
    p = run(args)
    print(p.stdout)
    rows = tune_table(p.stdout)
    by_label = {r["label"]: r for r in rows}
    chosen = [r for r in rows if r["chosen"]]
    c.check(len(chosen) == 1 and "fp32" in by_label and "uniform fp16 (autocast)" in by_label,
            f"{name}: the table shows the chosen policy, fp32 and the autocast default")
    if len(chosen) != 1:
        return p
    ch, fp32, amp = chosen[0], by_label["fp32"], by_label["uniform fp16 (autocast)"]
    c.check(ch["ms"] < fp32["ms"], f"{name}: modelled {ch['ms']} ms/step < fp32's {fp32['ms']}")
    c.check(ch["ms"] <= amp["ms"], f"{name}: modelled {ch['ms']} ms/step <= autocast default's {amp['ms']}")
    c.check(os.path.getsize(svg) > 500 and open(svg).read().startswith("<svg"), f"{name}: SVG plot written")

    # Independently of the tuner's own runs: compile the policy file it wrote and train it.
    results = {}
    for prec in ("fp32", policy):
        plan = os.path.join(d, f"{name}-{'fp32' if prec == 'fp32' else 'tuned'}.plan")
        run([tool("mantissa"), "compile", model, "--precision", prec, "-o", plan, *compile_opts])
        s = train(plan, *train_opts, "--threads", "1", json_out=plan + ".json")
        results["fp32" if prec == "fp32" else "tuned"] = s["eval"][metric]
    if metric == "accuracy":
        gap = results["fp32"] - results["tuned"]
    else:
        gap = (results["tuned"] - results["fp32"]) / results["fp32"]
    c.check(gap <= bound, f"{name}: held-out {metric} fp32 {results['fp32']:.4f}, tuned {results['tuned']:.4f}: "
            f"gap {gap:+.4f} <= {bound}")
    return p


which = sys.argv[1] if len(sys.argv) > 1 else "cnn"
adam = ["--optimizer", "adam", "--lr", "0.003", "--seed", "3"]
if which == "unet":
    unet = gen_unet(os.path.join(d, "unet_tiny.mlir"), 4, 1, 16, 8)
    nowcast = ["--data", "nowcast", "--train-samples", "128", "--held-out-samples", "64"]
    uemit = os.path.join(d, "unet-candidates")
    tune_and_check("unet w4 L1 16x16", unet, 0.05, ["--steps", "30", "--final-steps", "30", "--budget", "20",
                                                           "--cost-batch", "8192", *nowcast],
                   adam, [*nowcast, "--steps", "80", "--seed", "3"], "mse", emit=uemit)
    # The plans the tuner trains keep each convolution's bias add (its sensitivity reads
    # the group's output with the bias); the priced ones fold it into the batch norms.
    steps = lambda plan: run([tool("mantissa"), "inspect", os.path.join(uemit, plan)]).stdout
    trained, priced = steps("candidate-0.plan"), steps("candidate-0-cost.plan")
    c.check(" down.0.c1.bias_add " in trained and " down.0.c1.bias_add " not in priced,
            "unet: the trained candidate plans store down.0.c1 with its bias; the priced ones fold it")
    c.done()

cnn = os.path.join(ROOT, "models", "cnn_digits.mlir")
emit = os.path.join(d, "candidates")
tune_and_check("cnn_digits", cnn, 0.01, ["--steps", "150", "--final-steps", "150", "--budget", "12",
                                          "--cost-batch", "4096"], adam,
               ["--data", "digits", "--steps", "200", "--seed", "3"], "accuracy", emit=emit)

# The cluster path on cnn_digits' candidates: measure them (CPU here), select from measurements.
manifest = json.load(open(os.path.join(emit, "manifest.json")))
# The priced plans are at --cost-batch 4096, more than digits holds: measure the trained ones.
plans = [os.path.join(emit, m["train_plan"]) for m in manifest["candidates"]]
c.check(len(plans) >= 4 and all(os.path.exists(p) for p in plans), f"{len(plans)} candidate plans and a manifest")
results = os.path.join(d, "results.json")
run([tool("mantissa-run"), "measure", *plans, "--json", results, "--steps", "3", "--warmup", "1", "--backend", "cpu",
     "--threads", "1"])
r = json.load(open(results))
c.check(len(r["plans"]) == len(plans) and all(p["ms_per_step"] > 0 for p in r["plans"]),
        f"measured {len(r['plans'])} plans on {r['device']}")
selected = os.path.join(d, "selected.json")
p = run([tool("mantissa"), "tune", "--select", results, "-o", selected])
print(p.stdout)
rows = tune_table(p.stdout)
fastest_ok = min((m for m in manifest["candidates"] if m["passes"]),
                 key=lambda m: next(x["ms_per_step"] for x in r["plans"] if x["plan"].endswith("/" + m["train_plan"])))
chosen = [row for row in rows if row["chosen"]]
c.check("measured time" in p.stdout and len(chosen) == 1 and chosen[0]["label"] == fastest_ok["label"][:44],
        f"--select picks the fastest measured candidate within the bound: {fastest_ok['label']}")
c.check(json.load(open(selected)) == json.load(open(os.path.join(emit, fastest_ok["policy"]))),
        "--select writes that candidate's policy")
c.done()
