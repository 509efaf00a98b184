#!/usr/bin/env python3
"""Mantissa's CUDA backend against PyTorch (eager and torch.compile), side by side in one run.

    python3 gpu_bench.py --carry .carry [--models mlp unet] [--precisions fp32 fp16 bf16] [--json out.json]
    python3 gpu_bench.py --smoke --carry CARRY   # the whole script on the CPU, tiny shapes (SMOKE)

Same model (shared/MODELS.md), batch, precision and optimizer (SGD lr 1e-3 momentum 0.9;
fp16 with dynamic loss scaling / GradScaler) on both sides; inputs stay on the device
(Mantissa: --fixed-batch). Mantissa's ms/step is the slope between a short and a long
run (start-up and warm-up cancel); PyTorch's is timed over steps after warm-up with
the device synchronised. Prints one table: ms/step, peak GPU memory (PyTorch's
allocator maximum; Mantissa's executor allocations, both without the CUDA context;
nvidia-smi's process memory is in the JSON), final loss, and Mantissa's
ratio to torch.compile and to eager.

The final losses are each side's own and not comparable across sides: PyTorch trains
on one random batch (torch.randn, as shared/bench/pytorch_reference.py), Mantissa on
its first batch of the data set (nowcast for unet); they only show that each side
trained. (Feeding both the same .npy batch needs the data order to agree.)
"""
import argparse, contextlib, json, os, subprocess, sys, tempfile, threading, time
import numpy as np
import torch, torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_models  # noqa: E402

# Mantissa's ms/step is the slope between two runs: the runs must differ by seconds, not
# by the jitter of a process's start (on an H100, mlp's 50 and 250 steps, ~0.2 s apart,
# gave 0.72 and 1.14 ms/step for the same plan in one run).
CFG = {"mlp": dict(batch=512, steps=(100, 2100)), "unet": dict(batch=16, steps=(20, 80))}
# --smoke: every code path of this script on the CPU (Mantissa --backend cpu, PyTorch on the
# CPU) with the fewest steps and tiny models, so that a broken script fails on the build
# machine and not in a GPU session; its numbers are not benchmarks. Its carry's plans
# bench-MODEL-PREC[-NAME].plan must be these models (test/e2e/test_bench_smoke.py builds them):
# mlp = models/gen_mlp.py --hidden 64 --layers 2 --batch 8, unet = models/gen_unet.py
# --width 4 --levels 2 --size 16 --batch 2.
SMOKE = {"mlp": dict(batch=8, steps=(2, 4), hidden=64, layers=2),
         "unet": dict(batch=2, steps=(2, 4), width=4, levels=2, size=16)}
DEV = "cuda"  # the device of both sides: "cpu" with --smoke
SMOKE_BANNER = ("SMOKE RUN (--smoke): CPU only, tiny models, a few steps; it checks that the script runs. "
                "Its numbers are NOT benchmarks.")


def gpu_mem_poll(stop, peak):
    while not stop.is_set():
        try:
            out = subprocess.run(["nvidia-smi", "--query-compute-apps=used_memory", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=5).stdout
            vals = [int(v) for v in out.split() if v.strip().isdigit()]
            if vals:
                peak[0] = max(peak[0], max(vals))
        except Exception:
            pass
        time.sleep(0.2)


def mantissa_data(tmp):
    """The benchmark's data options per model (random .npy for mlp written into tmp; nowcast for unet)."""
    rng = np.random.default_rng(0)
    np.save(f"{tmp}/x.npy", rng.standard_normal((1024, 784), dtype=np.float32))
    np.save(f"{tmp}/y.npy", rng.integers(0, 10, 1024))
    return {"mlp": ["--data", f"{tmp}/x.npy,{tmp}/y.npy"],
            "unet": ["--data", "nowcast", "--train-samples", "16", "--held-out-samples", "16"]}


def mantissa(carry, model, prec, data_args, tmp, env=None, suffix=""):
    if not os.path.isdir(os.path.join(carry, "bin")):  # packed by gpu-prepare.sh
        subprocess.run(["tar", "xzf", os.path.join(carry, "payload.tgz"), "-C", carry], check=True)
    plan = os.path.join(carry, "plans", f"bench-{model}-{prec}{suffix}.plan")
    if not os.path.exists(plan):
        return dict(error=f"no plan {plan} (bench/gpu-prepare.sh writes the variants it knows)")
    res, breakdown = [], None
    stop, peak = threading.Event(), [0]
    t = threading.Thread(target=gpu_mem_poll, args=(stop, peak)); t.start()
    try:
        for n in CFG[model]["steps"]:
            out = os.path.join(tmp, f"{model}-{prec}{suffix}-{n}.json")
            p = subprocess.run([os.path.join(carry, "bin", "mantissa-run"), "train", plan, "--backend", DEV,
                                "--fixed-batch", "--steps", str(n), "--quiet", "--json", out, *data_args],
                               capture_output=True, text=True,
                               env=dict(os.environ, **{"MANTISSA_VERBOSE": "1", **(env or {})}))
            if p.returncode:
                return dict(error=p.stderr.strip()[-300:])
            res.append(json.load(open(out)))
            # What device_bytes is made of (CudaExecutor::describeMemory).
            breakdown = next((l.split(": ", 1)[1] for l in p.stderr.splitlines()
                              if l.startswith("mantissa cuda: device memory")), breakdown)
    finally:
        stop.set(); t.join()
    (a, b), (na, nb) = res, CFG[model]["steps"]
    ms = 1e3 * (b["wall_seconds"] - a["wall_seconds"]) / (nb - na)
    # Peak memory like PyTorch's max_memory_allocated: what the executor allocated
    # (tensors, arena, scratch, cuBLAS workspace; not the CUDA context). nvidia-smi's
    # process memory (context included) is kept apart.
    held = b.get("device_bytes")
    return dict(ms_per_step=ms, final_loss=b["final_loss"], peak_mem_GiB=held / 2**30 if held else None,
                process_mem_GiB=peak[0] / 1024 if peak[0] else None, device=b.get("device"),
                memory_breakdown=breakdown)


def torch_step(model, prec, compile_):
    """The PyTorch peer's training step (shared/bench/pytorch_reference.py's configuration): (step, net)."""
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    B, c = CFG[model]["batch"], CFG[model]
    if model == "unet":
        S = c.get("size", 384)
        net = torch_models.UNet(width=c.get("width", 32), levels=c.get("levels", 4)).to(DEV).to(
            memory_format=torch.channels_last)
        x = torch.randn(B, 13, S, S, device=DEV).contiguous(memory_format=torch.channels_last)
        y = torch.randn(B, 12, S, S, device=DEV); lossf = F.mse_loss
    else:
        net = torch_models.MLP(**{k: c[k] for k in ("hidden", "layers") if k in c}).to(DEV)
        x = torch.randn(B, 784, device=DEV); y = torch.randint(0, 10, (B,), device=DEV); lossf = F.cross_entropy
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    dtype = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[prec]
    # torch.amp.GradScaler is torch >= 2.3's (the GPU machine's); Debian's CPU torch has torch.cuda.amp's.
    scaler = getattr(torch.amp, "GradScaler", None) or torch.cuda.amp.GradScaler
    scaler = scaler(enabled=prec == "fp16" and DEV == "cuda")
    # CPU autocast (Debian's torch, --smoke) takes bf16 only: fp32 and fp16 run unautocast there.
    cpu_plain = DEV == "cpu" and dtype != torch.bfloat16
    def step():
        opt.zero_grad(set_to_none=True)
        with (contextlib.nullcontext() if cpu_plain else
              torch.autocast(DEV, dtype=dtype or torch.float32, enabled=dtype is not None)):
            loss = lossf(net(x), y)
        scaler.scale(loss).backward(); scaler.step(opt); scaler.update()
        return loss
    return (torch.compile(step) if compile_ else step), net


def sync():
    if DEV == "cuda":
        torch.cuda.synchronize()


def pytorch(model, prec, compile_):
    f, net = torch_step(model, prec, compile_)
    cuda = DEV == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    for _ in range(5): f()
    sync()
    n = CFG[model]["steps"][1] - CFG[model]["steps"][0]
    t = time.perf_counter()
    for _ in range(n): loss = f()
    sync()
    ms = 1e3 * (time.perf_counter() - t) / n
    # The CPU has no allocator maximum to read: not measured.
    r = dict(ms_per_step=ms, final_loss=float(loss),
             peak_mem_GiB=torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
             params=sum(p.numel() for p in net.parameters()))
    del net, f
    if cuda:
        torch.cuda.empty_cache()
    return r


def pytorch_energy(model, prec, compile_, seconds=6.0):
    """The peer's J/step measured like Mantissa's: NVML over >= 1 s windows between counter
    changes (nvml_energy.Sampler), steps in a window from (time, steps done) at each sync
    (every 5 steps), interpolated at the window's ends."""
    import nvml_energy
    f, net = torch_step(model, prec, compile_)
    for _ in range(5): f()
    torch.cuda.synchronize()
    marks = [(time.monotonic(), 0)]
    with nvml_energy.Sampler() as s:
        n = 0
        while time.monotonic() - marks[0][0] < seconds:
            for _ in range(5): f()
            torch.cuda.synchronize(); n += 5
            marks.append((time.monotonic(), n))
    ts, ns = np.array([m[0] for m in marks]), np.array([m[1] for m in marks], float)
    wins = [w for w in s.windows(1.0) if w[0] >= ts[0] and w[1] <= ts[-1]]
    joules = sum(w[2] for w in wins)
    steps = sum(np.interp(w[1], ts, ns) - np.interp(w[0], ts, ns) for w in wins)
    del net, f; torch.cuda.empty_cache()
    return dict(joules_per_step=joules / steps if steps else None, windows=len(wins), steps=steps,
                seconds=sum(w[1] - w[0] for w in wins))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--carry", default=".carry")
    p.add_argument("--models", nargs="+", default=["mlp", "unet"])
    p.add_argument("--precisions", nargs="+", default=["fp32", "fp16", "bf16"])
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--no-pytorch", action="store_true")
    p.add_argument("--json")
    p.add_argument("--smoke", action="store_true",
                   help="run everything on the CPU with tiny models and the fewest steps (SMOKE in the "
                        "source: the carry's plans must be those models) to check the script, not to measure")
    p.add_argument("--ab-env", action="append", default=[], metavar="KEY=VALUE[,KEY=VALUE]",
                   help="also run Mantissa with this environment (e.g. MANTISSA_CUDA_VECTOR=0, "
                        "MANTISSA_CUDA_CONV=auto) and report its ms/step against the default's; "
                        "each --ab-env is one variant")
    p.add_argument("--ab-plan", action="append", default=[], metavar="NAME",
                   help="also run the plans bench-MODEL-PREC-NAME.plan (e.g. nocopies: compiled "
                        "with --no-working-copies) and report them against the default's")
    a = p.parse_args()
    global DEV
    if a.smoke:
        DEV = "cpu"
        CFG.update(SMOKE)
        print(SMOKE_BANNER, flush=True)
    variants = []  # (label, environment, plan suffix)
    for spec in a.ab_env:
        try:
            variants.append((f"--ab-env {spec}", dict(kv.split("=", 1) for kv in spec.split(",")), ""))
        except ValueError:
            p.error(f"--ab-env {spec}: expected KEY=VALUE[,KEY=VALUE]")
    variants += [(f"--ab-plan {name}", {}, "-" + name) for name in a.ab_plan]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = mantissa_data(tmp)
        for model in a.models:
            for prec in a.precisions:
                r = dict(model=model, precision=prec, batch=CFG[model]["batch"])
                if a.smoke:
                    r["smoke"] = True
                r["mantissa"] = mantissa(a.carry, model, prec, data[model], tmp)
                r["mantissa_ab"] = []
                for label, env, suffix in variants:
                    r["mantissa_ab"].append(mantissa(a.carry, model, prec, data[model], tmp, env=env,
                                                     suffix=suffix))
                    r["mantissa_ab"][-1]["variant"] = label
                if not a.no_pytorch:
                    r["eager"] = pytorch(model, prec, False)
                    if not a.no_compile:
                        try:
                            r["compile"] = pytorch(model, prec, True)
                        except Exception as e:
                            r["compile"] = dict(error=repr(e)[:300])
                m = r["mantissa"].get("ms_per_step")
                for k in ("eager", "compile"):
                    if m and k in r and r[k].get("ms_per_step"):
                        r[f"ratio_to_{k}"] = m / r[k]["ms_per_step"]
                rows.append(r)
                print(json.dumps(r), flush=True)
    f = lambda v, s="{:.2f}": (s.format(v) if isinstance(v, (int, float)) else "-")
    print(f"\n{'model':<5} {'prec':<5} | {'mantissa ms':>11} {'eager ms':>9} {'compile ms':>10} | "
          f"{'x compile':>9} {'x eager':>8} | {'mem GiB m/e/c':>16} | {'loss m/e/c':>26}")
    for r in rows:
        m, e, c = r["mantissa"], r.get("eager", {}), r.get("compile", {})
        print(f"{r['model']:<5} {r['precision']:<5} | {f(m.get('ms_per_step')):>11} {f(e.get('ms_per_step')):>9} "
              f"{f(c.get('ms_per_step')):>10} | {f(r.get('ratio_to_compile')):>9} {f(r.get('ratio_to_eager')):>8} | "
              f"{f(m.get('peak_mem_GiB'), '{:.1f}')}/{f(e.get('peak_mem_GiB'), '{:.1f}')}/{f(c.get('peak_mem_GiB'), '{:.1f}'):>4} | "
              f"{f(m.get('final_loss'), '{:.4f}')}/{f(e.get('final_loss'), '{:.4f}')}/{f(c.get('final_loss'), '{:.4f}')}")
        for k in ("mantissa", "eager", "compile"):
            if k in r and "error" in r[k]:
                print(f"   {k} error: {r[k]['error']}")
    print("(loss: each side's own data, not comparable across sides; see the docstring)")
    for i, (label, _, _) in enumerate(variants):
        print(f"\nwith {label}: ms/step and device memory, and their ratios to the default's")
        for r in rows:
            d, v = r["mantissa"], r["mantissa_ab"][i]
            m, x = d.get("ms_per_step"), v.get("ms_per_step")
            gm, gx = d.get("peak_mem_GiB"), v.get("peak_mem_GiB")
            print(f"{r['model']:<5} {r['precision']:<5} | {f(x):>9} ms vs {f(m):>9} ms | "
                  f"{f(x / m if x and m else None)} x | {f(gx)} GiB vs {f(gm)} GiB"
                  + (f" | error: {v['error']}" if "error" in v else ""))
    if a.smoke:
        print("\n" + SMOKE_BANNER)
    if a.json:
        json.dump(rows, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
