#!/usr/bin/env python3
"""A small unet (w=4, L=2) trains on 32x32 nowcast data on the CPU to a validation MSE below the
persistence baseline (repeating the last input frame)."""
import os, subprocess, sys
from common import Checks, ROOT, compile_model, tmpdir, train

c = Checks()
d = tmpdir()
src = os.path.join(d, "unet_small.mlir")
with open(src, "w") as f:
    subprocess.run([sys.executable, os.path.join(ROOT, "models", "gen_unet.py"), "--width", "4", "--levels", "2",
                    "--size", "32", "--batch", "8"], stdout=f, check=True)
plan = compile_model(src, os.path.join(d, "unet.plan"), "--precision", "fp32", "--optimizer", "adam", "--lr", "0.003")
s = train(plan, "--data", "nowcast", "--train-samples", "512", "--held-out-samples", "128", "--epochs", "6",
          json_out=os.path.join(d, "unet.json"))
e = s["eval"]
print(f"unet w4 L2 32x32: validation MSE {e['mse']:.6f}, persistence {e['persistence_mse']:.6f}, final loss {s['final_loss']:.6f}")
c.check(e["mse"] < e["persistence_mse"], f"validation MSE {e['mse']:.6f} < persistence baseline {e['persistence_mse']:.6f}")
c.done()
