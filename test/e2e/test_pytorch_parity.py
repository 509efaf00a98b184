#!/usr/bin/env python3
"""Against PyTorch on the CPU: mlp_digits and cnn_digits, same initial parameters (through the
checkpoint format) and data order, fp32, momentum SGD and Adam: after 20 steps every parameter
agrees within 1e-4 relative."""
import os
import numpy as np
import torch, torch.nn.functional as F
from sklearn.datasets import load_digits
from common import Checks, compile_model, tmpdir, train
import torch_models

torch.set_num_threads(2)
c = Checks()
d = tmpdir()
digits = load_digits()
train_rows = np.arange(len(digits.target)) % 5 != 4  # Mantissa's fixed split: every 5th row held out
X = (digits.data[train_rows] / 16.0).astype(np.float32)
Y = digits.target[train_rows].astype(np.int64)
STEPS, B = 20, 64

for model in ["mlp_digits", "cnn_digits"]:
    for opt_name, opts in [("sgd", ["--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.9"]),
                           ("adam", ["--optimizer", "adam", "--lr", "0.001"])]:
        plan = compile_model(model, os.path.join(d, f"{model}-{opt_name}.plan"), "--precision", "fp32", "--seed", "7", *opts)
        init, final = os.path.join(d, "init.safetensors"), os.path.join(d, "final.safetensors")
        train(plan, "--steps", "0", "--save", init)
        train(plan, "--steps", str(STEPS), "--no-shuffle", "--data", "digits", "--save", final)

        net = torch_models.make(model)
        torch_models.load_mantissa_state(net, init)
        opt = (torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9) if opt_name == "sgd"
               else torch.optim.Adam(net.parameters(), lr=0.001))
        for k in range(STEPS):
            xb = torch.from_numpy(X[k * B:(k + 1) * B])
            if model == "cnn_digits":
                xb = xb.reshape(B, 1, 8, 8)
            yb = torch.from_numpy(Y[k * B:(k + 1) * B])
            opt.zero_grad()
            F.cross_entropy(net(xb), yb).backward()
            opt.step()
        ours = torch_models.read_safetensors(final)
        worst = 0.0
        for name, p in net.state_dict().items():
            ref = p.detach().numpy().astype(np.float64)
            got = ours[name].astype(np.float64)
            rel = np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-12)
            worst = max(worst, rel)
        init_st = torch_models.read_safetensors(init)
        moved = max(np.abs(ours[n] - init_st[n]).max() for n in net.state_dict())
        c.check(worst <= 1e-4 and moved > 1e-3,
                f"{model} {opt_name}: after {STEPS} steps max relative difference to PyTorch {worst:.2e} (<= 1e-4); parameters moved by up to {moved:.3f}")
c.done()
