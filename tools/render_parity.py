#!/usr/bin/env python3
"""Whole-render parity with PyTorch on a random torchvision-format VGG16 .pth, in both torch.save
formats (zip, and the legacy format of torchvision's real files):

    cargo build && pip install torch numpy pillow
    python3 tools/render_parity.py                 # 96 px, 100 Adam steps, gallery pair

It writes a VGG16 state dict with torchvision's keys (features.0 .. features.28, plus a
classifier the loader must ignore) and torchvision's initialisation (Kaiming-normal fan-out conv
weights; small random biases so they matter), resizes a content and a style image to the working
size once (so both programs start from the same pixels), then renders with `stylize render` from
each file and with tools/torch_render.py (same losses, Adam, clamping), and compares:
  * the losses each program reports for its own output,
  * the losses of both written images measured by one evaluator (`stylize evaluate --init`),
  * the images themselves (8-bit levels: mean and max absolute difference, PSNR).
`--edge zero` because the PyTorch port has only the convs' zero padding. Trajectories of two f32
programs drift apart slowly (summation order), so agreement is judged on the losses (a few per
cent) and on the images' PSNR, not bit for bit.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# VGG16's conv layers: (in, out) channels, at torchvision's features.N indices.
VGG16 = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
         (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]
VGG16_INDEX = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]


def random_vgg16(seed):
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for (cin, cout), i in zip(VGG16, VGG16_INDEX):
        std = (2.0 / (cout * 9)) ** 0.5  # kaiming_normal_(mode="fan_out", nonlinearity="relu")
        sd[f"features.{i}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * std
        sd[f"features.{i}.bias"] = torch.randn(cout, generator=g) * 0.05
    sd["classifier.6.weight"] = torch.randn(10, 16, generator=g)
    sd["classifier.6.bias"] = torch.randn(10, generator=g)
    return sd


def resized(src, size, dst):
    im = Image.open(src).convert("RGB")
    s = size / max(im.size)
    im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.LANCZOS)
    im.save(dst)


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stdout}\n{r.stderr}")
    return r.stdout + r.stderr


def evaluate(a, content, style, weights, image):
    out = run([a.stylize, "evaluate", content, style, "--init", image, "--weights", weights,
               "--size", str(a.size), "--edge", "zero", *a.common, "-q"])
    j = json.loads(out[out.index("{"):out.rindex("}") + 1])
    # Per-layer lists for content and style; the total is their sum plus TV, as stylize's.
    e = {k: float(np.sum(j[k])) for k in ("content", "style", "tv")}
    e["total"] = sum(e.values())
    return e


def pixels(p):
    return np.asarray(Image.open(p).convert("RGB"), dtype=np.float64)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stylize", default=os.path.join(ROOT, "target", "debug", "stylize"))
    p.add_argument("--content", default=os.path.join(HERE, "gallery", "chelsea.jpg"))
    p.add_argument("--style", default=os.path.join(HERE, "gallery", "hokusai_great_wave.jpg"))
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--keep", default=None, help="write the files here instead of a temporary folder")
    a = p.parse_args()
    # torchvision's defaults in stylize (content 1, style 1e6, TV 100, lr 0.02), given explicitly
    # to both programs so a change of defaults cannot make them differ.
    w = {"content-weight": "1", "style-weight": "1e6", "tv-weight": "100", "lr": "0.02"}
    a.common = [x for k, v in w.items() for x in (f"--{k}", v)]
    if a.keep:
        os.makedirs(a.keep, exist_ok=True)
        parity(a, a.keep)
        print(f"files in {a.keep}")
    else:
        # The run writes two copies of a VGG16 (~110 MB): removed afterwards, whatever the outcome.
        with tempfile.TemporaryDirectory(prefix="render_parity.") as d:
            parity(a, d)


def parity(a, d):
    content, style = os.path.join(d, "content.png"), os.path.join(d, "style.png")
    resized(a.content, a.size, content)
    resized(a.style, a.size, style)
    sd = random_vgg16(a.seed)
    files = {"zip": os.path.join(d, "vgg16_random_zip.pth"), "legacy": os.path.join(d, "vgg16_random_legacy.pth")}
    torch.save(sd, files["zip"])
    torch.save(sd, files["legacy"], _use_new_zipfile_serialization=False)

    torch_png = os.path.join(d, "torch.png")
    t = run([sys.executable, os.path.join(HERE, "torch_render.py"), content, style, "-o", torch_png,
             "--weights", files["zip"], "--size", str(a.size), "--steps", str(a.steps), "--print-every",
             str(a.steps), *a.common])
    print(t.strip().splitlines()[-2])  # PyTorch's own final losses
    print(f"{'':>16} {'content':>11} {'style':>11} {'tv':>11} {'total':>11}")
    ref = evaluate(a, content, style, files["zip"], torch_png)
    print(f"{'pytorch image':>16} " + " ".join(f"{ref[k]:11.4e}" for k in ref))
    worst = 0.0
    for fmt, path in files.items():
        png = os.path.join(d, f"stylize_{fmt}.png")
        info = run([a.stylize, "render", content, style, "-o", png, "--weights", path, "--size", str(a.size),
                    "--steps", str(a.steps), "--edge", "zero", *a.common])
        if "vgg16" not in info.lower():
            sys.exit(f"stylize did not report VGG16 for {path}:\n{info}")
        e = evaluate(a, content, style, path, png)
        rel = {k: (e[k] - ref[k]) / ref[k] for k in e}
        worst = max(worst, max(abs(v) for v in rel.values()))
        print(f"{'stylize ' + fmt:>16} " + " ".join(f"{e[k]:11.4e}" for k in e))
        print(f"{'rel. difference':>16} " + " ".join(f"{rel[k]:+11.1e}" for k in rel))
        x, y = pixels(png), pixels(torch_png)
        mse = np.mean((x - y) ** 2)
        psnr = 10 * np.log10(255.0**2 / mse) if mse > 0 else float("inf")
        print(f"{'':>16} image vs PyTorch: mean |diff| {np.mean(np.abs(x - y)):.2f}, "
              f"max {np.max(np.abs(x - y)):.0f} (8-bit levels), PSNR {psnr:.1f} dB")
    print(f"worst relative loss difference {worst:.1e}")


if __name__ == "__main__":
    main()
