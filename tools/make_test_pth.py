#!/usr/bin/env python3
"""Write the small .pth fixtures that tests/weights.rs reads (run from the repo root):

    python3 tools/make_test_pth.py            # writes tests/data/vgg_tiny*.pth and friends

Needs PyTorch (any version >= 1.6; the committed files were made with the version printed in
tests/data/vgg_tiny.expected.txt). CI has no torch, so the outputs are committed (~630 KB).

What the fixtures exercise (all values seeded, so reruns give identical tensors):
  * vgg_tiny_zip.pth     torch.save zip format (archive/data.pkl + archive/data/N)
  * vgg_tiny_legacy.pth  torch.save(..., _use_new_zipfile_serialization=False), the format of
                         torchvision's real vgg19-dcbb9e9d.pth
    Both hold the same state dict: torchvision keys for conv1_1, conv1_2, conv2_1
    (features.0 / .2 / .5) with real VGG19 shapes, so `load(path, 3)` works and `load(path, 4)`
    must fail naming conv2_2. To cover the loader's corner cases cheaply:
      - features.0.weight is a non-contiguous permuted view (strides are not row-major),
      - features.0.bias is a slice at storage offset 10 of a 100-element storage,
      - features.2.weight and features.5.weight are views into ONE shared storage
        (offsets 5000 and 0), which also keeps the files small,
      - classifier.0.weight / classifier.0.bias (float32) and extra.num_batches_tracked (int64)
        must be ignored,
      - the dict carries a `_metadata` attribute like a real module state_dict (pickle BUILD).
  * vgg16_tiny_zip.pth, vgg16_tiny_legacy.pth  all 13 VGG16 conv layers under torchvision's
                         vgg16-397923af.pth keys (features.0 .. features.28) with the real
                         shapes, in both torch.save formats, yet ~20 KB: every tensor is an
                         as_strided view (overlapping, with zero strides on the 3x3 taps) of
                         ONE 4096-element storage. The loader must recognise VGG16 from the
                         keys and shapes and read the views exactly.
  * conv1_1_params.pth   zip format, keys in `conv1_1.weight` style, values are nn.Parameter
                         (pickled through torch._utils._rebuild_parameter).
  * conv1_1_legacy.pth   legacy format, conv1_1 only (features.0.*) plus an ignored
                         classifier.6.bias: small seeds for the fuzz test.
  * conv1_1_half_{zip,legacy}.pth  conv1_1 with a float16 weight and a bfloat16 bias:
                         half-precision checkpoints load (converted to float32 exactly; the
                         expected values are the upcast ones).
  * forbidden_global_{legacy,zip}.pth  hand-written pickle bytes that name os.system; they are
                         never unpickled here, only written, and the loader must refuse them.
Expected values (sum, sum of squares, first elements in logical row-major order, float64) go to
tests/data/vgg_tiny.expected.txt, one line per tensor.
"""
import collections
import io
import os
import pickle
import struct
import sys
import zipfile

import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data")


def vgg_tiny_state_dict():
    g = torch.Generator().manual_seed(20240611)

    def randn(*shape, std=1.0):
        return torch.randn(*shape, generator=g, dtype=torch.float32) * std

    sd = collections.OrderedDict()
    # conv1_1: permuted view -> strides (1, 576, 192, 64) instead of (27, 9, 3, 1).
    base = randn(3, 3, 3, 64, std=0.2)
    sd["features.0.weight"] = base.permute(3, 0, 1, 2)
    sd["features.0.bias"] = randn(100, std=0.1)[10:74]
    # conv1_2 and conv2_1 share one storage (overlapping views, different offsets).
    big = randn(128 * 64 * 9, std=0.05)
    sd["features.2.weight"] = big[5000:5000 + 64 * 64 * 9].view(64, 64, 3, 3)
    sd["features.2.bias"] = randn(64, std=0.1)
    sd["features.5.weight"] = big.view(128, 64, 3, 3)
    sd["features.5.bias"] = randn(128, std=0.1)
    sd["classifier.0.weight"] = randn(4, 8)
    sd["classifier.0.bias"] = randn(4)
    sd["extra.num_batches_tracked"] = torch.tensor(7, dtype=torch.int64)
    sd._metadata = collections.OrderedDict([("", {"version": 1}), ("features", {"version": 1})])
    assert not sd["features.0.weight"].is_contiguous()
    assert sd["features.0.bias"].storage_offset() == 10
    return sd


VGG16_CONVS = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
               (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]
VGG16_FEATURE_INDEX = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]


def vgg16_tiny_state_dict():
    g = torch.Generator().manual_seed(16)
    pool = torch.randn(4096, generator=g, dtype=torch.float32) * 0.05
    sd = collections.OrderedDict()
    for i, (cin, cout) in enumerate(VGG16_CONVS):
        # Reaches at most offset + 511*3 + 511*2 + 2 < 4096.
        sd[f"features.{VGG16_FEATURE_INDEX[i]}.weight"] = pool.as_strided((cout, cin, 3, 3), (3, 2, 1, 0), 37 * i)
        sd[f"features.{VGG16_FEATURE_INDEX[i]}.bias"] = pool.as_strided((cout,), (1,), 3000 + 11 * i)
    sd["classifier.6.bias"] = torch.randn(10, generator=g)
    return sd


def conv1_1_params():
    g = torch.Generator().manual_seed(7)
    return collections.OrderedDict([
        ("conv1_1.weight", torch.nn.Parameter(torch.randn(64, 3, 3, 3, generator=g) * 0.3)),
        ("conv1_1.bias", torch.nn.Parameter(torch.randn(64, generator=g))),
    ])


def conv1_1_legacy():
    g = torch.Generator().manual_seed(11)
    return collections.OrderedDict([
        ("features.0.weight", torch.randn(64, 3, 3, 3, generator=g) * 0.2),
        ("features.0.bias", torch.randn(64, generator=g) * 0.1),
        ("classifier.6.bias", torch.randn(3, generator=g)),
    ])


def conv1_1_half():
    g = torch.Generator().manual_seed(16)
    return collections.OrderedDict([
        ("features.0.weight", (torch.randn(64, 3, 3, 3, generator=g) * 0.2).half()),
        ("features.0.bias", (torch.randn(64, generator=g) * 0.1).bfloat16()),
    ])


def describe(name, sd, lines):
    for key, t in sd.items():
        if not t.is_floating_point():
            continue
        flat = t.detach().contiguous().reshape(-1).double()
        first = " ".join(repr(float(v)) for v in flat[:4].tolist())
        line = f"{name} {key} {list(t.shape)} sum={float(flat.sum())!r} sumsq={float((flat * flat).sum())!r} first={first}"
        print(line)
        lines.append(line)


def forbidden_pickle():
    # PROTO 2; GLOBAL 'os system'; SHORT_BINUNICODE 'echo pwned'; TUPLE1; REDUCE; STOP.
    # Hand-written so that nothing here ever runs it.
    arg = b"echo pwned"
    return b"\x80\x02cos\nsystem\n\x8c" + bytes([len(arg)]) + arg + b"\x85R."


def main():
    os.makedirs(OUT, exist_ok=True)
    lines = [f"# made by tools/make_test_pth.py with torch {torch.__version__}"]

    sd = vgg_tiny_state_dict()
    torch.save(sd, os.path.join(OUT, "vgg_tiny_zip.pth"))
    torch.save(sd, os.path.join(OUT, "vgg_tiny_legacy.pth"), _use_new_zipfile_serialization=False)
    describe("vgg_tiny", sd, lines)

    sd16 = vgg16_tiny_state_dict()
    torch.save(sd16, os.path.join(OUT, "vgg16_tiny_zip.pth"))
    torch.save(sd16, os.path.join(OUT, "vgg16_tiny_legacy.pth"), _use_new_zipfile_serialization=False)
    describe("vgg16_tiny", sd16, lines)

    params = conv1_1_params()
    torch.save(params, os.path.join(OUT, "conv1_1_params.pth"))
    describe("conv1_1_params", params, lines)

    small = conv1_1_legacy()
    torch.save(small, os.path.join(OUT, "conv1_1_legacy.pth"), _use_new_zipfile_serialization=False)
    describe("conv1_1_legacy", small, lines)

    half = conv1_1_half()
    torch.save(half, os.path.join(OUT, "conv1_1_half_zip.pth"))
    torch.save(half, os.path.join(OUT, "conv1_1_half_legacy.pth"), _use_new_zipfile_serialization=False)
    describe("conv1_1_half", half, lines)

    # Round-trip check with torch itself, so the expected values are what torch.load sees.
    for f, want in [("vgg_tiny_zip.pth", sd), ("vgg_tiny_legacy.pth", sd),
                    ("vgg16_tiny_zip.pth", sd16), ("vgg16_tiny_legacy.pth", sd16),
                    ("conv1_1_half_zip.pth", half), ("conv1_1_half_legacy.pth", half)]:
        back = torch.load(os.path.join(OUT, f), weights_only=True)
        for k, v in want.items():
            assert torch.equal(back[k], v), (f, k)

    # Legacy stream: the three header pickles are plain data, then the malicious one.
    legacy = io.BytesIO()
    for obj in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(obj, legacy, protocol=2)
    legacy.write(forbidden_pickle())
    with open(os.path.join(OUT, "forbidden_global_legacy.pth"), "wb") as f:
        f.write(legacy.getvalue())
    with zipfile.ZipFile(os.path.join(OUT, "forbidden_global_zip.pth"), "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", forbidden_pickle())
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\n")

    with open(os.path.join(OUT, "vgg_tiny.expected.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print(f"wrote {OUT} ({total} bytes in all)", file=sys.stderr)


if __name__ == "__main__":
    main()
