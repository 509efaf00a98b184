#!/usr/bin/env python3
"""A small unet (w=4, L=2) trains on 32x32 nowcast data on the CPU to a validation MSE below the
persistence baseline (repeating the last input frame)."""
import os
from common import Checks, compile_model, gen_unet, tmpdir, train

c = Checks()
d = tmpdir()
src = gen_unet(os.path.join(d, "unet_small.mlir"), 4, 2, 32, 8)
plan = compile_model(src, os.path.join(d, "unet.plan"), "--precision", "fp32", "--optimizer", "adam", "--lr", "0.003")
s = train(plan, "--data", "nowcast", "--train-samples", "512", "--held-out-samples", "128", "--epochs", "6",
          json_out=os.path.join(d, "unet.json"))
e = s["eval"]
print(f"unet w4 L2 32x32: validation MSE {e['mse']:.6f}, persistence {e['persistence_mse']:.6f}, final loss {s['final_loss']:.6f}")
c.check(e["mse"] < e["persistence_mse"], f"validation MSE {e['mse']:.6f} < persistence baseline {e['persistence_mse']:.6f}")
c.done()
