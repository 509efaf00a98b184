#!/usr/bin/env python3
"""Issue 5's GPU checks of the precision tuner, with what bench/gpu-prepare.sh put into .carry:

  3. unet (w32, L4, b16, 384x384): ms/step and J/step of the tuned policy against the uniform
     fp16 and bf16 policies (and fp32) and PyTorch AMP (fp16 + GradScaler, bf16) in one run;
     the tuned policy must be at least as good on its objective (time) as the best uniform
     policy that met the same metric bound in the tuner's CPU emulation (.carry/tune/manifest.json).
  3b. Every candidate the tuner emitted, at full size, measured on the GPU in one
     `mantissa-run measure` run (tune-measured.json): the measured ranking of the candidates that
     met the bound, beside the modelled one. Finish the search from these measurements on the
     build machine (the compiler does not run on the GPU machine):
       mantissa tune --select RESULTS/tune-measured.json --emit-candidates .carry/tune/candidates
  4. The cost model against measurement: per kernel, MANTISSA_CUDA_PROFILE's CUDA-event time of
     every train_step step (eager mode, averaged over the runs after the first) against
     `mantissa-run inspect --cost` for the same plan; the median absolute error (us) and the
     median relative error are reported, with predicted and measured time per step.
  4b. The same with per-class efficiencies fitted to the fp16 and fp32 plans' kernel times
     (`inspect --cost DEVICE --fit`, written to RESULTS/DEVICE-fitted.json, usable as
     `mantissa tune --device`), checked on the bf16 and tuned plans, which it was not fitted to.

    python3 gpu_tune.py --carry .carry --out results-dir
    python3 gpu_tune.py --smoke --carry CARRY --out DIR   # the script on the CPU (SMOKE below)

Time: Mantissa's ms/step from `mantissa-run measure` (warmup, then timed steps between device
synchronisations); PyTorch's over timed steps after warm-up, synchronised. Energy: NVML's
total-energy counter (bench/nvml_energy.py, the meter of issue 4). Mantissa's J/step is the
slope of the counter between a short and a long `measure` run (start-up cancels; the counter
moves every ~100 ms, so +-1 tick per end over the 80 extra steps); PyTorch's is counted over
>= 1 s windows between counter changes, as gpu_bench.py's pytorch_energy does. (An earlier
version integrated nvidia-smi's power reading: two runs of one policy differed by 27 %.)
"""
import argparse, contextlib, json, os, re, statistics, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
# --smoke: the script on the CPU: `measure` with --backend cpu and 2/4 steps, no NVML (J/step
# None), PyTorch's unet w4 L2 16x16 batch 2 on the CPU (time only), the tuned-vs-uniform
# criterion printed as not checked. Its carry holds gpu-prepare.sh's layout for a tiny unet
# (test/e2e/test_bench_smoke.py builds it: tune/manifest.json, plans/tune-candidates/,
# plans/tune-unet-{tuned,fp16,bf16,fp32}.plan). It checks the script; its numbers are not
# measurements. MANTISSA_CUDA_PROFILE's kernel times exist only on the GPU: the cost-model
# comparison reports that error instead.
SMOKE = dict(steps=(2, 4), torch_steps=2, width=4, levels=2, size=16, batch=2)
SMOKE_BANNER = ("SMOKE RUN (--smoke): CPU only, a tiny unet, a few steps, no energy meter; it checks that the "
                "script runs. Its numbers are NOT measurements and its GPU criterion is not checked.")
BACKEND = "cuda"  # "cpu" with --smoke


def measure_mantissa(carry, plan, tmp, short=20, long=100):
    """ms/step from `measure`, J/step from the NVML counter's slope between a short and a long run."""
    import nvml_energy
    run = os.path.join(carry, "bin", "mantissa-run")
    data = ["--data", "nowcast"]
    res = {}
    smoke = BACKEND == "cpu"
    if smoke:
        short, long = SMOKE["steps"]
    with (contextlib.nullcontext() if smoke else nvml_energy.Sampler()) as ps:
        for n in (short, long):
            out = os.path.join(tmp, f"m-{n}.json")
            t0 = time.monotonic()
            p = subprocess.run([run, "measure", plan, "--json", out, "--backend", BACKEND, "--steps", str(n),
                                "--warmup", "3", *data], capture_output=True, text=True)
            time.sleep(0.25)  # the counter's next update after the run's end
            t1 = time.monotonic()
            if p.returncode:
                return dict(error=p.stderr.strip()[-300:])
            r = json.load(open(out))
            if r["backend"] != BACKEND:
                return dict(error=f"measured on {r['backend']} ({r['device']}), not on the GPU: " + p.stderr.strip()[-200:])
            res[n] = (r["plans"][0]["ms_per_step"], None if smoke else ps.joules_at(t1) - ps.joules_at(t0))
    ms = res[long][0]
    e = (res[long][1] - res[short][1]) / (long - short) if res[long][1] and res[short][1] else None
    return dict(ms_per_step=ms, j_per_step=e)


def measure_candidates(carry, out):
    """All candidate plans in one `measure` run; returns rows in the manifest's order."""
    manifest = json.load(open(os.path.join(carry, "tune", "manifest.json")))
    folder = os.path.join(carry, "plans", "tune-candidates")
    plans = [os.path.join(folder, m["plan"]) for m in manifest["candidates"]]
    missing = [p for p in plans if not os.path.exists(p)]
    if missing:
        return dict(error=f"{len(missing)} candidate plans missing, e.g. {missing[0]}")
    results = os.path.join(out, "tune-measured.json")
    t0 = time.monotonic()
    p = subprocess.run([os.path.join(carry, "bin", "mantissa-run"), "measure", *plans, "--json", results,
                        "--backend", BACKEND, "--steps", "10", "--warmup", "2", "--data", "nowcast"],
                       capture_output=True, text=True)
    if p.returncode:
        return dict(error=p.stderr.strip()[-400:])
    measured = {os.path.basename(r["plan"]): r for r in json.load(open(results))["plans"]}
    rows = []
    for m in manifest["candidates"]:
        r = measured.get(m["plan"], {})
        rows.append(dict(label=m["label"], passes=m["passes"], gap=m["gap"],
                         modelled_ms=m["modelled_seconds"] * 1e3 if m["modelled_seconds"] else None,
                         ms_per_step=r.get("ms_per_step")))
    return dict(rows=rows, seconds=time.monotonic() - t0, results=results)


def print_candidates(c):
    if "error" in c:
        print(f"candidates: error: {c['error']}")
        return 0
    ok = [r for r in c["rows"] if r["passes"] and r["ms_per_step"]]
    ok.sort(key=lambda r: r["ms_per_step"])
    print(f"\n{len(c['rows'])} candidates measured in {c['seconds']:.0f} s ({c['results']}); "
          "those within the bound, fastest first:")
    print(f"{'#':>3} {'measured ms':>11} {'modelled ms':>11} {'gap':>8}  policy")
    for i, r in enumerate(ok[:12]):
        print(f"{i:>3} {r['ms_per_step']:>11.2f} {r['modelled_ms'] or float('nan'):>11.2f} {r['gap']:>8.4f}  {r['label']}")
    uni = {r["label"]: r["ms_per_step"] for r in c["rows"] if r["label"].startswith("uniform") and r["passes"]}
    if ok and uni:
        best_u = min(uni.values())
        print(f"fastest measured candidate within the bound: {ok[0]['ms_per_step']:.2f} ms/step "
              f"({ok[0]['label']}); best uniform within the bound: {best_u:.2f} ms/step")
    print("finish the search here: mantissa tune --select <results>/tune-measured.json "
          "--emit-candidates .carry/tune/candidates")
    return 0


def measure_torch(prec):
    """ms/step over timed steps; J/step by gpu_bench.pytorch_energy (NVML windows, same step)."""
    import gpu_bench
    ms = measure_torch_time(prec)
    if BACKEND == "cpu":  # smoke: no NVML on the CPU
        return dict(ms_per_step=ms, j_per_step=None, windows=None)
    e = gpu_bench.pytorch_energy("unet", prec, False, seconds=6.0)
    return dict(ms_per_step=ms, j_per_step=e.get("joules_per_step"), windows=e.get("windows"))


def measure_torch_time(prec):
    import torch, torch.nn.functional as F
    import torch_models
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    dev = "cuda" if BACKEND == "cuda" else "cpu"
    c = SMOKE if dev == "cpu" else dict(width=32, levels=4, size=384, batch=16)
    B, S = c["batch"], c["size"]
    net = torch_models.UNet(width=c["width"], levels=c["levels"]).to(dev).to(memory_format=torch.channels_last)
    x = torch.randn(B, 13, S, S, device=dev).contiguous(memory_format=torch.channels_last)
    y = torch.randn(B, 12, S, S, device=dev)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[prec]
    # torch.amp.GradScaler is torch >= 2.3's (the GPU machine's); Debian's CPU torch has torch.cuda.amp's.
    scaler = (getattr(torch.amp, "GradScaler", None) or torch.cuda.amp.GradScaler)(enabled=prec == "fp16" and dev == "cuda")
    # CPU autocast (Debian's torch, --smoke) takes bf16 only: fp16 runs unautocast there.
    cpu_plain = dev == "cpu" and dtype != torch.bfloat16

    def step():
        opt.zero_grad(set_to_none=True)
        with contextlib.nullcontext() if cpu_plain else torch.autocast(dev, dtype=dtype):
            loss = F.mse_loss(net(x), y)
        scaler.scale(loss).backward(); scaler.step(opt); scaler.update()

    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    for _ in range(5):
        step()
    sync()
    n = 40 if dev == "cuda" else SMOKE["torch_steps"]
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    sync()
    t1 = time.perf_counter()
    del net, opt, x, y
    if dev == "cuda":
        torch.cuda.empty_cache()
    return 1e3 * (t1 - t0) / n


PROFILE = re.compile(r"^\s+([0-9.]+) ms/run\s+[0-9.]+%\s+(step (\d+) '.*' \(\w+\))$")


def kernel_times(carry, plan):
    """{step index: us} of train_step from MANTISSA_CUDA_PROFILE's CUDA-event times (eager mode,
    averaged over the runs after the first), or the error text."""
    env = dict(os.environ, MANTISSA_CUDA_PROFILE="1")
    p = subprocess.run([os.path.join(carry, "bin", "mantissa-run"), "train", plan, "--backend", BACKEND,
                        "--fixed-batch", "--steps", "6", "--quiet", "--data", "nowcast", "--train-samples", "16",
                        "--held-out-samples", "16"], capture_output=True, text=True, env=env)
    measured, inside = {}, False
    for line in p.stderr.splitlines():
        if line.startswith("mantissa cuda profile:"):
            inside = " train_step," in line
            continue
        m = PROFILE.match(line)
        if inside and m:
            measured[int(m.group(3))] = float(m.group(1)) * 1e3
    return measured or "no per-kernel profile (MANTISSA_CUDA_PROFILE) lines: " + p.stderr[-300:]


def cost_model_error(carry, plan, device, tmp, measured):
    """Per-kernel measured times against the cost model of `device` (built-in or fitted); the summary."""
    if isinstance(measured, str):
        return dict(error=measured)
    cost = os.path.join(tmp, "cost.json")
    subprocess.run([os.path.join(carry, "bin", "mantissa-run"), "inspect", "--cost", device, plan, "--json", cost],
                   check=True, capture_output=True)
    predicted = {s["index"]: s["seconds"] * 1e6 for s in json.load(open(cost))["steps"]}
    common = sorted(set(predicted) & set(measured))
    if not common:
        return dict(error="no step of the profile is in the plan")
    abs_err = [abs(predicted[i] - measured[i]) for i in common]
    rel_err = [abs(predicted[i] - measured[i]) / measured[i] for i in common if measured[i] > 0]
    return dict(kernels=len(common), median_abs_error_us=statistics.median(abs_err),
                median_rel_error=statistics.median(rel_err), predicted_ms=sum(predicted[i] for i in common) / 1e3,
                measured_ms=sum(measured[i] for i in common) / 1e3, timing="per kernel (CUDA events, eager)")


def fit_cost_model(carry, device, plans, times, out):
    """Fits the device's per-class efficiencies to the kernel times of `plans` (inspect --cost --fit);
    returns the fitted description's path, or None."""
    measured = os.path.join(out, "kernel-times.json")
    json.dump({"plans": [{"plan": p, "steps": [{"index": i, "seconds": us * 1e-6} for i, us in times[p].items()]}
                         for p in plans if not isinstance(times[p], str)]}, open(measured, "w"), indent=1)
    fitted = os.path.join(out, f"{device}-fitted.json")
    p = subprocess.run([os.path.join(carry, "bin", "mantissa-run"), "inspect", "--cost", device, "--fit", measured,
                        "-o", fitted], capture_output=True, text=True)
    print(p.stdout + p.stderr, flush=True)
    return fitted if p.returncode == 0 else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--carry", default=".carry")
    ap.add_argument("--out", default="gpu-results")
    ap.add_argument("--no-pytorch", action="store_true")
    ap.add_argument("--no-candidates", action="store_true", help="skip measuring every candidate (3b)")
    ap.add_argument("--smoke", action="store_true", help="run the script on the CPU with a tiny unet's carry and "
                    "the fewest steps (SMOKE in the source) to check it, not to measure")
    a = ap.parse_args()
    global BACKEND
    if a.smoke:
        BACKEND = "cpu"
        print(SMOKE_BANNER, flush=True)
    os.makedirs(a.out, exist_ok=True)
    import nvml_energy
    name = nvml_energy.gpu_name()
    device = nvml_energy.device_kind(name)
    manifest = json.load(open(os.path.join(a.carry, "tune", "manifest.json")))
    passed = {m["label"]: m["passes"] for m in manifest["candidates"]}
    rows, fail, times = {}, 0, {}
    plan_of = lambda label: os.path.join(a.carry, "plans", f"tune-unet-{label}.plan")
    with tempfile.TemporaryDirectory() as tmp:
        for label in ("tuned", "fp16", "bf16", "fp32"):
            plan = plan_of(label)
            rows[f"mantissa {label}"] = r = measure_mantissa(a.carry, plan, tmp)
            times[plan] = kernel_times(a.carry, plan)
            r["cost_model"] = cost_model_error(a.carry, plan, device, tmp, times[plan])
            print(json.dumps({f"mantissa {label}": r}), flush=True)
        # 4b. The cost model with per-class efficiencies fitted to the fp16 and fp32 plans' kernel
        # times, checked on the two it was not fitted to (bf16, tuned): out of sample.
        fitted = fit_cost_model(a.carry, device, [plan_of("fp16"), plan_of("fp32")], times, a.out)
        if fitted:
            for label in ("bf16", "tuned"):
                rows[f"mantissa {label}"]["cost_model_fitted"] = cost_model_error(
                    a.carry, plan_of(label), fitted, tmp, times[plan_of(label)])
        if not a.no_pytorch:
            for prec in ("fp16", "bf16"):
                try:
                    rows[f"pytorch amp {prec}"] = measure_torch(prec)
                except Exception as e:
                    rows[f"pytorch amp {prec}"] = dict(error=repr(e)[:300])
                print(json.dumps({f"pytorch amp {prec}": rows[f"pytorch amp {prec}"]}), flush=True)
    f = lambda v, s="{:.2f}": s.format(v) if isinstance(v, (int, float)) else "-"
    print(f"\nunet w32 L4 b16 384x384 on {name}; bound passed in CPU emulation: "
          f"fp16 {passed.get('uniform fp16 (autocast)')}, bf16 {passed.get('uniform bf16')}")
    print(f"{'run':<22} {'ms/step':>9} {'J/step':>8} | {'model ms':>9} {'kernel ms':>9} {'med |err| us':>12} {'med rel':>8}")
    for k, r in rows.items():
        c = r.get("cost_model", {})
        print(f"{k:<22} {f(r.get('ms_per_step')):>9} {f(r.get('j_per_step')):>8} | {f(c.get('predicted_ms')):>9} "
              f"{f(c.get('measured_ms')):>9} {f(c.get('median_abs_error_us'), '{:.1f}'):>12} {f(c.get('median_rel_error')):>8}")
        for part in (r, c):
            if "error" in part:
                print(f"   error: {part['error']}")
    print("\ncost model with efficiencies fitted to the fp16 and fp32 plans (out of sample):")
    for label in ("bf16", "tuned"):
        c = rows[f"mantissa {label}"].get("cost_model_fitted", {})
        print(f"mantissa {label:<13} model {f(c.get('predicted_ms'))} ms, kernels {f(c.get('measured_ms'))} ms, "
              f"median |err| {f(c.get('median_abs_error_us'), '{:.1f}')} us, median rel {f(c.get('median_rel_error'))}"
              + (f" | error: {c['error']}" if "error" in c else ""))
    tuned = rows["mantissa tuned"].get("ms_per_step")
    uniform = [rows[f"mantissa {p}"].get("ms_per_step") for p, lab in (("fp16", "uniform fp16 (autocast)"), ("bf16", "uniform bf16"))
               if passed.get(lab) and rows[f"mantissa {p}"].get("ms_per_step")]
    if tuned and uniform:
        ok = tuned <= min(uniform) * 1.02  # 2%: run-to-run noise of ms/step
        print((f"SMOKE (not checked; would {'pass' if ok else 'fail'})" if a.smoke else "PASS" if ok else "FAIL") + f" tuned {tuned:.2f} ms/step <= best uniform within the bound "
              f"{min(uniform):.2f} (+2% noise)")
        fail |= not ok and not a.smoke
    else:
        print("FAIL could not compare the tuned policy with a uniform one"); fail = 1
    candidates = None
    if not a.no_candidates:
        candidates = measure_candidates(a.carry, a.out)
        print_candidates(candidates)
    if a.smoke:
        print("\n" + SMOKE_BANNER)
    json.dump(dict(gpu=name, rows=rows, candidates=candidates, **({"smoke": True} if a.smoke else {})), open(os.path.join(a.out, "gpu_tune.json"), "w"),
              indent=1)
    sys.exit(fail)


if __name__ == "__main__":
    main()
