#!/usr/bin/env python3
"""`mantissa-run profile`: calibration by replay on the CPU backend (issue 4). With no meter it
reports time only; with a synthetic meter of constant P watts (tests only) every replayed kernel
and the idle baseline draw P, so J/launch must be P x its time per launch; the calibration is
cached per plan, device and meter and `train --energy` then uses it. Heat matching runs only with a
thermometer (a synthetic one reading a constant temperature here: the plumbing, not the physics, which
HeatMatchTest covers) and is said once either way. Bad options are errors."""
import glob, json, os, re
from common import Checks, compile_model, run, tmpdir, tool

c = Checks()
d = tmpdir()
plan = compile_model("mlp_digits", os.path.join(d, "m.plan"), "--precision", "fp16")
env = dict(os.environ, XDG_CACHE_HOME=os.path.join(d, "cache"))
rt = tool("mantissa-run")

nocal = os.path.join(d, "none.json")
p = run([rt, "profile", plan, "--meter", "none", "--top", "3", "--threads", "2", "--out", nocal], env=env)
c.check("energy: not measured" in p.stdout and not re.search(r"\d\s*J\b", p.stdout)
        and len(re.findall(r"\d+\.\d+ (us|ms)", p.stdout)) == 3,
        "no meter: time per launch of the top 3 kernels, no joules")
c.check(not glob.glob(os.path.join(d, "cache", "mantissa", "calib", "*.json")), "no meter: nothing cached")
c.check(not os.path.exists(nocal) and f"--out {nocal} not written: no energy was measured" in p.stderr,
        "no meter: --out is not written, and that is said")
c.check("\ntimeline: cpu: CPU steady_clock around each step\n" in p.stdout, "profile names the timeline that ranked the kernels")

P = 150.0
out = os.path.join(d, "calib.json")
p = run([rt, "profile", plan, "--meter", f"synthetic:{P:g}", "--top", "2", "--max-repeats", "2", "--threads", "2",
         "--out", out], env=env)
print(p.stdout)
cal = json.load(open(out))
cached = glob.glob(os.path.join(d, "cache", "mantissa", "calib", "*.json"))
c.check(len(cached) == 1 and json.load(open(cached[0])) == cal, f"cached per plan, device and meter: {cached}")
c.check(cal.get("timeline") == "cpu", "the calibration file names the timeline")
c.check(p.stdout.count("\nheat: not matched: the meter has no thermometer") == 1 and cal["training_celsius"] is None,
        "no thermometer: no heat matching, said once, no training temperature")
ks = cal["kernels"]
c.check(len(ks) == 2 and all(k["repeats"] >= 2 for k in ks + [cal["idle"]]), "2 kernels and the idle baseline, >= 2 windows each")
# The spread bounds the checks below, so it must itself be small: a constant P, 1 s windows,
# a 1 mJ counter and ~5 ms boundary calls leave well under 5 %.
c.check(all(k["rel_spread"] < 0.05 for k in ks + [cal["idle"]]),
        "every spread is under 5 %: " + ", ".join(f"{100 * k['rel_spread']:.2f} %" for k in ks + [cal["idle"]]))
for k in ks + [cal["idle"]]:
    c.check(abs(k["watts"] - P) <= max(0.02, k["rel_spread"]) * P,
            f"{k['name']}: {k['watts']:.2f} W, spread {100 * k['rel_spread']:.2f} % vs {P:g} W")
for k in ks:
    want = P * k["seconds_per_launch"]
    c.check(abs(k["joules_per_launch"] - want) <= max(0.02, k["rel_spread"]) * want,
            f"{k['name']}: {k['joules_per_launch'] * 1e3:.4f} mJ/launch = P x time/launch ({want * 1e3:.4f} mJ)")

js = os.path.join(d, "t.json")
p = run([rt, "train", plan, "--quiet", "--threads", "2", "--steps", "300", "--energy", "--meter", f"synthetic:{P:g}",
         "--json", js], env=env)
e = json.load(open(js))["energy"]
steps = int(re.search(r"^function train_step: (\d+) steps", run([tool("mantissa"), "inspect", plan]).stdout,
                      re.M).group(1))
c.check(e["calibrated"] and f"2 of {steps} kernels replayed" in e["calibration"],
        f"train uses it ({steps} train_step kernels): {e['calibration']}")

# A thermometer reading 55 °C: heated until steady (the 1 s means 5 s apart agree), every window
# starts there, the file and train --energy's calibration line say so.
env55 = dict(os.environ, XDG_CACHE_HOME=os.path.join(d, "cache55"))
out55 = os.path.join(d, "calib55.json")
p = run([rt, "profile", plan, "--meter", f"synthetic:{P:g}:55", "--top", "1", "--max-repeats", "2", "--threads", "2",
         "--out", out55], env=env55)
print(p.stdout)
m = re.search(r"^heat: training temperature 55\.0 °C: steady after ([\d.]+) s of train_step back to back", p.stdout, re.M)
c.check(m and 6 <= float(m.group(1)) < 10 and p.stdout.count("\nheat: ") == 1,
        f"heated until steady, said once: {m and m.group(0)}")
cal = json.load(open(out55))
c.check(cal["training_celsius"] == 55 and all(k["celsius_start"] == k["celsius"] == 55 for k in cal["kernels"] + [cal["idle"]]),
        "training temperature and each kernel's window start and end temperatures in the file")
c.check(re.search(r"^\(idle\) .* 55\.0>55\.0 ", p.stdout, re.M), "the table shows start>end °C")
# Columns are right-aligned: "°C" ends in the header where "55.0>55.0" ends in the rows, counted
# in characters (printf pads by bytes, and "°" is two of them in UTF-8).
hdr = re.search(r"^kernel .* °C .*$", p.stdout, re.M)
idle = re.search(r"^\(idle\) .* 55\.0>55\.0 .*$", p.stdout, re.M)
c.check(hdr and idle and hdr.group(0).index("°C") + 2 == idle.group(0).index("55.0>55.0") + 9
        and len(hdr.group(0)) == len(idle.group(0)),
        f"the °C column lines up with its values:\n{hdr and hdr.group(0)}\n{idle and idle.group(0)}")
js = os.path.join(d, "t55.json")
run([rt, "train", plan, "--quiet", "--threads", "2", "--steps", "20", "--energy", "--meter", f"synthetic:{P:g}:55",
     "--json", js], env=env55)
cdesc = json.load(open(js))["energy"]["calibration"]
c.check("heat-matched at 55 °C" in cdesc, f"train names the training temperature: {cdesc}")
p = run([rt, "profile", plan, "--meter", f"synthetic:{P:g}:55", "--top", "1", "--max-repeats", "1", "--threads", "2",
         "--no-heat", "--out", out55], env=env55)
c.check(p.stdout.count("\nheat: off (--no-heat)") == 1 and json.load(open(out55))["training_celsius"] is None,
        "--no-heat: said once, no training temperature")
bad = run([rt, "profile", plan, "--heat-tolerance", "0"], check=False, env=env)
c.check(bad.returncode != 0 and "--heat-tolerance '0': expected a positive number" in bad.stderr,
        "profile --heat-tolerance 0: one clear error")

bad = run([rt, "train", plan, "--energy", "--meter", "bogus"], check=False, env=env)
c.check(bad.returncode != 0 and "error: --meter bogus: expected nvml, rapl, none or auto" in bad.stderr,
        "--meter bogus: one clear error")
bad = run([rt, "profile", plan, "--window", "inf"], check=False, env=env, timeout=60)
c.check(bad.returncode != 0 and "--window 'inf': expected a positive number" in bad.stderr,
        "profile --window inf: refused (a window that never closes)")
for flag, v in (("--max-repeats", "1e20"), ("--top", "1.5"), ("--threads", "99999999999")):
    bad = run([rt, "profile", plan, flag, v], check=False, env=env, timeout=60)
    c.check(bad.returncode != 0 and f"{flag} '{v}': expected a positive integer" in bad.stderr,
            f"profile {flag} {v}: refused")
bad = run([rt, "profile", plan, "--window", "0.5"], check=False, env=env)
c.check(bad.returncode != 0 and "shorter than 1 s" in bad.stderr, "profile --window 0.5: refused (windows >= 1 s)")
bad = run([rt, "train", plan, "--target-loss", "low"], check=False, env=env)
c.check(bad.returncode != 0 and "--target-loss 'low': expected a number" in bad.stderr, "--target-loss low: error")
c.done()
