#!/usr/bin/env python3
"""Ours against PyTorch, back to back on the same machine: ms per iteration and memory per size.

Runs `stylize bench --json` (end-to-end part only), then tools/torch_bench.py at the same sizes
(the sizes stylize actually ran, so `max` resolves to one number), and prints ours / PyTorch.
PyTorch runs on the CPU when stylize's adapter is a CPU driver (lavapipe), else on CUDA when
available (both TF32 off and PyTorch's defaults).

    cargo build --release
    python3 tools/compare_bench.py --sizes 64,128                 # this machine (lavapipe)
    python3 tools/compare_bench.py --sizes 128,256,512,max --memory-sizes 512,1024,2048
    # without the CLI subcommand, the bench target takes the same flags:
    python3 tools/compare_bench.py --ours "cargo bench -q --bench kernels --" --sizes 64,128
"""
import argparse, json, os, shlex, subprocess, sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def last_json(text, what):
    start = text.find("{")
    if start < 0:
        sys.exit(f"compare_bench: no JSON from {what}")
    return json.loads(text[start:])


def run(cmd, what):
    print(f"compare_bench: {' '.join(shlex.quote(c) for c in cmd)}", file=sys.stderr, flush=True)
    r = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    if r.returncode != 0:
        sys.exit(f"compare_bench: {what} failed (exit {r.returncode})")
    return last_json(r.stdout, what)


def mib(b):
    return f"{b / 2**20:.1f}"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ours", default="target/release/stylize bench",
                   help="command that runs stylize's benchmark (gets bench flags appended)")
    p.add_argument("--sizes", default="64,128", help="end-to-end sizes (px; `max`: largest that fits)")
    p.add_argument("--memory-sizes", default="", help="sizes to compare memory at (PyTorch runs 1 iteration)")
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--adapter", default="", help="stylize's --adapter")
    p.add_argument("--threads", type=int, default=0, help="PyTorch CPU threads (0: all cores)")
    p.add_argument("--repeat", type=int, default=1,
                   help="run both sides this many times, alternating, and keep each side's best ms/iteration "
                        "per size (robust to other load on a shared machine)")
    p.add_argument("--json", action="store_true", help="print both reports and the ratios as JSON")
    a = p.parse_args()

    # VGG19 with the convs' zero padding only: the network tools/torch_bench.py runs (stylize's
    # renders add a reflected margin by default, which is more work than PyTorch's port does).
    same = ["--model", "vgg19", "--edge", "zero"]
    ours_cmd = shlex.split(a.ours) + same + ["--json", "--no-kernels", "--e2e-sizes", a.sizes,
                                     "--iterations", str(a.iterations)]
    ours_cmd += ["--memory-sizes", a.memory_sizes] if a.memory_sizes else ["--no-memory"]
    if a.adapter:
        ours_cmd += ["--adapter", a.adapter]
    ours = run(ours_cmd, "stylize bench")
    device = "cpu" if ours.get("device_type") == "Cpu" else "auto"

    sizes = [e["size"] for e in ours["e2e"]]
    torch_cmd = [sys.executable, os.path.join(HERE, "torch_bench.py"), "--json", "--device", device,
                 "--threads", str(a.threads), "--iterations", str(a.iterations)]
    torch = run(torch_cmd + ["--sizes", ",".join(map(str, sizes))], "torch_bench.py") if sizes else {"results": []}
    ours["e2e_all_ms"] = {e["size"]: [e["ms_per_iter"]] for e in ours["e2e"]}
    torch["all_ms"] = {(r["size"], r["mode"]): [r["ms_per_iter"]] for r in torch["results"] if "error" not in r}
    # More rounds at the same sizes (no `max` lookup, no memory part); keep each side's best.
    again = shlex.split(a.ours) + same + ["--json", "--no-kernels", "--no-memory", "--e2e-sizes", ",".join(map(str, sizes)),
                                   "--iterations", str(a.iterations)] + (["--adapter", a.adapter] if a.adapter else [])
    for _ in range(1, a.repeat):
        o2 = run(again, "stylize bench")
        for e in o2["e2e"]:
            ours["e2e_all_ms"].setdefault(e["size"], []).append(e["ms_per_iter"])
            best = next(b for b in ours["e2e"] if b["size"] == e["size"])
            if e["ms_per_iter"] < best["ms_per_iter"]:
                best.update(e)
        t2 = run(torch_cmd + ["--sizes", ",".join(map(str, sizes))], "torch_bench.py")
        for r in t2["results"]:
            if "error" in r:
                continue
            torch["all_ms"].setdefault((r["size"], r["mode"]), []).append(r["ms_per_iter"])
            for i, b in enumerate(torch["results"]):
                if b["size"] == r["size"] and b["mode"] == r["mode"] and ("error" in b or r["ms_per_iter"] < b["ms_per_iter"]):
                    torch["results"][i] = r
    torch["all_ms"] = [{"size": k[0], "mode": k[1], "ms_per_iter": v} for k, v in torch["all_ms"].items()]
    torch_mem = None
    if a.memory_sizes:
        msizes = [m["size"] for m in ours["memory"]]
        torch_mem = run(torch_cmd[:-2] + ["--iterations", "1", "--warmup", "0",
                                          "--sizes", ",".join(map(str, msizes))], "torch_bench.py (memory)")

    modes = []
    for r in torch["results"]:
        if r["mode"] not in modes:
            modes.append(r["mode"])
    by = {(r["size"], r["mode"]): r for r in torch["results"]}
    rows = []
    for e in ours["e2e"]:
        row = {"size": e["size"], "ours_ms": e["ms_per_iter"], "ours_bytes": e["memory"]["total_bytes"]}
        for m in modes:
            t = by.get((e["size"], m))
            if t and "error" not in t:
                row[f"torch_ms_{m}"] = t["ms_per_iter"]
                row[f"ratio_{m}"] = e["ms_per_iter"] / t["ms_per_iter"]
                row[f"torch_peak_bytes_{m}"] = t["peak_bytes"]
        rows.append(row)
    if a.json:
        print(json.dumps({"ours": ours, "torch": torch, "torch_memory": torch_mem, "rows": rows}, indent=1))
        return

    tinfo = torch["results"][0] if torch["results"] and "error" not in torch["results"][0] else {}
    print(f"ours:    stylize on {ours['adapter']} ({ours['backend']}, {ours['device_type']}), {ours['date']}")
    print(f"PyTorch: {tinfo.get('torch', '?')} on {tinfo.get('device', device)}"
          + (f", {tinfo['threads']} threads" if tinfo.get("device") == "cpu" else "") + ", fp32")
    print("ms per iteration (forward + losses + backward + Adam), ours / PyTorch"
          + (f", best of {a.repeat} alternating runs:" if a.repeat > 1 else ":"))
    head = f"{'size':>10} {'ours':>10}"
    for m in modes:
        head += f" {'torch ' + m:>16} {'ours/torch':>10}"
    head += f" {'ours MiB':>9}" + "".join(f" {'torch MiB ' + m:>19}" for m in modes)
    print(head)
    for r in rows:
        line = f"{str(r['size']) + 'x' + str(r['size']):>10} {r['ours_ms']:>10.1f}"
        for m in modes:
            if f"torch_ms_{m}" in r:
                line += f" {r[f'torch_ms_{m}']:>16.1f} {r[f'ratio_{m}']:>9.2f}x"
            else:
                line += f" {'failed':>16} {'':>10}"
        line += f" {mib(r['ours_bytes']):>9}"
        line += "".join(f" {mib(r[f'torch_peak_bytes_{m}']) if f'torch_peak_bytes_{m}' in r else '-':>19}" for m in modes)
        print(line)
    if a.repeat > 1:
        fmt = lambda v: ", ".join(f"{x:.1f}" for x in v)
        for s, v in ours["e2e_all_ms"].items():
            print(f"  all runs {s}x{s}: ours {fmt(v)}; "
                  + "; ".join(f"torch {r['mode']} {fmt(r['ms_per_iter'])}" for r in torch["all_ms"] if r["size"] == s))
    if torch_mem is not None:
        print("\nmemory: GPU buffers stylize holds vs PyTorch's peak (one iteration)")
        tm = {(r["size"], r["mode"]): r for r in torch_mem["results"]}
        for m in ours["memory"]:
            s = m["size"]
            if "total_bytes" in m["memory"]:
                o = mib(m["memory"]["total_bytes"]) + " MiB"
            else:  # too large for this adapter's bindings: the graph's estimated buffers
                o = "graph est. " + mib(m.get("estimated_graph_bytes", 0)) + " MiB (does not fit here)"
            t = "; ".join(f"{md}: " + (mib(tm[(s, md)]["peak_bytes"]) + " MiB" if "peak_bytes" in tm.get((s, md), {}) else "failed")
                          for md in modes or ["cpu"])
            print(f"{str(s) + 'x' + str(s):>10}  ours {o:>14}   PyTorch {t}")
        print("  (ours: graph + textures + net + targets; PyTorch on a GPU: max_memory_allocated, on the CPU: RSS growth)")


if __name__ == "__main__":
    main()
