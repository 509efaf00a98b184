#!/usr/bin/env python3
"""The seed paper's U-Net energy study (Samsi et al., HPEC 2020) with Mantissa on one GPU:
unet(w, L=4) at w in {8, 16, 32, 64}, fp32 and fp16 AMP, the same samples per epoch in every run
(nowcast, 384x384, batch 16); parameters, time and joules per epoch (NVML over >= 1 s windows,
`train --energy`); a table (JSON + markdown), an SVG plot, and how energy grows with parameters
against the paper's finding: +1549 % parameters -> +63.22 % energy with AMP (4-level U-Net).

    python3 unet_energy_study.py --carry .carry --out results/unet-study
    python3 unet_energy_study.py --smoke --carry CARRY --out DIR   # the whole script on the CPU (SMOKE)

Plans: .carry/plans/study-unet-w{w}-{fp32,fp16}.plan (bench/gpu-prepare.sh). Each run lasts
>= --seconds (whole epochs; a 20-step pilot run sizes it), so that several windows close.
"""
import argparse, json, math, os, subprocess, sys

PAPER = dict(params_growth_pct=1549.0, energy_growth_pct=63.22)
WIDTHS, PRECS = (8, 16, 32, 64), ("fp32", "fp16")
# --smoke: every step of the study on the CPU (--backend cpu; no NVML there, so every joule is
# "not measured"), a 2-step pilot, 2 short epochs, widths 8 and 16: it checks the script, its
# numbers are not measurements. Its plans study-unet-w{w}-{prec}.plan are unet(w, L=4) at
# 16x16, batch 2 (models/gen_unet.py --width w --levels 4 --size 16 --batch 2;
# test/e2e/test_bench_smoke.py builds them).
SMOKE = dict(widths=[8, 16], samples=4, seconds=0.0, pilot_steps=2)
SMOKE_BANNER = ("SMOKE RUN (--smoke): CPU only, 16x16 inputs, batch 2, a few steps; it checks that the "
                "script runs. Its numbers are NOT measurements of the study.")
BACKEND = "cuda"  # "cpu" with --smoke


def unet_params(w, L=4, cin=13, cout=12):
    """unet(w, L)'s parameter count (MODELS.md; w=32, L=4 gives its 7,769,228)."""
    block = lambda ci, co: ci * co * 9 + co + 2 * co + co * co * 9 + co + 2 * co  # conv, bn, conv, bn
    n, c, ch = 0, cin, []
    for l in range(L):
        n += block(c, w * 2**l); ch.append(w * 2**l); c = w * 2**l
    n += block(c, 2 * c); c = 2 * c
    for l in reversed(range(L)):
        n += c * ch[l] * 4 + ch[l] + block(2 * ch[l], ch[l]); c = ch[l]
    return n + c * cout + cout


def train(run, plan, out, samples, *extra):
    p = subprocess.run([run, "train", plan, "--backend", BACKEND, "--data", "nowcast", "--train-samples", str(samples),
                        "--held-out-samples", "16", "--no-shuffle", "--quiet", "--json", out, *extra],
                       capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(f"{plan}: train failed: {p.stderr[-2000:]}")
    return json.load(open(out))


def svg_plot(rows, path):
    W, H, L, B = 640, 400, 80, 50
    xs = [math.log10(r["params"]) for r in rows]
    ys = [r["joules_per_epoch"] for r in rows if r["joules_per_epoch"]]
    if not ys:
        return
    x0, x1, y1 = min(xs) - 0.1, max(xs) + 0.1, max(ys) * 1.15
    X = lambda p: L + (math.log10(p) - x0) / (x1 - x0) * (W - L - 20)
    Y = lambda j: H - B - j / y1 * (H - B - 40)
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
         f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="13">unet (L=4) energy per epoch against parameters</text>',
         f'<line x1="{L}" y1="{H - B}" x2="{W - 20}" y2="{H - B}" stroke="#333"/><line x1="{L}" y1="40" x2="{L}" y2="{H - B}" stroke="#333"/>',
         f'<text x="{W / 2}" y="{H - 10}" text-anchor="middle">parameters (log scale)</text>',
         f'<text transform="translate(16,{H / 2}) rotate(-90)" text-anchor="middle">J per epoch</text>']
    for f in (0, 0.5, 1):
        o.append(f'<text x="{L - 6}" y="{Y(f * y1) + 4:.1f}" text-anchor="end">{f * y1:.4g}</text>')
    for prec, color in (("fp32", "#1f77b4"), ("fp16", "#d62728")):
        pts = [r for r in rows if r["precision"] == prec and r["joules_per_epoch"]]
        if not pts:
            continue
        o.append(f'<polyline fill="none" stroke="{color}" points="' +
                 " ".join(f"{X(r['params']):.1f},{Y(r['joules_per_epoch']):.1f}" for r in pts) + '"/>')
        for r in pts:
            e = r["joules_per_epoch_err"] or 0
            o.append(f'<line x1="{X(r["params"]):.1f}" x2="{X(r["params"]):.1f}" y1="{Y(r["joules_per_epoch"] - e):.1f}" '
                     f'y2="{Y(r["joules_per_epoch"] + e):.1f}" stroke="{color}"/>'
                     f'<circle cx="{X(r["params"]):.1f}" cy="{Y(r["joules_per_epoch"]):.1f}" r="3.5" fill="{color}"/>'
                     f'<text x="{X(r["params"]) + 6:.1f}" y="{Y(r["joules_per_epoch"]) - 6:.1f}">w{r["width"]}</text>')
        o.append(f'<text x="{L + 10}" y="{56 if prec == "fp32" else 72}" fill="{color}">{prec}{" AMP" if prec == "fp16" else ""}</text>')
    for p in sorted({r["params"] for r in rows}):
        o.append(f'<text x="{X(p):.1f}" y="{H - B + 15}" text-anchor="middle">{p / 1e6:.2f}M</text>')
    o.append("</svg>")
    open(path, "w").write("\n".join(o) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--carry", default=".carry")
    ap.add_argument("--out", default="unet-study")
    ap.add_argument("--samples", type=int, default=128, help="training samples per epoch (the same in every run)")
    ap.add_argument("--seconds", type=float, default=8.0, help="at least this long per measured run")
    ap.add_argument("--widths", type=int, nargs="+", default=list(WIDTHS))
    ap.add_argument("--smoke", action="store_true",
                    help="run the study's every step on the CPU with tiny plans and the fewest steps "
                         "(SMOKE in the source) to check the script, not to measure")
    a = ap.parse_args()
    global BACKEND
    pilot_steps = 20
    if a.smoke:
        BACKEND, pilot_steps = "cpu", SMOKE["pilot_steps"]
        a.samples, a.seconds = SMOKE["samples"], SMOKE["seconds"]
        if a.widths == list(WIDTHS):
            a.widths = SMOKE["widths"]
        print(SMOKE_BANNER, flush=True)
    os.makedirs(a.out, exist_ok=True)
    run = os.path.join(a.carry, "bin", "mantissa-run")
    rows = []
    for prec in PRECS:
        for w in a.widths:
            plan = os.path.join(a.carry, "plans", f"study-unet-w{w}-{prec}.plan")
            o = lambda n: os.path.join(a.out, f"w{w}-{prec}-{n}")
            # The pilot: 20 steps on 16 samples (generating the data set is what takes long),
            # with CUDA graphs; its time per step (warm-up included) sizes the measured run.
            pilot = train(run, plan, o("pilot.json"), 16, "--steps", str(pilot_steps))
            step_s = pilot["wall_seconds"] / pilot_steps
            epochs = max(2, math.ceil(a.seconds / (step_s * a.samples / 16)))
            s = train(run, plan, o("energy.json"), a.samples, "--epochs", str(epochs), "--energy", "--meter", "nvml")
            e = s["energy"]; ps = e["per_step"]
            measured = e["attribution"]["measured"]
            row = dict(width=w, levels=4, precision=prec, params=unet_params(w), epochs=epochs,
                       steps_per_epoch=s["steps_per_epoch"], samples_per_epoch=a.samples,
                       seconds_per_epoch=s["wall_seconds"] / epochs,
                       seconds_per_epoch_graphs=step_s * s["steps_per_epoch"],  # the pilot ran with CUDA graphs
                       joules_per_epoch=ps["joules"] * s["steps_per_epoch"] if measured else None,
                       joules_per_epoch_err=ps["joules_err"] * s["steps_per_epoch"] if measured else None,
                       windows=len(e["attribution"]["windows"]), final_loss=s["final_loss"], meter=e["attribution"]["meter"])
            print(json.dumps(row), flush=True)
            rows.append(row)
    # Growth against the smallest model, and for the pairs whose parameters grow ~16x like the paper's.
    comp = []
    for prec in PRECS:
        by = {r["width"]: r for r in rows if r["precision"] == prec}
        for wa, wb in ((8, 16), (8, 32), (8, 64), (16, 64)):
            ra, rb = by.get(wa), by.get(wb)
            if ra and rb and ra["joules_per_epoch"] and rb["joules_per_epoch"]:
                comp.append(dict(precision=prec, from_width=wa, to_width=wb,
                                 params_growth_pct=100 * (rb["params"] / ra["params"] - 1),
                                 energy_growth_pct=100 * (rb["joules_per_epoch"] / ra["joules_per_epoch"] - 1),
                                 time_growth_pct=100 * (rb["seconds_per_epoch"] / ra["seconds_per_epoch"] - 1)))
    json.dump(dict(rows=rows, growth=comp, paper=PAPER, **({"smoke": True} if a.smoke else {})), open(os.path.join(a.out, "study.json"), "w"), indent=1)
    md = [SMOKE_BANNER, ""] if a.smoke else []
    md += [f"| w | precision | parameters | s/epoch (measured run: eager + events) | s/epoch ({pilot_steps}-step pilot, CUDA graphs, with warm-up) "
          "| J/epoch (NVML, >= 1 s windows) | windows |",
          "|---|---|---|---|---|---|---|"]
    for r in rows:
        j = f"{r['joules_per_epoch']:.1f} ± {r['joules_per_epoch_err']:.1f}" if r["joules_per_epoch"] else "not measured"
        md.append(f"| {r['width']} | {r['precision']} | {r['params']:,} | {r['seconds_per_epoch']:.3f} | "
                  f"{r['seconds_per_epoch_graphs']:.3f} | {j} | {r['windows']} |")
    md += ["", f"Growth ({a.samples} samples per epoch, batch 16, 384x384), against the paper's "
           f"+{PAPER['params_growth_pct']:g} % parameters -> +{PAPER['energy_growth_pct']:g} % energy (AMP, 4 levels):", "",
           "| precision | from -> to | parameters | energy per epoch | time per epoch |", "|---|---|---|---|---|"]
    for g in comp:
        md.append(f"| {g['precision']} | w{g['from_width']} -> w{g['to_width']} | {g['params_growth_pct']:+.0f} % | "
                  f"{g['energy_growth_pct']:+.1f} % | {g['time_growth_pct']:+.1f} % |")
    open(os.path.join(a.out, "study.md"), "w").write("\n".join(md) + "\n")
    svg_plot(rows, os.path.join(a.out, "study.svg"))
    print("\n".join(md))


if __name__ == "__main__":
    main()
