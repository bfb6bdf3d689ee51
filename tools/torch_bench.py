#!/usr/bin/env python3
"""Time stylize's algorithm in PyTorch: the peer `stylize bench` is compared with.

Per size (a square S x S image): milliseconds per iteration of forward + losses + backward to
the image + Adam step (+ clamp to [0,1]), fp32, and the peak memory of the run. The algorithm is
exactly tools/torch_compare.py's (its `features` and `gram` are imported from there): VGG19
features truncated after the deepest tap, average pooling, content at relu4_2, style at
relu1_1..relu5_1 (Grams normalised by C*H*W), TV on the [0,1] image, ImageNet normalisation,
weights content 1 / style 1e6 / tv 1e2 (stylize's torchvision defaults), Adam lr 0.02, seeded
He-normal random weights (the same values torch_compare.py writes). Weights are frozen: autograd
computes only the image gradient, as stylize does.

    pip install torch numpy
    python3 tools/torch_bench.py --sizes 64,128            # CPU (all cores unless --threads)
    python3 tools/torch_bench.py --sizes 128,256,512 --json

On CUDA (when available, or --device cuda) each size runs twice: TF32 off (the fair fp32
comparison) and PyTorch's defaults (cuDNN convolutions may use TF32). Each (size, mode) runs in
a fresh child process so its peak memory is its own: torch.cuda.max_memory_allocated on a GPU,
growth of the resident set (VmHWM - VmRSS at start) on the CPU.
"""
import argparse, json, os, resource, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))

CONTENT_LAYERS = ["relu4_2"]
STYLE_LAYERS = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
WEIGHTS = (1.0, 1e6, 1e2)  # content, style, tv: stylize's defaults for torchvision weights
LR = 0.02


def rss_bytes(field):
    """VmRSS / VmHWM of this process from /proc (Linux); None elsewhere."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def child(a):
    """One (size, mode): prints one JSON line."""
    sys.path.insert(0, HERE)
    import torch
    import torch_compare as tc

    if a.threads > 0:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    if cuda:
        if a.mode in ("tf32-off", "benchmark"):
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        if a.mode == "benchmark":
            # cuDNN's own autotuning (as our --tune), fp32 with TF32 off.
            torch.backends.cudnn.benchmark = True
        torch.cuda.init()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        # Reset the high-water mark so VmHWM is this run's peak (Linux >= 4.0).
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass
        base = rss_bytes("VmRSS")

    dtype = torch.float32
    taps_c = [tc.parse_tap(t) for t in CONTENT_LAYERS]
    taps_s = [tc.parse_tap(t) for t in STYLE_LAYERS]
    taps = taps_c + taps_s
    n = max(tc.convs_needed(t) for t in taps)
    # The same weights as torch_compare.py (same generator, same order), up to the deepest tap.
    g = torch.Generator().manual_seed(a.seed)
    sd = {}
    for i, (cin, cout) in enumerate(tc.CONVS[:n]):
        std = (2.0 / (cin * 9)) ** 0.5
        sd[f"features.{tc.FEATURE_INDEX[i]}.weight"] = (torch.randn(cout, cin, 3, 3, generator=g) * std).to(dev)
        sd[f"features.{tc.FEATURE_INDEX[i]}.bias"] = (torch.randn(cout, generator=g) * 0.01).to(dev)
    s = a.size
    content = torch.rand(1, 3, s, s, generator=g).to(dev)
    style = torch.rand(1, 3, s, s, generator=g).to(dev)
    x = torch.rand(1, 3, s, s, generator=g).to(dev).requires_grad_(True)
    mean = torch.tensor(tc.MEAN, dtype=dtype, device=dev).view(1, 3, 1, 1)
    std = torch.tensor(tc.STD, dtype=dtype, device=dev).view(1, 3, 1, 1)
    norm = lambda img: (img - mean) / std
    with torch.no_grad():
        fc = tc.features(norm(content), sd, n, a.pool, taps, dtype)
        fs = tc.features(norm(style), sd, n, a.pool, taps, dtype)
        target_c = [fc[t] for t in taps_c]
        target_s = [tc.gram(fs[t]) for t in taps_s]
        del fc, fs
    wc, ws, wt = WEIGHTS
    opt = torch.optim.Adam([x], lr=LR, betas=(0.9, 0.999), eps=1e-8)

    def step():
        opt.zero_grad(set_to_none=True)
        fx = tc.features(norm(x), sd, n, a.pool, taps, dtype)
        lc = sum(wc / len(taps_c) * torch.mean((fx[t] - target_c[k]) ** 2) for k, t in enumerate(taps_c))
        ls = sum(ws * torch.mean((tc.gram(fx[t]) - target_s[k]) ** 2) for k, t in enumerate(taps_s))
        dxh = x[:, :, :, 1:] - x[:, :, :, :-1]
        dyv = x[:, :, 1:, :] - x[:, :, :-1, :]
        tv = wt * ((dxh ** 2).sum() + (dyv ** 2).sum()) / x[0].numel()
        total = lc + ls + tv
        total.backward()
        opt.step()
        with torch.no_grad():
            x.clamp_(0.0, 1.0)
        return total

    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for _ in range(a.warmup):
        step()
    sync()
    per = []
    t0 = time.perf_counter()
    for _ in range(a.iterations):
        t = time.perf_counter()
        loss = step()
        if a.per_iteration_sync:
            sync()
        per.append((time.perf_counter() - t) * 1e3)
    sync()
    total_ms = (time.perf_counter() - t0) * 1e3
    ok = bool(torch.isfinite(loss).item())
    if cuda:
        peak = torch.cuda.max_memory_allocated() - base
        peak_kind = "cuda max_memory_allocated"
        device_name = torch.cuda.get_device_name(dev)
    else:
        hwm = rss_bytes("VmHWM")
        if hwm is None or base is None:
            hwm, base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, 0
        peak = hwm - base
        peak_kind = "RSS growth (VmHWM - VmRSS at start)"
        device_name = "cpu"
    per.sort()
    print(json.dumps({
        "size": s, "mode": a.mode, "device": device_name, "threads": torch.get_num_threads(),
        "torch": torch.__version__, "iterations": a.iterations, "warmup": a.warmup,
        "ms_per_iter": total_ms / a.iterations, "median_ms": per[len(per) // 2],
        "peak_bytes": peak, "peak_kind": peak_kind, "loss_finite": ok,
    }), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="64,128", help="comma-separated square sizes in px")
    p.add_argument("--iterations", type=int, default=10, help="timed iterations per size")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:N")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default, all cores)")
    p.add_argument("--modes", default="",
                   help="CUDA modes to run: tf32-off, default, benchmark (TF32 off, cudnn.benchmark on); default: all")
    p.add_argument("--pool", default="avg", choices=["avg", "max"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--per-iteration-sync", action="store_true",
                   help="synchronise after every iteration (median per iteration on a GPU)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--mode", default="cpu", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        return child(a)

    import torch
    device = a.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    cuda = device.startswith("cuda")
    modes = [m for m in a.modes.split(",") if m] or (["tf32-off", "default", "benchmark"] if cuda else ["cpu"])
    sizes = [int(v) for v in a.sizes.split(",") if v]
    results = []
    for s in sizes:
        for m in modes:
            cmd = [sys.executable, os.path.abspath(__file__), "--child", "--size", str(s), "--mode", m,
                   "--device", device, "--threads", str(a.threads), "--iterations", str(a.iterations),
                   "--warmup", str(a.warmup), "--pool", a.pool, "--seed", str(a.seed)]
            if a.per_iteration_sync:
                cmd.append("--per-iteration-sync")
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                err = (r.stderr.strip().splitlines() or ["(no output)"])[-1]
                print(f"torch_bench: size {s} {m}: failed: {err}", file=sys.stderr)
                results.append({"size": s, "mode": m, "error": err})
                continue
            row = json.loads(r.stdout.strip().splitlines()[-1])
            results.append(row)
            print(f"torch_bench: {s}x{s} {m}: {row['ms_per_iter']:.1f} ms/iteration, "
                  f"peak {row['peak_bytes'] / 2**20:.1f} MiB", file=sys.stderr)
    info = {"torch": torch.__version__, "device": device,
            "device_name": torch.cuda.get_device_name(device) if cuda else "cpu",
            "threads": a.threads or torch.get_num_threads(), "results": results}
    if a.json:
        print(json.dumps(info, indent=1))
        return
    print(f"PyTorch {info['torch']} on {info['device_name']}"
          + ("" if cuda else f", {info['threads']} threads") + ", fp32")
    print(f"{'size':>9} {'mode':>9} {'iters':>6} {'ms/iter':>10} {'median':>10} {'peak MiB':>10}")
    for r in results:
        if "error" in r:
            print(f"{r['size']:>9} {r['mode']:>9}  failed: {r['error']}")
            continue
        print(f"{str(r['size']) + 'x' + str(r['size']):>9} {r['mode']:>9} {r['iterations']:>6} "
              f"{r['ms_per_iter']:>10.1f} {r['median_ms']:>10.1f} {r['peak_bytes'] / 2**20:>10.1f}")


if __name__ == "__main__":
    main()
