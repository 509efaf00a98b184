#!/usr/bin/env python3
"""The demo's model reaches 0.95 held-out accuracy, and fp16/bf16 AMP training of mlp_digits
and cnn_digits reaches the held-out accuracy of fp32 within 0.5 point (same seed and steps)."""
import os
from common import Checks, compile_model, tmpdir, train

c = Checks()
d = tmpdir()
setups = {
    "mlp_digits": (["--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.9"], "30"),
    "cnn_digits": (["--optimizer", "adam", "--lr", "0.003"], "30"),
}
for model, (opt, epochs) in setups.items():
    acc = {}
    for prec in ["fp32", "fp16", "bf16"]:
        plan = compile_model(model, os.path.join(d, f"{model}-{prec}.plan"), "--precision", prec, "--seed", "3", *opt)
        s = train(plan, "--data", "digits", "--epochs", epochs, "--seed", "3", json_out=os.path.join(d, f"{model}-{prec}.json"))
        acc[prec] = s["eval"]["accuracy"]
        print(f"{model} {prec}: held-out accuracy {acc[prec]:.4f}, final loss {s['final_loss']:.4f}, "
              f"skipped {s['skipped_steps']}, loss scale {s['loss_scale']}")
    c.check(acc["fp32"] >= 0.95, f"{model} fp32 held-out accuracy {acc['fp32']:.4f} >= 0.95")
    for prec in ["fp16", "bf16"]:
        c.check(acc[prec] >= acc["fp32"] - 0.005,
                f"{model} {prec} accuracy {acc[prec]:.4f} within 0.5 point of fp32 {acc['fp32']:.4f} (or better)")
c.done()
