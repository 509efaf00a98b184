"""The GPU benchmark scripts' --smoke mode on the CPU (ctest label `bench`): bench/gpu_bench.py,
bench/unet_energy_study.py, bench/energy_check.py and bench/gpu_tune.py run their orchestration
(arguments, mantissa-run, its JSON, the tables, the ratios, the A/B variants, the study's table
and JSON, the energy check's profile, timed runs and reports, the tuner check's measure runs and
candidates) against a small carry assembled here, so that a broken script fails in CI and not
in a GPU session.

The carry: bin/mantissa-run (a link to the build's) and the few plans the smoke runs need,
compiled with --arch none from the tiny models the scripts' SMOKE tables name. Oracles:
mantissa-run's own JSON for the same plan and data (the final loss the script reports), the
PyTorch models' parameter counts by hand, and "not measured" (never a figure) for every
energy or memory that this machine cannot measure.
"""
import json, math, os, shutil, subprocess, sys, time, xml.etree.ElementTree as ET
from common import BUILD, ROOT, compile_model, gen_unet, run, tool, train

import energy_check, gpu_bench, gpu_tune, unet_energy_study  # bench/ is on sys.path (common.py)

PY = sys.executable
T0 = time.monotonic()
fails = 0


def check(ok, what):
    global fails
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    fails += not ok


def gen_mlp(path, hidden, layers, batch):
    with open(path, "w") as f:
        subprocess.run([PY, os.path.join(ROOT, "models", "gen_mlp.py"), "--hidden", str(hidden), "--layers",
                        str(layers), "--batch", str(batch)], stdout=f, check=True)
    return path


def carry(d):
    c = os.path.join(d, "carry")
    os.makedirs(os.path.join(c, "bin")); os.makedirs(os.path.join(c, "plans"))
    os.symlink(tool("mantissa-run"), os.path.join(c, "bin", "mantissa-run"))
    sm = gpu_bench.SMOKE
    mlp = gen_mlp(os.path.join(d, "mlp.mlir"), sm["mlp"]["hidden"], sm["mlp"]["layers"], sm["mlp"]["batch"])
    unet = gen_unet(os.path.join(d, "unet.mlir"), sm["unet"]["width"], sm["unet"]["levels"], sm["unet"]["size"],
                    sm["unet"]["batch"])
    sgd = ["--arch", "none", "--optimizer", "sgd", "--lr", "0.001", "--momentum", "0.9"]
    plans = os.path.join(c, "plans")
    for model, src in (("mlp", mlp), ("unet", unet)):
        for prec in ("fp16", "bf16"):
            compile_model(src, os.path.join(plans, f"bench-{model}-{prec}.plan"), "--precision", prec, *sgd)
        # gpu_bench.py --ab-plan nocopies: fp16 only, so that bf16's missing variant is reported, not a crash.
        compile_model(src, os.path.join(plans, f"bench-{model}-fp16-nocopies.plan"), "--precision", "fp16",
                      "--no-working-copies", *sgd)
    for w in unet_energy_study.SMOKE["widths"]:
        src = gen_unet(os.path.join(d, f"unet-w{w}.mlir"), w, 4, 16, 2)
        for prec in unet_energy_study.PRECS:
            compile_model(src, os.path.join(plans, f"study-unet-w{w}-{prec}.plan"), "--precision", prec, *sgd)
    # gpu_tune.py's part of gpu-prepare.sh, for the smoke unet: a tune run (its own model as the
    # proxy, 6 candidates of 4 steps), its manifest and cost plans, the tuned and uniform plans.
    m, t = tool("mantissa"), os.path.join(c, "tune")
    os.makedirs(t)
    run([m, "tune", unet, "--cost-model", unet, "--device", "h100", "--objective", "time", "--data", "nowcast",
         "--train-samples", "16", "--held-out-samples", "8", "--steps", "4", "--budget", "6", "--max-metric-gap", "0.05",
         "--optimizer", "adam", "--lr", "0.003", "-o", os.path.join(t, "unet-policy.json"),
         "--emit-candidates", os.path.join(t, "candidates")])
    shutil.copy(os.path.join(t, "candidates", "manifest.json"), t)
    os.makedirs(os.path.join(plans, "tune-candidates"))
    for f in os.listdir(os.path.join(t, "candidates")):
        if f.endswith("-cost.plan"):
            os.rename(os.path.join(t, "candidates", f), os.path.join(plans, "tune-candidates", f))
    for label in ("tuned", "fp16", "bf16", "fp32"):
        prec = os.path.join(t, "unet-policy.json") if label == "tuned" else label
        compile_model(unet, os.path.join(plans, f"tune-unet-{label}.plan"), "--precision", prec, *sgd)
    return c, mlp


def smoke_bench(d, c):
    out = os.path.join(d, "bench.json")
    p = run([PY, os.path.join(ROOT, "bench", "gpu_bench.py"), "--smoke", "--carry", c, "--precisions", "fp16", "bf16",
             "--ab-env", "MANTISSA_CUDA_CONV=auto", "--ab-plan", "nocopies", "--json", out])
    print(p.stdout)
    check(p.stdout.startswith("SMOKE RUN") and p.stdout.rstrip().endswith(gpu_bench.SMOKE_BANNER),
          "gpu_bench.py --smoke says so first and last")
    rows = json.load(open(out))
    check([(r["model"], r["precision"]) for r in rows] == [(m, p) for m in ("mlp", "unet") for p in ("fp16", "bf16")],
          "gpu_bench.py: one row per model and precision")
    sm = gpu_bench.SMOKE
    params = {"mlp": 784 * 64 + 64 + 64 * 64 + 64 + 64 * 10 + 10,
              "unet": unet_energy_study.unet_params(sm["unet"]["width"], sm["unet"]["levels"])}
    for r in rows:
        k = f"{r['model']} {r['precision']}"
        m, e = r["mantissa"], r["eager"]
        check(r.get("smoke") is True and r["batch"] == sm[r["model"]]["batch"], f"{k}: marked smoke, smoke batch")
        # ms/step is a slope between 2 and 4 steps here: start-up jitter can make it negative.
        check("error" not in m and math.isfinite(m["ms_per_step"]) and math.isfinite(m["final_loss"]),
              f"{k}: mantissa ran ({m})")
        # CPU: no executor device memory, no nvidia-smi, no allocator maximum: not measured, not 0.
        check(m["process_mem_GiB"] is None and e["peak_mem_GiB"] is None, f"{k}: no invented memory figures")
        check("error" not in e and e["ms_per_step"] > 0 and e["params"] == params[r["model"]],
              f"{k}: eager PyTorch ran, {e.get('params')} parameters (by hand: {params[r['model']]})")
        check(abs(r["ratio_to_eager"] - m["ms_per_step"] / e["ms_per_step"]) < 1e-9, f"{k}: ratio to eager")
        c_ = r["compile"]
        check(("error" in c_) != ("ms_per_step" in c_) and (("ratio_to_compile" in r) == ("ms_per_step" in c_)),
              f"{k}: torch.compile gave a time and ratio or an error ({str(c_)[:120]})")
        ab = {v["variant"]: v for v in r["mantissa_ab"]}
        check(set(ab) == {"--ab-env MANTISSA_CUDA_CONV=auto", "--ab-plan nocopies"}, f"{k}: both A/B variants")
        check(math.isfinite(ab["--ab-env MANTISSA_CUDA_CONV=auto"].get("ms_per_step", math.nan)), f"{k}: --ab-env ran")
        nc = ab["--ab-plan nocopies"]
        check(math.isfinite(nc.get("ms_per_step", math.nan)) if r["precision"] == "fp16" else "no plan" in nc.get("error", ""),
              f"{k}: --ab-plan nocopies ran where its plan is, said 'no plan' where not ({str(nc)[:100]})")
    # Oracle for what the script reports: mantissa-run itself on the same plan and data.
    data = gpu_bench.mantissa_data(d)["mlp"]
    ref = train(os.path.join(c, "plans", "bench-mlp-fp16.plan"), "--backend", "cpu", "--fixed-batch", "--steps",
                str(sm["mlp"]["steps"][1]), *data, json_out=os.path.join(d, "ref.json"))
    check(ref["final_loss"] == rows[0]["mantissa"]["final_loss"],
          f"mlp fp16: the script's final loss is mantissa-run's ({ref['final_loss']})")
    for line in ("with --ab-env MANTISSA_CUDA_CONV=auto:", "with --ab-plan nocopies:", "mlp   fp16  |"):
        check(line in p.stdout, f"gpu_bench.py printed '{line}'")


def smoke_study(d, c):
    out = os.path.join(d, "study")
    p = run([PY, os.path.join(ROOT, "bench", "unet_energy_study.py"), "--smoke", "--carry", c, "--out", out])
    print(p.stdout)
    check(p.stdout.startswith("SMOKE RUN"), "unet_energy_study.py --smoke says so")
    st = json.load(open(os.path.join(out, "study.json")))
    widths = unet_energy_study.SMOKE["widths"]
    check(st.get("smoke") is True and [(r["precision"], r["width"]) for r in st["rows"]] ==
          [(p_, w) for p_ in unet_energy_study.PRECS for w in widths], "study: marked smoke, one row per run")
    for r in st["rows"]:
        k = f"study w{r['width']} {r['precision']}"
        check(r["joules_per_epoch"] is None and r["joules_per_epoch_err"] is None and r["windows"] == 0,
              f"{k}: energy not measured on the CPU (meter: {r['meter']})")
        check(r["epochs"] == 2 and r["steps_per_epoch"] == 2 and r["seconds_per_epoch"] > 0
              and math.isfinite(r["final_loss"]), f"{k}: 2 epochs of 2 steps trained")
    md = open(os.path.join(out, "study.md")).read()
    check(md.startswith("SMOKE RUN") and md.count("not measured") == len(st["rows"]), "study.md: smoke, not measured")
    check(st["growth"] == [] and not os.path.exists(os.path.join(out, "study.svg")),
          "study: no growth and no plot without energies")
    # The plot's drawing code, which the CPU cannot reach (no joules): given rows, a well-formed
    # SVG with a point per row that has energy.
    rows = [dict(width=w, precision=pr, params=unet_energy_study.unet_params(w), joules_per_epoch=j,
                 joules_per_epoch_err=j / 20 if j else None)
            for (w, pr, j) in ((8, "fp32", 10.0), (16, "fp32", 14.0), (8, "fp16", 6.0), (16, "fp16", None))]
    svg = os.path.join(d, "plot.svg")
    unet_energy_study.svg_plot(rows, svg)
    circles = ET.parse(svg).getroot().findall("{http://www.w3.org/2000/svg}circle")
    check(len(circles) == 3, f"svg_plot: {len(circles)} points for the 3 rows with energy")


def smoke_energy(d, c):
    out = os.path.join(d, "energy")
    p = run([PY, os.path.join(ROOT, "bench", "energy_check.py"), "--smoke", "--carry", c, "--out", out])
    print(p.stdout[-3000:])
    check(p.stdout.startswith("SMOKE RUN") and energy_check.SMOKE_BANNER in p.stdout.splitlines()[-2],
          "energy_check.py --smoke says so first and last")
    check(p.stdout.splitlines()[-1] == "== energy checks (smoke: the GPU criteria above not checked): all passed"
          and "\nFAIL " not in p.stdout, "energy_check.py: no failure the CPU can check")
    check(json.load(open(os.path.join(out, "summary.json"))) == {"smoke": True},
          "energy_check.py: summary marked smoke, no model's energy summary (nothing measured)")
    for model in ("mlp", "unet"):
        for name in ("profile.txt", "energy.html", "energy.csv", "energy.txt"):
            check(os.path.getsize(os.path.join(out, f"{model}-{name}")) > 0, f"energy_check.py wrote {model}-{name}")
        e = json.load(open(os.path.join(out, f"{model}-energy.json")))["energy"]
        json.load(open(os.path.join(out, f"{model}-trace.json")))
        check(e["attribution"]["measured"] is False and f"SMOKE (not checked; would fail) {model}: energy not measured"
              in p.stdout, f"energy_check.py {model}: energy not measured, said as a GPU criterion not checked")


def smoke_tune(d, c):
    out = os.path.join(d, "tune")
    p = run([PY, os.path.join(ROOT, "bench", "gpu_tune.py"), "--smoke", "--carry", c, "--out", out])
    print(p.stdout)
    check(p.stdout.startswith("SMOKE RUN") and p.stdout.rstrip().endswith(gpu_tune.SMOKE_BANNER),
          "gpu_tune.py --smoke says so first and last")
    r = json.load(open(os.path.join(out, "gpu_tune.json")))
    check(r.get("smoke") is True and list(r["rows"]) == [f"mantissa {l}" for l in ("tuned", "fp16", "bf16", "fp32")]
          + ["pytorch amp fp16", "pytorch amp bf16"], "gpu_tune.json: marked smoke, a row per run")
    for k, row in r["rows"].items():
        check(math.isfinite(row.get("ms_per_step", math.nan)) and row["j_per_step"] is None,
              f"gpu_tune {k}: a time, energy not measured (None)")
    manifest = json.load(open(os.path.join(c, "tune", "manifest.json")))
    measured = r["candidates"]["rows"]
    check([m["label"] for m in measured] == [m["label"] for m in manifest["candidates"]]
          and all(math.isfinite(m["ms_per_step"] or math.nan) for m in measured),
          f"gpu_tune: all {len(measured)} candidates of the manifest measured, in its order")
    check("SMOKE (not checked; would " in p.stdout and "\nFAIL" not in p.stdout,
          "gpu_tune: the tuned-vs-uniform criterion printed as not checked")
    for line in ("cost model with efficiencies fitted", "those within the bound, fastest first:"):
        check(line in p.stdout, f"gpu_tune.py printed '{line}'")


def main():
    d = os.path.join(BUILD, "bench-smoke")
    shutil.rmtree(d, ignore_errors=True); os.makedirs(d)
    c, _ = carry(d)
    print(f"carry built in {time.monotonic() - T0:.1f} s", flush=True)
    smoke_bench(d, c)
    smoke_study(d, c)
    smoke_energy(d, c)
    smoke_tune(d, c)
    print(f"bench smoke: {time.monotonic() - T0:.1f} s, {'all passed' if not fails else f'{fails} FAILED'}")
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
