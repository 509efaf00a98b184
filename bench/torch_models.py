"""The model zoo of shared/MODELS.md in PyTorch: Mantissa's peer for tests and benchmarks.

Parameter names and layouts match Mantissa's checkpoints, so a checkpoint written by
`mantissa train --save x.safetensors` loads here with `load_mantissa_state` and back.
"""
import json, struct
import numpy as np
import torch, torch.nn as nn, torch.nn.functional as F


class MLPDigits(nn.Module):
    def __init__(s):
        super().__init__()
        s.fc1, s.fc2, s.fc3 = nn.Linear(64, 128), nn.Linear(128, 128), nn.Linear(128, 10)
    def forward(s, x):
        return s.fc3(F.relu(s.fc2(F.relu(s.fc1(x)))))


class CNNDigits(nn.Module):
    def __init__(s):
        super().__init__()
        s.conv1, s.conv2 = nn.Conv2d(1, 16, 3, padding=1), nn.Conv2d(16, 32, 3, padding=1)
        s.fc = nn.Linear(32 * 2 * 2, 10)
    def forward(s, x):
        x = F.max_pool2d(F.relu(s.conv1(x)), 2)
        x = F.max_pool2d(F.relu(s.conv2(x)), 2)
        return s.fc(x.reshape(x.shape[0], -1))


class MLP(nn.Module):
    def __init__(s, din=784, hidden=4096, layers=4, dout=10):
        super().__init__()
        mods, c = [], din
        for _ in range(layers):
            mods += [nn.Linear(c, hidden), nn.ReLU()]; c = hidden
        mods.append(nn.Linear(c, dout)); s.net = nn.Sequential(*mods)
    def forward(s, x):
        return s.net(x)


class Block(nn.Module):
    def __init__(s, cin, cout):
        super().__init__()
        s.c1, s.b1 = nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout)
        s.c2, s.b2 = nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout)
    def forward(s, x):
        return F.relu(s.b2(s.c2(F.relu(s.b1(s.c1(x))))))


class UNet(nn.Module):
    """Nowcasting U-Net: 13 input frames -> 12 output frames (MODELS.md)."""
    def __init__(s, cin=13, cout=12, width=32, levels=4):
        super().__init__()
        s.down, s.up, s.upconv = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        c, chans = cin, []
        for l in range(levels):
            s.down.append(Block(c, width * 2**l)); chans.append(width * 2**l); c = width * 2**l
        s.mid = Block(c, 2 * c); c = 2 * c
        for l in reversed(range(levels)):
            s.upconv.append(nn.ConvTranspose2d(c, chans[l], 2, stride=2))
            s.up.append(Block(2 * chans[l], chans[l])); c = chans[l]
        s.out = nn.Conv2d(c, cout, 1)
    def forward(s, x):
        skips = []
        for d in s.down:
            x = d(x); skips.append(x); x = F.max_pool2d(x, 2)
        x = s.mid(x)
        for uc, u in zip(s.upconv, s.up):
            x = u(torch.cat([uc(x), skips.pop()], 1))
        return s.out(x)


_DT = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32, "F16": np.float16}


def read_safetensors(path):
    """A small safetensors reader (python3-safetensors is not in Debian 12)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=_DT[info["dtype"]]).reshape(info["shape"]).copy()
    return out


def write_safetensors(path, tensors):
    rev = {np.dtype(v): k for k, v in _DT.items()}
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        b = a.tobytes()
        header[name] = {"dtype": rev[a.dtype], "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b); off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h))); f.write(h)
        for b in blobs: f.write(b)


def load_mantissa_state(module, path):
    """Loads the model part of a Mantissa checkpoint (strict: every name must be there)."""
    st = read_safetensors(path)
    own = module.state_dict()
    sd = {k: torch.from_numpy(st[k]).to(own[k].dtype) for k in own}
    module.load_state_dict(sd, strict=True)
    return st


def make(name, width=4, levels=2):
    return {"mlp_digits": MLPDigits, "cnn_digits": CNNDigits, "mlp": MLP,
            "unet": lambda: UNet(width=width, levels=levels)}[name]()
