#!/usr/bin/env python3
"""Render with PyTorch exactly what `stylize render` computes, for side-by-side comparisons on
real weights and images.

Same network (VGG16 or VGG19 features, avg or max pool, truncated after the deepest tap), same
losses and normalisation (README "Losses"; the functions are tools/torch_compare.py's), same
optimiser (Adam on the [0,1] RGB image, betas 0.9/0.999, eps 1e-8, pixels clamped to [0,1] after
every step), same start (the content image). Weights: a Caffe-convention .npz (`convB_L.weight`
/ `.bias`, e.g. ../shared/data/vgg16-caffe-imagenet.npz; input BGR 0..255 minus the mean) or a
torchvision .pth (`features.N.*`; input normalised by ImageNet mean/std); the model is read from
the layers present.

Give it images already at the working size (longest side = --size) so both programs start from
the same pixels (otherwise they are resized here with PIL's Lanczos, close to but not exactly
stylize's):

    pip install torch numpy pillow
    python3 tools/torch_render.py content.png style.png -o torch.png \\
        --weights ../shared/data/vgg16-caffe-imagenet.npz --size 256 --steps 500 \\
        --content-weight 5 --style-weight 20 --tv-weight 1e5 --lr 0.02 --log losses.json

Prints the loss terms every --print-every steps; --log writes them all as JSON (one entry per
step, the losses at the image before that step's update, as stylize's loss log).
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_compare import MEAN, MODELS, STD, convs_needed, features, gram, parse_tap  # noqa: E402

CAFFE_MEAN_BGR = [103.939, 116.779, 123.68]


def load_weights(path):
    """(state dict with features.N keys, model name, preprocess name)."""
    if path.endswith(".npz"):
        z = np.load(path)
        names = sorted({k.rsplit(".", 1)[0] for k in z.files})
        model = "vgg19" if "conv3_4" in names else "vgg16"
        convs, index, blocks = MODELS[model]
        sd = {}
        i = 0
        for b, n in enumerate(blocks):
            for l in range(n):
                key = f"conv{b + 1}_{l + 1}"
                if key + ".weight" not in z.files:
                    break
                sd[f"features.{index[i]}.weight"] = torch.tensor(z[key + ".weight"])
                sd[f"features.{index[i]}.bias"] = torch.tensor(z[key + ".bias"])
                i += 1
        return sd, model, "caffe"
    sd = torch.load(path, map_location="cpu")
    model = "vgg19" if "features.34.weight" in sd or "features.16.weight" in sd else "vgg16"
    return sd, model, "torch"


def load_image(path, size):
    from PIL import Image

    im = Image.open(path).convert("RGB")
    if max(im.size) != size:
        s = size / max(im.size)
        im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.LANCZOS)
    arr = np.asarray(im, dtype=np.float32).transpose(2, 0, 1) / 255.0
    return torch.tensor(arr).unsqueeze(0)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("content")
    p.add_argument("style")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--weights", required=True)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--content-weight", type=float, default=5.0)
    p.add_argument("--style-weight", type=float, default=20.0)
    p.add_argument("--tv-weight", type=float, default=1e5)
    p.add_argument("--content-layers", default="relu4_2")
    p.add_argument("--style-layers", default="relu1_1,relu2_1,relu3_1,relu4_1,relu5_1")
    p.add_argument("--pool", default="avg", choices=["avg", "max"])
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--print-every", type=int, default=50)
    p.add_argument("--log", default=None, help="write every step's losses here as JSON")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)

    sd, model, convention = load_weights(a.weights)
    taps_c = [parse_tap(t, model) for t in a.content_layers.split(",")]
    taps_s = [parse_tap(t, model) for t in a.style_layers.split(",")]
    taps = taps_c + taps_s
    n = max(convs_needed(t, model) for t in taps)
    if convention == "caffe":
        mean = torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1)
        prep = lambda img: img.flip(1) * 255.0 - mean  # noqa: E731  RGB -> BGR, 0..255, minus mean
    else:
        mean = torch.tensor(MEAN).view(1, 3, 1, 1)
        std = torch.tensor(STD).view(1, 3, 1, 1)
        prep = lambda img: (img - mean) / std  # noqa: E731

    content = load_image(a.content, a.size)
    style = load_image(a.style, a.size)
    dt = torch.float32
    with torch.no_grad():
        fc = features(prep(content), sd, n, a.pool, taps, dt, model)
        fs = features(prep(style), sd, n, a.pool, taps, dt, model)
        targets_c = {t: fc[t] for t in taps_c}
        targets_s = {t: gram(fs[t]) for t in taps_s}
    x = content.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=a.lr, betas=(0.9, 0.999), eps=1e-8)
    cw = a.content_weight / len(taps_c)
    log = []
    t0 = time.time()
    for step in range(a.steps + 1):
        opt.zero_grad()
        fx = features(prep(x), sd, n, a.pool, taps, dt, model)
        lc = sum(cw * torch.mean((fx[t] - targets_c[t]) ** 2) for t in taps_c)
        ls = sum(a.style_weight * torch.mean((gram(fx[t]) - targets_s[t]) ** 2) for t in taps_s)
        dxh = x[:, :, :, 1:] - x[:, :, :, :-1]
        dyv = x[:, :, 1:, :] - x[:, :, :-1, :]
        tv = a.tv_weight * ((dxh**2).sum() + (dyv**2).sum()) / x[0].numel()
        total = lc + ls + tv
        log.append({"step": step, "content": lc.item(), "style": ls.item(), "tv": tv.item(), "total": total.item()})
        if step % a.print_every == 0 or step == a.steps:
            print(f"step {step:5}  content {lc.item():.4e}  style {ls.item():.4e}  tv {tv.item():.4e}  "
                  f"total {total.item():.4e}  ({time.time() - t0:.1f} s)", flush=True)
        if step == a.steps:
            break  # the last line is the loss of the output image
        total.backward()
        opt.step()
        with torch.no_grad():
            x.clamp_(0.0, 1.0)
    ms = 1000 * (time.time() - t0) / max(1, a.steps)
    print(f"{model}, {convention} preprocessing, {x.shape[3]}x{x.shape[2]}: {ms:.0f} ms per step")

    from PIL import Image

    out = (x.detach()[0].numpy().transpose(1, 2, 0) * 255.0).round().clip(0, 255).astype(np.uint8)
    tmp = a.output + ".tmp.png"
    Image.fromarray(out).save(tmp)
    os.replace(tmp, a.output)
    if a.log:
        with open(a.log, "w") as f:
            json.dump({"model": model, "ms_per_step": ms, "steps": log}, f, indent=1)


if __name__ == "__main__":
    main()
