#!/usr/bin/env python3
"""`train --energy` and its outputs on the CPU backend (issue 4), against oracles that do not
come from the attribution itself:
  - no meter: "not measured", no joule anywhere (text, CSV, JSON null, HTML);
  - a synthetic meter of constant P watts (--meter synthetic:P, tests only): every kernel's
    attributed power is P, kernels + idle = the measured total (conservation), and the energy
    to a target loss is P x the seconds to it, within the reported bound;
  - the trace is valid Chrome trace JSON with one slice per timed step;
  - the HTML page renders in headless Chromium with its plots and their data points."""
import csv, json, os, re, shutil, subprocess, sys
from common import Checks, compile_model, run, tmpdir, tool

c = Checks()
d = tmpdir()
plan = compile_model("mlp_digits", os.path.join(d, "m.plan"), "--precision", "fp16", "--lr", "0.05",
                     "--momentum", "0.9")
env = dict(os.environ, XDG_CACHE_HOME=os.path.join(d, "cache"))  # no calibration cached
rt = tool("mantissa-run")
out = {k: os.path.join(d, k) for k in ("none.json", "none.csv", "none.trace.json", "none.html",
                                       "syn.json", "syn.csv", "syn.trace.json", "syn.html")}

# --- no meter -------------------------------------------------------------------------------
p = run([rt, "train", plan, "--quiet", "--threads", "2", "--steps", "120", "--energy", "--meter", "none",
         "--target-loss", "1.0", "--json", out["none.json"], "--csv", out["none.csv"],
         "--trace", out["none.trace.json"], "--energy-report", out["none.html"]], env=env)
text = p.stdout
c.check("energy: not measured" in text, "no meter: the table says 'energy: not measured'")
c.check(not re.search(r"\d\s*(±\s*[\d.]+\s*)?J\b", text), "no meter: no joule figure is printed")
c.check("SoftmaxCrossEntropy" in text and "fp16" in text and "Gemm" in text,
        "the table names op classes and precisions")
e = json.load(open(out["none.json"]))["energy"]
a = e["attribution"]
c.check(e["timeline"] == "cpu" and e["device_kernels"] == {} and "energy (timeline: cpu: CPU steady_clock" in text,
        "the report names the timeline (JSON and the text header)")
c.check(a["measured"] is False and all(k["joules"] is None for k in a["kernels"])
        and a["measured_joules"] is None, "no meter: JSON says measured false, every joule null")
c.check(len(a["kernels"]) > 10 and all(k["launches"] == 120 for k in a["kernels"]),
        f"every train_step kernel timed once per step ({len(a['kernels'])} kernels x 120 launches)")
t = e["target"]
c.check(t["reached"] and t["seconds"] > 0 and t["joules"] is None,
        f"target loss 1.0 reached at step {t['step']} after {t['seconds']:.3f} s, joules null")
rows = list(csv.DictReader(open(out["none.csv"])))
c.check(rows and all(r["joules"] == "not measured" for r in rows), "no meter: CSV says 'not measured'")
trace = json.load(open(out["none.trace.json"]))
slices = [ev for ev in trace["traceEvents"] if ev.get("ph") == "X"]
c.check(len(slices) == sum(k["launches"] for k in a["kernels"])
        and not any(ev.get("ph") == "C" for ev in trace["traceEvents"]),
        f"trace: valid JSON, {len(slices)} slices (one per timed step), no power track without a meter")

# --- synthetic meter of constant power --------------------------------------------------------
# Long enough for two 1 s windows on this machine: the unmeasured run gives the time per step,
# for 5 s of steps (a clean clone's CI once ran 3.2 s of them in under 2 s: the pilot had
# shared the 2 cores with a build).
per_step = json.load(open(out["none.json"]))["wall_seconds"] / 120
steps = str(max(200, int(5.0 / per_step)))
P = 200.0
run([rt, "train", plan, "--quiet", "--threads", "2", "--steps", steps, "--energy", "--meter", f"synthetic:{P:g}",
     "--target-loss", "0.3", "--json", out["syn.json"], "--csv", out["syn.csv"],
     "--trace", out["syn.trace.json"], "--energy-report", out["syn.html"]], env=env)
e = json.load(open(out["syn.json"]))["energy"]
a = e["attribution"]
c.check(a["measured"] and len(a["windows"]) >= 2, f"synthetic: {len(a['windows'])} windows over {steps} steps")
c.check(all(w["end"] - w["start"] >= 1.0 for w in a["windows"]), "every window lasts >= 1 s")
total = sum(k["joules"] for k in a["kernels"]) + a["idle"]["joules"]
c.check(abs(total - a["measured_joules"]) <= 1e-9 * a["measured_joules"],
        f"conservation: kernels + idle = {total:.6f} J = measured {a['measured_joules']:.6f} J")
# The oracle for each window: the counter changed somewhere in the poll interval before each
# of its two boundaries, so its measured joules are P x (its duration +/- the longer of those
# intervals), which the run records (boundary_lag_seconds: milliseconds on an idle machine,
# longer when the host delays a poll). A bound from the run's own timing, so a loaded machine
# does not fail it, but an attribution off by a tick (P x 0.1 s) does.
wins = a["windows"]
def window_err(w):
    return abs(w["measured_joules"] - P * (w["end"] - w["start"]))
c.check(all(window_err(w) <= P * w["boundary_lag_seconds"] + 1e-9 for w in wins)
        and all(w["boundary_lag_seconds"] <= w["lag_seconds"] and w["meter_err_joules"] >= window_err(w) for w in wins),
        "every window's joules are P x its duration within P x its boundary lag ("
        + ", ".join(f"{window_err(w):.3f} J <= {P * w['boundary_lag_seconds']:.3f} J" for w in wins)
        + "), and its meter error covers that")
rel = max(w["boundary_lag_seconds"] / (w["end"] - w["start"]) for w in wins)
# And the lag itself is what a poll every 5 ms gives, not a tick or more: otherwise the
# bounds above would widen with it.
c.check(rel <= 0.05 and all(w["boundary_lag_seconds"] < 0.05 for w in wins),
        f"the boundary lags are short: at most {1e3 * max(w['boundary_lag_seconds'] for w in wins):.1f} ms "
        f"(< 50 ms, half the meter's tick), {100 * rel:.2f} % of a window")
avg = a["measured_joules"] / a["measured_seconds"]
c.check(abs(avg - P) <= rel * P + 1e-9, f"measured average power {avg:.2f} W vs the meter's {P:g} W (bound {100 * rel:.2f} %)")
big = [k for k in a["kernels"] if k["seconds_in_windows"] > 0.05]
worst = max(abs(k["watts"] - P) / P for k in big)
c.check(big and worst <= rel + 1e-9,
        f"every kernel's attributed power is {P:g} W within {100 * worst:.2f} % (<= {100 * rel:.2f} %, the boundary lag)")
c.check(all(abs(k["joules"] - P * k["seconds_in_windows"]) <= k["joules_err"] for k in big),
        "every kernel's error bar covers its error against P x its seconds in windows")
c.check("calibration: none cached" in open(out["syn.html"]).read() and e["calibrated"] is False,
        "no calibration: the fallback is stated")
t = e["target"]
ok = t["reached"] and abs(t["joules"] - P * t["seconds"]) <= t["joules_err"] + 1e-6
c.check(ok, f"energy to target: {t['joules']:.3f} ± {t['joules_err']:.3f} J vs P x {t['seconds']:.3f} s = "
        f"{P * t['seconds']:.3f} J")
ps = e["per_step"]
c.check(ps["joules"] is not None and abs(ps["joules"] - ps["kernel_joules"] - ps["idle_joules"]) < 1e-9,
        f"per step: {ps['joules']:.4f} J = kernels {ps['kernel_joules']:.4f} + idle {ps['idle_joules']:.4f}")
rows = list(csv.DictReader(open(out["syn.csv"])))
byname = {k["name"]: k for k in a["kernels"]}
c.check(all(abs(float(r["joules"]) - byname[r["kernel"]]["joules"]) < 1e-9 * max(1, byname[r["kernel"]]["joules"])
            for r in rows if r["kernel"] != "(idle)") and rows[0]["op_class"],
        "CSV carries the JSON's joules and the op class")
trace = json.load(open(out["syn.trace.json"]))
power = [ev for ev in trace["traceEvents"] if ev.get("ph") == "C" and ev["name"] == "power"]
c.check(len(power) == len(a["windows"]) + 1 and all(abs(ev["args"]["watts"] - P) <= rel * P + 1e-9 for ev in power[:-1]),
        f"trace: a power counter track of {len(power)} points at {P:g} W")

# --- the HTML page in headless Chromium --------------------------------------------------------
chromium = shutil.which("chromium") or shutil.which("chromium-browser")
if not chromium:
    print("SKIP: the HTML render check (no chromium: apt-get install chromium)")
else:
    for name, measured in (("syn.html", True), ("none.html", False)):
        html = out[name]
        text = open(html).read()
        c.check(not re.search(r"""(src|href)\s*=\s*["'](?!#)""", text), f"{name}: self-contained (no src/href)")
        r = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                            "file://" + html], capture_output=True, text=True, timeout=120)
        dom = r.stdout
        ids = re.findall(r'<svg id="([\w-]+)" class="plot"', dom)
        pts = {i: int(n) for i, n in re.findall(r'<svg id="([\w-]+)" class="plot"[^>]*data-points="(\d+)"', dom)}
        circles = len(re.findall(r'<circle class="point"', dom))
        bars = len(re.findall(r'<rect class="bar"', dom))
        want = ["per-step", "by-kernel", "by-op-class", "by-precision", "loss"]
        c.check(r.returncode == 0 and ids == want and all(pts[i] > 0 for i in want)
                and circles == pts["per-step"] + pts["loss"] and bars >= pts["by-kernel"],
                f"{name}: Chromium renders {len(ids)} plots, {circles} points, {bars} bars")
        c.check(("not measured" in dom) != measured, f"{name}: {'joules' if measured else 'not measured'} shown")
c.done()
