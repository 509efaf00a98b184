#!/usr/bin/env python3
"""Writes unet(w, L), the nowcasting U-Net of shared/MODELS.md, as graph IR.

    python3 models/gen_unet.py --width 32 --levels 4 --size 384 --batch 16 > unet.mlir
    python3 models/gen_unet.py --width 4 --levels 2 --size 32 --batch 8 > unet_small.mlir

13 input frames -> 12 output frames, mean squared error. Block(cin, cout) =
conv3x3(pad 1) -> batch-norm -> ReLU -> conv3x3 -> batch-norm -> ReLU. Names follow
UNet in shared/bench/pytorch_reference.py (down.{l}.c1, ..., mid, upconv.{i}, up.{i}, out).
"""
import argparse, math


class Writer:
    def __init__(s, batch):
        s.lines, s.params, s.n, s.batch = [], [], 0, batch

    def fresh(s, stem):
        s.n += 1
        return f"%{stem}{s.n}"

    def t(s, c, h, w, e="f32"):
        return f"tensor<{s.batch}x{c}x{h}x{w}x{e}>"

    def param(s, name, shape, init, bound=None):
        v = s.fresh("p")
        attrs = f'init = "{init}"' + (f", bound = {bound!r}" if bound is not None else "")
        s.params.append(f'    {v} = graph.param "{name}" {{{attrs}}} : tensor<{"x".join(map(str, shape))}xf32>')
        return v

    def buffer(s, name, shape, init):
        v = s.fresh("s")
        ty = f'tensor<{"x".join(map(str, shape))}xf32>' if shape else "tensor<f32>"
        s.params.append(f'    {v} = graph.buffer "{name}" {{init = "{init}"}} : {ty}')
        return v

    def conv(s, name, x, cin, cout, h, w, k):
        fan_in = cin * k * k
        b = 1.0 / math.sqrt(fan_in)
        wt = s.param(f"{name}.weight", [cout, cin, k, k], "uniform", b)
        bi = s.param(f"{name}.bias", [cout], "uniform", b)
        y = s.fresh("c")
        pad = k // 2
        s.lines.append(f'    {y} = graph.conv2d {x}, {wt}, {bi} {{graph.name = "{name}", padding = array<i64: {pad}, {pad}>}} : '
                       f"{s.t(cin, h, w)}, tensor<{cout}x{cin}x{k}x{k}xf32>, tensor<{cout}xf32> -> {s.t(cout, h, w)}")
        return y

    def bn_relu(s, name, x, c, h, w):
        g = s.param(f"{name}.weight", [c], "ones")
        be = s.param(f"{name}.bias", [c], "zeros")
        rm = s.buffer(f"{name}.running_mean", [c], "zeros")
        rv = s.buffer(f"{name}.running_var", [c], "ones")
        nb = s.buffer(f"{name}.num_batches_tracked", [], "zeros")
        y, m, i, rm2, rv2 = (s.fresh(k) for k in ("bn", "mean", "istd", "rm", "rv"))
        ct = f"tensor<{c}xf32>"
        s.lines.append(f'    {y}, {m}, {i}, {rm2}, {rv2} = graph.batch_norm {x}, {g}, {be}, {rm}, {rv} {{graph.name = "{name}"}} : '
                       f"{s.t(c, h, w)}, {ct}, {ct}, {ct}, {ct} -> {s.t(c, h, w)}, {ct}, {ct}, {ct}, {ct}")
        s.lines.append(f'    graph.assign "{name}.running_mean", {rm2} : {ct}')
        s.lines.append(f'    graph.assign "{name}.running_var", {rv2} : {ct}')
        one, nb2 = s.fresh("one"), s.fresh("nb")
        s.lines.append(f"    {one} = graph.constant 1.0 : tensor<f32>")
        s.lines.append(f"    {nb2} = graph.add {nb}, {one} : tensor<f32>, tensor<f32> -> tensor<f32>")
        s.lines.append(f'    graph.assign "{name}.num_batches_tracked", {nb2} : tensor<f32>')
        r = s.fresh("r")
        s.lines.append(f"    {r} = graph.relu {y} : {s.t(c, h, w)}")
        return r

    def block(s, name, x, cin, cout, h, w):
        x = s.bn_relu(f"{name}.b1", s.conv(f"{name}.c1", x, cin, cout, h, w, 3), cout, h, w)
        return s.bn_relu(f"{name}.b2", s.conv(f"{name}.c2", x, cout, cout, h, w, 3), cout, h, w)


def unet(width, levels, size, batch, cin=13, cout=12):
    if size % (2 ** levels):
        raise SystemExit(f"gen_unet.py: size {size} must be divisible by 2^levels = {2 ** levels}")
    s = Writer(batch)
    x, c, h, skips = "%x", cin, size, []
    for l in range(levels):
        x = s.block(f"down.{l}", x, c, width * 2 ** l, h, h)
        c = width * 2 ** l
        skips.append((x, c, h))
        p, i = s.fresh("pool"), s.fresh("idx")
        s.lines.append(f'    {p}, {i} = graph.max_pool2d {x} {{graph.name = "down.{l}.pool"}} : {s.t(c, h, h)} -> '
                       f'{s.t(c, h // 2, h // 2)}, {s.t(c, h // 2, h // 2, "i32")}')
        x, h = p, h // 2
    x = s.block("mid", x, c, 2 * c, h, h)
    c = 2 * c
    for i, l in enumerate(reversed(range(levels))):
        sk, skc, skh = skips.pop()
        name = f"upconv.{i}"
        b = 1.0 / math.sqrt(skc * 4)  # ConvTranspose2d fan_in is weight.size(1) * kh * kw
        wt = s.param(f"{name}.weight", [c, skc, 2, 2], "uniform", b)
        bi = s.param(f"{name}.bias", [skc], "uniform", b)
        u = s.fresh("up")
        s.lines.append(f'    {u} = graph.conv_transpose2d {x}, {wt}, {bi} {{graph.name = "{name}", stride = array<i64: 2, 2>}} : '
                       f"{s.t(c, h, h)}, tensor<{c}x{skc}x2x2xf32>, tensor<{skc}xf32> -> {s.t(skc, skh, skh)}")
        h = skh
        cat = s.fresh("cat")
        s.lines.append(f"    {cat} = graph.concat {u}, {sk} {{axis = 1 : i64}} : {s.t(skc, h, h)}, {s.t(skc, h, h)} -> {s.t(2 * skc, h, h)}")
        x = s.block(f"up.{i}", cat, 2 * skc, skc, h, h)
        c = skc
    y = s.conv("out", x, c, cout, h, h, 1)
    loss = s.fresh("loss")
    s.lines.append(f'    {loss} = graph.mse {y}, %y {{graph.name = "loss"}} : {s.t(cout, h, h)}, {s.t(cout, h, h)} -> tensor<f32>')
    head = [
        f"// unet(w={width}, L={levels}) at {size}x{size}, batch {batch}: 13 frames in, 12 out, MSE.",
        "// Generated by models/gen_unet.py (shared/MODELS.md).",
        f'module attributes {{graph.model = "unet", graph.task = "regression", graph.width = {width} : i64, graph.levels = {levels} : i64}} {{',
        f"  func.func @forward() -> (tensor<f32>, {s.t(cout, h, h)}) {{",
        f'    %x = graph.input "x" : {s.t(cin, size, size)}',
        f'    %y = graph.input "y" : {s.t(cout, size, size)}',
    ]
    tail = [f"    return {loss}, {y} : tensor<f32>, {s.t(cout, h, h)}", "  }", "}"]
    return "\n".join(head + s.params + s.lines + tail) + "\n"


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--levels", type=int, default=4)
    p.add_argument("--size", type=int, default=384)
    p.add_argument("--batch", type=int, default=16)
    a = p.parse_args()
    print(unet(a.width, a.levels, a.size, a.batch), end="")
