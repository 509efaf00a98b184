#!/usr/bin/env python3
"""SIGKILL during training, then --resume: the run ends with the same parameters (and optimizer
and loss-scaler state) as an uninterrupted one."""
import os, signal, subprocess, time
import numpy as np
from common import Checks, compile_model, tmpdir, tool, train
import torch_models

c = Checks()
d = tmpdir()
plan = compile_model("mlp_digits", os.path.join(d, "m.plan"), "--precision", "fp16", "--loss-scale", "dynamic",
                     "--optimizer", "adam", "--lr", "0.001")
STEPS = "3000"
ref = os.path.join(d, "ref.safetensors")
train(plan, "--steps", STEPS, "--threads", "2", "--save", ref)

ck = os.path.join(d, "ck")
args = [tool("mantissa-run"), "train", plan, "--steps", STEPS, "--threads", "2", "--quiet", "--checkpoint", ck, "--every", "7"]
proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
path = os.path.join(ck, "checkpoint.safetensors")
deadline = time.time() + 120
while not os.path.exists(path) and time.time() < deadline and proc.poll() is None:
    time.sleep(0.01)
time.sleep(0.2)
killed = proc.poll() is None
if killed:
    proc.send_signal(signal.SIGKILL)
proc.wait()
at = int(torch_models.read_safetensors(path)["trainer.step"]) if os.path.exists(path) else -1
c.check(killed and 0 < at < int(STEPS), f"killed mid-run (SIGKILL) with the last checkpoint at step {at} of {STEPS}")
out = os.path.join(d, "resumed.safetensors")
j = train(plan, "--steps", STEPS, "--threads", "2", "--checkpoint", ck, "--every", "7", "--resume", "--save", out,
          json_out=out + ".json")
# Training is deterministic, so a --resume that loaded nothing and began at step 0 would end equal too.
c.check(at > 0 and j.get("start_step") == at, f"the resumed run starts at the checkpoint's step {at} (start_step {j.get('start_step')})")
A, B = torch_models.read_safetensors(ref), torch_models.read_safetensors(out)
diff = [n for n in A if not np.array_equal(A[n], B[n])]
c.check(not diff and set(A) == set(B), f"resumed run equals the uninterrupted one in all {len(A)} tensors" + (f"; differ: {diff}" if diff else ""))
c.done()
