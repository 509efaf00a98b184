#!/usr/bin/env python3
"""CPU training throughput of Mantissa against PyTorch (eager, CPU), side by side in one run.

    python3 bench/cpu_train.py [--build build] [--steps 300] [--threads 2] [--json out.json]

For mlp_digits and cnn_digits (fp32, SGD with momentum, batch 64, digits data): Mantissa's
`mantissa-run train` reports samples/s measured around its train_step; the PyTorch peer
(bench/torch_models.py) runs the same model, batch, optimizer and thread count over the
same number of steps, timed the same way (forward + backward + update, no data loading).
Prints a table and one JSON object per model; the ratio is Mantissa / PyTorch.
"""
import argparse, json, os, subprocess, sys, tempfile, time
import numpy as np
import torch, torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_models  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def mantissa(build, model, steps, threads, tmp):
    plan = os.path.join(tmp, model + ".plan")
    subprocess.run([os.path.join(build, "bin", "mantissa"), "compile", os.path.join(ROOT, "models", model + ".mlir"),
                    "--precision", "fp32", "--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.9",
                    "-o", plan], check=True)
    out = os.path.join(tmp, model + ".json")
    subprocess.run([os.path.join(build, "bin", "mantissa-run"), "train", plan, "--data", "digits",
                    "--steps", str(steps), "--threads", str(threads), "--quiet", "--json", out],
                   check=True, stdout=subprocess.DEVNULL)
    with open(out) as f:
        return json.load(f)


def pytorch(model, steps, threads):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = torch_models.make(model)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    shape = (64, 64) if model == "mlp_digits" else (64, 1, 8, 8)
    x, y = torch.rand(*shape), torch.randint(0, 10, (64,))
    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(x), y)
        loss.backward(); opt.step()
        return loss
    for _ in range(10): step()
    t = time.perf_counter()
    for _ in range(steps): step()
    dt = time.perf_counter() - t
    return dict(samples_per_second=steps * 64 / dt, final_loss=float(step()))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build", default=os.path.join(ROOT, "build"))
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--json")
    a = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in ["mlp_digits", "cnn_digits"]:
            m = mantissa(a.build, model, a.steps, a.threads, tmp)
            t = pytorch(model, a.steps, a.threads)
            r = dict(model=model, precision="fp32", batch=64, steps=a.steps, threads=a.threads,
                     mantissa_samples_per_second=m["samples_per_second"],
                     pytorch_samples_per_second=t["samples_per_second"],
                     ratio=m["samples_per_second"] / t["samples_per_second"],
                     torch_version=torch.__version__)
            rows.append(r)
            print(json.dumps(r), flush=True)
    print(f"\n{'model':<12} {'mantissa samples/s':>20} {'pytorch samples/s':>20} {'ratio':>8}")
    for r in rows:
        print(f"{r['model']:<12} {r['mantissa_samples_per_second']:>20.0f} {r['pytorch_samples_per_second']:>20.0f} {r['ratio']:>8.2f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
