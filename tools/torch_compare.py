#!/usr/bin/env python3
"""Cross-check stylize against PyTorch on the same random VGG19 (or VGG16) weights.

Writes a VGG19-shaped (--model vgg16: VGG16-shaped, torchvision's vgg16-397923af.pth keys) state dict with seeded random weights through torch.save (the format
torchvision's vgg19-dcbb9e9d.pth uses, or the legacy one with --legacy), three PNG images
(content, style, initial image), runs `stylize evaluate` on them, computes the same losses and
the image gradient with PyTorch autograd (float64, and float32 for reference), and prints the
relative error of every loss term and of the gradient. Exits 1 if any exceeds --tol.

    pip install torch numpy
    cargo build && python3 tools/torch_compare.py [--size 64] [--pool max] [--legacy] [--model vgg16]

stylize is not told the model: it must recognise it from the file's keys and shapes.

The algorithm mirrored here is stylize's (README "Losses"): content = w_c * mean((F-P)^2);
style = w_s * sum_l w_l * mean((G_l - A_l)^2), G = F F^T / (C H W); tv = w_tv * (sum of squared
horizontal and vertical neighbour differences of the [0,1] RGB image) / (3 H W); the network
sees (x - mean) / std (torchvision convention).
"""
import argparse, json, os, struct, subprocess, sys, tempfile, zlib

import numpy as np
import torch

CONVS = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256), (256, 256),
         (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]
FEATURE_INDEX = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
BLOCKS = [2, 2, 4, 4, 4]
# (convs, torchvision features.N index of each conv, convs per block) of each model.
MODELS = {
    "vgg19": (CONVS, FEATURE_INDEX, BLOCKS),
    "vgg16": ([(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
               (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)],
              [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28],
              [2, 2, 3, 3, 3]),
}
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def write_png(path, rgb):
    """rgb: uint8 array (H, W, 3). Minimal PNG writer (no PIL needed)."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


def smooth_image(rng, h, w):
    """Random but image-like: a few blurred blobs plus noise, uint8."""
    base = rng.random((3, h // 4 + 2, w // 4 + 2))
    up = np.kron(base, np.ones((4, 4)))[:, :h, :w]
    img = 0.7 * up + 0.3 * rng.random((3, h, w))
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8).transpose(1, 2, 0)


def parse_tap(name, model="vgg19"):
    blocks = MODELS[model][2]
    kind = name[:4]
    if kind == "pool":
        return ("pool", int(name[4:]) - 1)
    b, l = name[4:].split("_")
    if int(l) > blocks[int(b) - 1]:
        sys.exit(f"{name} is not a layer of {model}")
    return (kind, sum(blocks[: int(b) - 1]) + int(l) - 1)


def convs_needed(tap, model="vgg19"):
    kind, i = tap
    return sum(MODELS[model][2][: i + 1]) if kind == "pool" else i + 1


def features(x, sd, n, pool, taps, dtype, model="vgg19"):
    """Runs VGG19's (or VGG16's) features on x (1,3,H,W) and returns {tap: activation}."""
    _, index, blocks = MODELS[model]
    out = {}
    cur = x
    for i in range(n):
        w = sd[f"features.{index[i]}.weight"].to(dtype)
        b = sd[f"features.{index[i]}.bias"].to(dtype)
        c = torch.nn.functional.conv2d(cur, w, b, padding=1)
        out[("conv", i)] = c
        cur = torch.relu(c)
        out[("relu", i)] = cur
        block = next(k for k in range(5) if i < sum(blocks[: k + 1]))
        last = i + 1 == sum(blocks[: block + 1])
        if last and (i + 1 < n or ("pool", block) in taps):
            cur = (torch.nn.functional.avg_pool2d if pool == "avg" else torch.nn.functional.max_pool2d)(cur, 2)
            out[("pool", block)] = cur
    return out


def gram(f):
    _, c, h, w = f.shape
    m = f.reshape(c, h * w)
    return m @ m.t() / (c * h * w)


def load_png_float(path, dtype):
    # Read back with numpy-only PNG decode of our own writer's output (8-bit RGB, filter 0).
    data = open(path, "rb").read()
    pos, idat, w, h = 8, b"", 0, 0
    while pos < len(data):
        ln = struct.unpack(">I", data[pos:pos + 4])[0]
        t = data[pos + 4:pos + 8]
        d = data[pos + 8:pos + 8 + ln]
        if t == b"IHDR":
            w, h = struct.unpack(">II", d[:8])
        elif t == b"IDAT":
            idat += d
        pos += 12 + ln
    raw = zlib.decompress(idat)
    rows = [np.frombuffer(raw[y * (3 * w + 1) + 1:(y + 1) * (3 * w + 1)], dtype=np.uint8) for y in range(h)]
    arr = np.stack(rows).reshape(h, w, 3).transpose(2, 0, 1).astype(np.float64) / 255.0
    return torch.tensor(arr, dtype=dtype).unsqueeze(0)


def torch_losses(a, sd, dtype):
    taps_c = [parse_tap(t, a.model) for t in a.content_layers.split(",")]
    taps_s = [parse_tap(t, a.model) for t in a.style_layers.split(",")]
    lw = [float(v) for v in a.style_layer_weights.split(",")] if a.style_layer_weights else [1.0] * len(taps_s)
    n = max(convs_needed(t, a.model) for t in taps_c + taps_s)
    mean = torch.tensor(MEAN, dtype=dtype).view(1, 3, 1, 1)
    std = torch.tensor(STD, dtype=dtype).view(1, 3, 1, 1)
    norm = lambda img: (img - mean) / std
    content = load_png_float(a.content, dtype)
    style = load_png_float(a.style, dtype)
    x = load_png_float(a.init, dtype).requires_grad_(True)
    taps = taps_c + taps_s
    with torch.no_grad():
        fc = features(norm(content), sd, n, a.pool, taps, dtype, a.model)
        fs = features(norm(style), sd, n, a.pool, taps, dtype, a.model)
    fx = features(norm(x), sd, n, a.pool, taps, dtype, a.model)
    cw = a.content_weight / len(taps_c)
    lc = [cw * torch.mean((fx[t] - fc[t]) ** 2) for t in taps_c]
    ls = [a.style_weight * lw[k] * torch.mean((gram(fx[t]) - gram(fs[t])) ** 2) for k, t in enumerate(taps_s)]
    dxh = x[:, :, :, 1:] - x[:, :, :, :-1]
    dyv = x[:, :, 1:, :] - x[:, :, :-1, :]
    tv = a.tv_weight * ((dxh ** 2).sum() + (dyv ** 2).sum()) / x[0].numel()
    total = sum(lc) + sum(ls) + tv
    total.backward()
    return [v.item() for v in lc], [v.item() for v in ls], tv.item(), x.grad[0].detach().numpy()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stylize", default="target/debug/stylize", help="path to the stylize binary")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--aspect", type=float, default=0.75, help="height / width of the images")
    p.add_argument("--pool", default="avg", choices=["avg", "max"])
    p.add_argument("--model", default="vgg19", choices=sorted(MODELS),
                   help="the random network's shapes and keys (stylize recognises it from the file)")
    p.add_argument("--content-layers", default="relu4_2")
    p.add_argument("--style-layers", default="relu1_1,relu2_1,relu3_1,relu4_1,relu5_1")
    p.add_argument("--style-layer-weights", default="")
    p.add_argument("--content-weight", type=float, default=1.0)
    p.add_argument("--style-weight", type=float, default=1e4)
    p.add_argument("--tv-weight", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--legacy", action="store_true", help="save the .pth in the legacy (non-zip) format")
    p.add_argument("--tol", type=float, default=1e-4)
    p.add_argument("--workdir", default=None,
                   help="keep the weights, images and gradient here (default: a temporary folder, removed)")
    a = p.parse_args()
    if a.workdir:
        os.makedirs(a.workdir, exist_ok=True)
        compare(a, a.workdir)
    else:
        # Each run writes ~77 MB of random weights: removed afterwards, whatever the outcome.
        with tempfile.TemporaryDirectory(prefix="stylize-torch-") as d:
            compare(a, d)


def compare(a, d):
    g = torch.Generator().manual_seed(a.seed)
    sd = {}
    convs, index, _ = MODELS[a.model]
    for i, (cin, cout) in enumerate(convs):
        std = (2.0 / (cin * 9)) ** 0.5
        sd[f"features.{index[i]}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * std
        sd[f"features.{index[i]}.bias"] = torch.randn(cout, generator=g) * 0.01
    wpath = os.path.join(d, f"{a.model}-random.pth")
    torch.save(sd, wpath, _use_new_zipfile_serialization=not a.legacy)

    rng = np.random.default_rng(a.seed)
    w, h = a.size, max(1, round(a.size * a.aspect))
    a.content, a.style, a.init = (os.path.join(d, n) for n in ("content.png", "style.png", "init.png"))
    write_png(a.content, smooth_image(rng, h, w))
    write_png(a.style, smooth_image(rng, h, w))
    write_png(a.init, smooth_image(rng, h, w))

    gpath = os.path.join(d, "grad.npy")
    cmd = [a.stylize, "evaluate", a.content, a.style, "--init", a.init, "--size", str(a.size),
           "--weights", wpath, "--preprocess", "torch", "--pool", a.pool,
           "--content-layers", a.content_layers, "--style-layers", a.style_layers,
           "--content-weight", str(a.content_weight), "--style-weight", str(a.style_weight),
           "--tv-weight", str(a.tv_weight), "--grad-out", gpath,
           # PyTorch's VGG pads each conv with zeros; stylize's default adds a reflected margin.
           "--edge", "zero"]
    if a.style_layer_weights:
        cmd += ["--style-layer-weights", a.style_layer_weights]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"stylize evaluate failed:\n{res.stderr}")
    ours = json.loads(res.stdout.strip().splitlines()[-1])
    ours_grad = np.load(gpath).astype(np.float64)

    lc64, ls64, tv64, g64 = torch_losses(a, sd, torch.float64)
    lc32, ls32, tv32, g32 = torch_losses(a, sd, torch.float32)

    rel = lambda x, r: abs(x - r) / max(abs(r), 1e-30)
    rows = [(f"content {t}", ours["content"][k], lc32[k], lc64[k]) for k, t in enumerate(a.content_layers.split(","))]
    rows += [(f"style {t}", ours["style"][k], ls32[k], ls64[k]) for k, t in enumerate(a.style_layers.split(","))]
    rows += [("tv", ours["tv"], tv32, tv64)]
    print(f"{a.model} {w}x{h}, pool {a.pool}, weights {'legacy' if a.legacy else 'zip'} .pth, torch {torch.__version__}")
    print(f"{'term':<16} {'stylize':>14} {'torch f32':>14} {'torch f64':>14} {'ours vs f64':>12} {'f32 vs f64':>12}")
    worst = 0.0
    for name, o, t32, t64 in rows:
        e = rel(o, t64)
        worst = max(worst, e)
        print(f"{name:<16} {o:14.6e} {t32:14.6e} {t64:14.6e} {e:12.2e} {rel(t32, t64):12.2e}")
    scale = np.abs(g64).max()
    ge = np.abs(ours_grad - g64).max() / scale
    ge32 = np.abs(g32 - g64).max() / scale
    worst = max(worst, ge)
    print(f"{'image gradient':<16} {'(normwise max)':>14} {'':>14} {'':>14} {ge:12.2e} {ge32:12.2e}")
    if worst > a.tol:
        print(f"FAIL: worst relative error {worst:.2e} > {a.tol:.0e}")
        sys.exit(1)
    print(f"OK: worst relative error {worst:.2e} <= {a.tol:.0e}")


if __name__ == "__main__":
    main()
