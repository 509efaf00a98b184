#!/usr/bin/env python3
"""Bad input: each case gets one clear message (what and where), a non-zero exit, no crash."""
import os, re, shutil, subprocess
import numpy as np
from common import Checks, ROOT, compile_model, gen_unet, run, tmpdir, tool

c = Checks()
d = tmpdir()


def expect_error(args, *needles, what, follow_on=()):
    """The command fails with exactly one error line ("error: ..." or MLIR's "file:line:col: error: ...")
    that holds every needle; follow_on names error lines tolerated after it (MLIR's own for the same op)."""
    p = run(args, check=False)
    err = p.stderr
    lines = [l for l in err.splitlines() if re.search(r"(^|: )error: ", l) and not any(f in l for f in follow_on)]
    ok = p.returncode > 0 and all(n in err for n in needles) and len(lines) == 1
    # A crash shows as a negative return code (a signal) or an uncaught exception.
    ok = ok and "terminate called" not in err and "Assertion" not in err and "Stack dump" not in err
    first = lines[0].strip() if lines else "(none)"
    c.check(ok, f"{what}: exit {p.returncode}, message: {first}")
    if not ok:
        print(err)


def write(name, text):
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write(text)
    return path


# Malformed IR: a syntax error, reported at its file:line:col.
bad = write("bad_syntax.mlir", 'module {\n  func.func @forward() -> tensor<f32> {\n    %x = graph.input "x" : tensor<4x3xf32\n  }\n}\n')
expect_error([tool("mantissa"), "compile", bad, "-o", os.path.join(d, "x.plan")], "bad_syntax.mlir:3:", what="malformed IR")

# Wrong shapes: a linear layer whose weight does not match its input.
shapes = write("bad_shapes.mlir", '''module attributes {graph.model = "m", graph.task = "classification", graph.num_classes = 4 : i64} {
  func.func @forward() -> (tensor<f32>, tensor<8x4xf32>) {
    %x = graph.input "x" : tensor<8x3xf32>
    %y = graph.input "y" : tensor<8xi32>
    %w = graph.param "fc.weight" {init = "uniform", bound = 0.5} : tensor<4x5xf32>
    %z = graph.linear %x, %w : tensor<8x3xf32>, tensor<4x5xf32> -> tensor<8x4xf32>
    %l = graph.softmax_cross_entropy %z, %y : tensor<8x4xf32>, tensor<8xi32> -> tensor<f32>
    return %l, %z : tensor<f32>, tensor<8x4xf32>
  }
}
''')
# MLIR's parser adds "'graph.linear' op failed to infer returned types" after the op's own message.
expect_error([tool("mantissa"), "compile", shapes, "-o", os.path.join(d, "x.plan")], "bad_shapes.mlir:6:", "features",
             what="wrong shapes", follow_on=("op failed to infer returned types",))

# A policy file naming an op the model does not have.
policy = write("policy.json", '{"default": "fp16", "ops": {"fc9": "fp32"}}')
expect_error([tool("mantissa"), "compile", os.path.join(ROOT, "models", "mlp_digits.mlir"), "--precision", policy,
              "-o", os.path.join(d, "x.plan")], "fc9", what="unknown op in a policy file")

# A missing model file.
expect_error([tool("mantissa"), "compile", os.path.join(d, "nope.mlir"), "-o", os.path.join(d, "x.plan")], "nope.mlir", what="missing model file")

# Plans: truncated, bit-flipped, missing.
plan = compile_model("mlp_digits", os.path.join(d, "good.plan"))
data = open(plan, "rb").read()
trunc = os.path.join(d, "truncated.plan")
open(trunc, "wb").write(data[: len(data) // 2])
expect_error([tool("mantissa-run"), "train", trunc, "--steps", "1"], "truncated.plan", what="truncated plan")
# The checksum covers the whole file (plan/PlanIntegrity.h), so every flip must be refused before
# training, with one message that names the damage: the identifier, FlatBuffers verification, the
# version, or the checksum.
flips, crashes, wrong = 0, 0, []
rng = np.random.default_rng(0)
path = os.path.join(d, "flipped.plan")
damage = tuple(f"error: {path}: {what}" for what in ("corrupt plan (", "plan version ", "not a Mantissa plan ("))
for k in range(40):  # flip bytes all over the file, in the header (offsets) most of all
    pos = int(rng.integers(0, 512)) if k < 30 else int(rng.integers(0, len(data)))
    b = bytearray(data)
    b[pos] ^= 1 << int(rng.integers(0, 8))
    open(path, "wb").write(bytes(b))
    p = run([tool("mantissa-run"), "train", path, "--steps", "1", "--quiet"], check=False)
    lines = [l for l in p.stderr.splitlines() if "error" in l]
    if p.returncode < 0 or "terminate called" in p.stderr:
        crashes += 1
        print(f"crash with byte {pos} flipped: {p.returncode} {p.stderr[-300:]}")
    elif p.returncode > 0 and len(lines) == 1 and lines[0].startswith(damage):
        flips += 1
    else:
        wrong.append(f"byte {pos}: exit {p.returncode}, {p.stderr.strip()[-200:] or '(no message)'}")
c.check(flips == 40, f"bit-flipped plans: {flips} of 40 refused with one message naming the damage, {crashes} crashes"
        + (f"; first other: {wrong[0]}" if wrong else ""))
expect_error([tool("mantissa-run"), "train", os.path.join(d, "missing.plan")], "missing.plan", what="missing plan")
# A directory opens as a file but throws on the first read: an error, not std::terminate.
adir = os.path.join(d, "adir.plan")
os.mkdir(adir)
for cmd in (["train"], ["inspect"], ["profile"], ["measure", "--json", os.path.join(d, "m.json")]):
    expect_error([tool("mantissa-run"), cmd[0], adir, *cmd[1:]], "adir.plan: cannot read: Is a directory",
                 what=f"a directory as the plan ({cmd[0]})")
expect_error([tool("mantissa"), "inspect", adir], "adir.plan: cannot read: Is a directory",
             what="a directory as the plan (mantissa inspect)")

# Data: wrong shape, NaN, missing.
x = np.random.default_rng(1).random((100, 3), dtype=np.float32)
y = np.zeros(100, dtype=np.int64)
np.save(os.path.join(d, "x3.npy"), x); np.save(os.path.join(d, "y.npy"), y)
expect_error([tool("mantissa-run"), "train", plan, "--data", f"{d}/x3.npy,{d}/y.npy", "--steps", "1"], "x3.npy", "[N,64]", what="data of the wrong shape")
# The right number of elements in another shape: refused, not reshaped ([N,8,8] is not [N,64]).
np.save(os.path.join(d, "x888.npy"), np.random.default_rng(1).random((100, 8, 8), dtype=np.float32))
expect_error([tool("mantissa-run"), "train", plan, "--data", f"{d}/x888.npy,{d}/y.npy", "--steps", "1"],
             "x888.npy: expected inputs of shape [N,64] (N samples of [64]), got float32 [100,8,8]",
             what="data of [N,8,8] for a [N,64] model")
x = np.random.default_rng(1).random((100, 64), dtype=np.float32)
x[19, 5] = np.nan
np.save(os.path.join(d, "xnan.npy"), x)
expect_error([tool("mantissa-run"), "train", plan, "--data", f"{d}/xnan.npy,{d}/y.npy", "--steps", "1"], "xnan.npy", "NaN", what="NaN in the data")
expect_error([tool("mantissa-run"), "train", plan, "--data", f"{d}/none.npy,{d}/y.npy", "--steps", "1"], "none.npy", what="missing data file")
expect_error([tool("mantissa-run"), "train", plan, "--load", f"{d}/none.safetensors", "--steps", "1"], "none.safetensors", what="missing checkpoint")
expect_error([tool("mantissa-run"), "train", plan, "--bogus"], "--bogus", what="unknown option")
# Numbers out of range or with trailing text are refused, not clamped or cut short.
expect_error([tool("mantissa-run"), "train", plan, "--steps", "99999999999999999999"],
             "--steps '99999999999999999999': too large", what="--steps past 2^63")
expect_error([tool("mantissa-run"), "train", plan, "--threads", "4294967297"],
             "--threads '4294967297': too large", what="--threads past an int")
expect_error([tool("mantissa-run"), "train", plan, "--held-out-fraction", "0.5abc"],
             "--held-out-fraction '0.5abc': expected a number in (0, 1)", what="--held-out-fraction 0.5abc")
expect_error([tool("mantissa-run"), "measure", plan, "--json", os.path.join(d, "m.json"), "--backend", "cpu",
              "--steps", "9223372036854775800"], "'--steps' '9223372036854775800': too large",
             what="measure --steps whose warmup + steps overflows")
expect_error([tool("mantissa-run"), "inspect", "--numerics", plan, "--threads", "abc"],
             "--threads needs a non-negative integer, got 'abc'", what="inspect --numerics --threads abc")
expect_error([tool("mantissa-run"), "inspect", "--numerics", plan, "--steps", "99999999999999999999"],
             "--steps needs a non-negative integer, got '99999999999999999999'", what="inspect --numerics --steps past 2^63")
# Out of memory generating nowcast data (2.5 PB asked for): what and how much, not a bare
# "out of memory".
unet = compile_model(gen_unet(os.path.join(d, "unet.mlir"), 4, 2, 16, 2), os.path.join(d, "unet.plan"), "--arch", "none")
expect_error([tool("mantissa-run"), "train", unet, "--steps", "1", "--train-samples", "99999999999"],
             "--data nowcast: out of memory generating 99999999999 training and 256 held-out samples of 16x16",
             "--train-samples", what="nowcast data too large for memory")
# No held-out samples: no held-out figures at all (it printed "persistence MSE 0", a baseline of nothing).
import json
p = run([tool("mantissa-run"), "train", unet, "--steps", "1", "--quiet", "--held-out-samples", "0",
         "--json", os.path.join(d, "ho0.json")])
ev = json.load(open(os.path.join(d, "ho0.json")))["eval"]
c.check("persistence" not in p.stdout and "held-out" not in p.stdout and ev.get("samples") == 0
        and "persistence_mse" not in ev, f"--held-out-samples 0: no held-out figures: {ev}")
expect_error([tool("mantissa-run"), "train", plan, "--steps", "1", "--data", ""],
             "--data '': expected digits, nowcast or X.npy,Y.npy", what="--data ''")
# --resume with nothing to resume from: an error naming the folder, not a silent start from step 0;
# a folder that was not there is not made.
os.mkdir(os.path.join(d, "empty_ck"))
for ck in ("empty_ck", "no_ck"):
    expect_error([tool("mantissa-run"), "train", plan, "--steps", "1", "--quiet", "--checkpoint", os.path.join(d, ck), "--resume"],
                 f"--resume: no checkpoint in {os.path.join(d, ck)} ({os.path.join(d, ck, 'checkpoint.safetensors')} does not exist)",
                 what=f"--resume from {ck}")
c.check(os.listdir(os.path.join(d, "empty_ck")) == [] and not os.path.exists(os.path.join(d, "no_ck")),
        "--resume without a checkpoint writes none")
# A directory where a JSON file is expected: said to be one, not "invalid JSON at byte 0".
expect_error([tool("mantissa-run"), "inspect", "--cost", "h100", "--fit", adir, "-o", os.path.join(d, "fit.json")],
             "adir.plan: is a directory, expected a file", what="inspect --cost --fit DIR")
expect_error([tool("mantissa-run"), "inspect", "--cost", adir, plan], "adir.plan: is a directory, expected a file",
             what="inspect --cost DIR")
# Files written after the whole run: a folder that is not there is refused before training.
for opt, name in (("--save", "s.safetensors"), ("--json", "s.json")):
    expect_error([tool("mantissa-run"), "train", plan, "--steps", "1", opt, os.path.join(d, "nofolder", name)],
                 f"{opt} {os.path.join(d, 'nofolder', name)}: no folder {os.path.join(d, 'nofolder')} to write it in",
                 what=f"{opt} into a missing folder")
expect_error([tool("mantissa-run"), "train", plan, "--steps", "1", "--save", adir],
             f"--save {adir}: is a directory; name a file", what="--save naming a directory")
expect_error([tool("mantissa-run"), "train", plan, "--steps", "1", "--checkpoint", os.path.join(d, "ck0"), "--every", "0"],
             "--every '0': expected a number of steps >= 1", what="--every 0")
# An output that would replace an input, or --save in no known format: refused before training.
victim = os.path.join(d, "victim.plan")
shutil.copy(plan, victim)
expect_error([tool("mantissa-run"), "train", victim, "--steps", "1", "--json", victim],
             f"--json {victim} is the input {victim}; name it differently", what="train --json PLAN")
c.check(open(victim, "rb").read() == data, "train --json PLAN leaves the plan as it was")
expect_error([tool("mantissa-run"), "train", plan, "--steps", "1", "--data", f"{d}/x3.npy,{d}/y.npy", "--csv", f"{d}/y.npy"],
             f"--csv {d}/y.npy is the input {d}/y.npy; name it differently", what="train --csv over --data's labels")
expect_error([tool("mantissa-run"), "train", plan, "--steps", "1", "--save", os.path.join(d, "out.bin")],
             "--save " + os.path.join(d, "out.bin") + ": unknown checkpoint format; name the file *.safetensors or *.npz",
             what="train --save in no known format")
# measure --json: written after every plan has run; its folder is checked first, and naming a
# plan (which it would overwrite) is refused, the plan unchanged.
expect_error([tool("mantissa-run"), "measure", plan, "--backend", "cpu", "--json", os.path.join(d, "nofolder", "m.json")],
             f"--json {os.path.join(d, 'nofolder', 'm.json')}: no folder {os.path.join(d, 'nofolder')} to write it in",
             what="measure --json into a missing folder")
shutil.copy(plan, victim)
expect_error([tool("mantissa-run"), "measure", victim, "--backend", "cpu", "--steps", "1", "--warmup", "0", "--json", victim],
             f"--json {victim} is the plan {victim}; name the results differently", what="measure --json PLAN")
c.check(open(victim, "rb").read() == data, "measure --json PLAN leaves the plan as it was")
# A checkpoint directory that is a file: one error naming the option, not std::terminate.
expect_error([tool("mantissa-run"), "train", plan, "--steps", "1", "--checkpoint", plan],
             f"--checkpoint {plan}: cannot make it a directory", what="--checkpoint naming a file")

# More threads than the system will start (a 2 GB address space: about 220 stacks): an error
# naming --threads, not std::terminate from the half-built pool.
import resource
p = run([tool("mantissa-run"), "train", plan, "--steps", "1", "--quiet", "--threads", "100000"], check=False,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30)))
c.check(p.returncode == 1 and "error: --threads 100000: the system refused to start thread" in p.stderr
        and "terminate called" not in p.stderr, f"--threads 100000: exit {p.returncode}, {p.stderr.strip()[-200:]}")

shutil.rmtree(d)
c.done()
