#!/usr/bin/env python3
"""The demo's model reaches 0.95 held-out accuracy, and fp16/bf16 AMP training of mlp_digits
and cnn_digits reaches the held-out accuracy of fp32 within 0.5 point (same seed and steps); each
plan's GEMMs and convolutions compute in the precision asked for (mantissa inspect)."""
import os, re
from common import Checks, compile_model, run, tmpdir, tool, train

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
        # A --precision that did nothing would pass the accuracy checks trivially: the plan's GEMMs
        # and convolutions must compute in the element type asked for.
        kinds = re.findall(r" graph\.(?:linear|conv2d) (?:Gemm|Conv2d) (\S+) ", run([tool("mantissa"), "inspect", plan]).stdout)
        want = {"fp32": "f32", "fp16": "f16", "bf16": "bf16"}[prec]
        c.check(bool(kinds) and set(kinds) == {want}, f"{model} {prec}: its {len(kinds)} GEMMs and convolutions compute in "
                f"{want}: {sorted(set(kinds))}")
        s = train(plan, "--data", "digits", "--epochs", epochs, "--seed", "3", json_out=os.path.join(d, f"{model}-{prec}.json"))
        acc[prec] = s["eval"]["accuracy"]
        print(f"{model} {prec}: held-out accuracy {acc[prec]:.4f}, final loss {s['final_loss']:.4f}, "
              f"skipped {s['skipped_steps']}, loss scale {s['loss_scale']}")
    c.check(acc["fp32"] >= 0.95, f"{model} fp32 held-out accuracy {acc['fp32']:.4f} >= 0.95")
    for prec in ["fp16", "bf16"]:
        c.check(acc[prec] >= acc["fp32"] - 0.005,
                f"{model} {prec} accuracy {acc[prec]:.4f} within 0.5 point of fp32 {acc['fp32']:.4f} (or better)")
c.done()
