"""Shared helpers of the end-to-end tests: run the tools, read their outputs."""
import json, os, subprocess, sys, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("MANTISSA_BUILD", os.path.join(ROOT, "build"))
BIN = os.path.join(BUILD, "bin")
sys.path.insert(0, os.path.join(ROOT, "bench"))


def tool(name):
    return os.path.join(BIN, name)


def run(args, check=True, **kw):
    """Runs a command; on failure prints its output and raises."""
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True, errors="replace", **kw)
    if check and p.returncode != 0:
        sys.stderr.write(f"command failed ({p.returncode}): {' '.join(map(str, args))}\n{p.stdout}\n{p.stderr}\n")
        raise SystemExit(1)
    return p


def gen_unet(path, width, levels, size, batch):
    """Writes unet(width, levels) at size x size and this batch (models/gen_unet.py) to path."""
    with open(path, "w") as f:
        subprocess.run([sys.executable, os.path.join(ROOT, "models", "gen_unet.py"), "--width", str(width),
                        "--levels", str(levels), "--size", str(size), "--batch", str(batch)], stdout=f, check=True)
    return path


def small_models(d):
    """mlp_digits, cnn_digits and a unet (w=4, L=2, 16x16, batch 2; written into d), each as
    (name, model, compile options, train options): the models of the whole-plan comparisons
    (e2e.fusion, e2e.arena)."""
    unet = gen_unet(os.path.join(d, "unet_w4_l2.mlir"), 4, 2, 16, 2)
    return [
        ("mlp_digits", "mlp_digits", ["--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.9"], []),
        ("cnn_digits", "cnn_digits", ["--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.9"], []),
        ("unet_w4_l2", unet, ["--optimizer", "adam", "--lr", "0.003"],
         ["--data", "nowcast", "--train-samples", "16", "--held-out-samples", "4"]),
    ]


def compile_model(model, out, *opts):
    src = model if model.endswith(".mlir") else os.path.join(ROOT, "models", model + ".mlir")
    run([tool("mantissa"), "compile", src, "-o", out, *opts])
    return out


def train(plan, *opts, json_out=None):
    args = [tool("mantissa-run"), "train", plan, "--quiet", *opts]
    if json_out:
        args += ["--json", json_out]
    p = run(args)
    if json_out:
        with open(json_out) as f:
            return json.load(f)
    return p


def tmpdir():
    return tempfile.mkdtemp(prefix="mantissa-test-")


class Checks:
    """Collects named checks, prints each, and exits non-zero if any failed."""
    def __init__(s):
        s.failed = 0
        s.passed = 0
    def check(s, ok, what):
        print(("PASS " if ok else "FAIL ") + what, flush=True)
        if ok: s.passed += 1
        else: s.failed += 1
    def done(s):
        print(f"{s.passed} passed, {s.failed} failed")
        if s.passed + s.failed == 0:
            print("FAIL no check ran")
        sys.exit(1 if s.failed or not s.passed else 0)


def tune_table(stdout):
    """Rows of the Pareto table `mantissa tune` prints (fixed columns, tools/mantissa/Tune.cpp)."""
    rows, inside = [], False
    for line in stdout.splitlines():
        if line.startswith("#    front policy"):
            inside = True
            continue
        if inside and line[:4].strip().isdigit():
            rest = line[56:].split()
            rows.append({"index": int(line[:4]), "front": line[5:10].strip() == "*", "label": line[11:55].strip(),
                         "loss_scaling": rest[0], "ms": float(rest[1]), "mj": rest[2], "metric": float(rest[3]),
                         "gap": float(rest[4]), "chosen": line.endswith("<- chosen")})
        elif inside:
            inside = False
    return rows


def sensitivity_table(stdout):
    """Rows of the sensitivity table `mantissa tune` prints: group, precision, the numeric columns its
    header names ("-" where the demotion was not trained, None here; "@N", the step an error was taken
    at, and "%" dropped), then the verdict."""
    rows, columns = [], None
    def number(text):
        return None if text == "-" else float(text.split("@")[0].rstrip("%"))
    for line in stdout.splitlines():
        if line.startswith("group ") and " prec " in line and line.rstrip().endswith("verdict"):
            columns = line.split()[2:-1]
            continue
        if columns is None:
            continue
        fields = line.split()
        if len(fields) <= 2 + len(columns) or fields[1] not in ("fp16", "bf16"):
            break
        row = {"group": fields[0], "precision": fields[1], "verdict": " ".join(fields[2 + len(columns):])}
        row.update({name: number(text) for name, text in zip(columns, fields[2:])})
        rows.append(row)
    return rows
