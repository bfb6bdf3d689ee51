#!/usr/bin/env python3
"""How many Newton-Schulz iterations `--style-loss mean-cov` runs (gpu/meancov.rs NS_ITERATIONS).

Emulates the GPU's float32 coupled Newton-Schulz iteration (every product with its left factor
symmetrised, as the Gram-backward kernels compute it) on covariances of synthetic ReLU features
(a random mix of k sources, rectified), full rank and rank-deficient (fewer positions than
channels, as at deep taps of small images), and compares the loss and the feature gradient with
a float64 eigendecomposition. Prints, per case and iteration count, loss rel err / gradient rel
err. Run: python3 tools/meancov_ns_study.py  (numpy only; ~1 min).
"""
import numpy as np

EPS = 1e-4
rng = np.random.default_rng(0)


def features(c, n, k, scale):
    src = rng.standard_normal((k, n))
    mix = rng.standard_normal((c, k)) / np.sqrt(k)
    off = rng.standard_normal((c, 1)) * 0.5
    return np.maximum((mix @ src + off) * scale, 0)


def mean_cov(f):
    n = f.shape[1]
    mu = f.mean(1, keepdims=True)
    return mu, f @ f.T / n - mu @ mu.T + EPS * np.eye(f.shape[0])


def sqrt_and_inv(a):
    w, v = np.linalg.eigh(a)
    w = np.maximum(w, 1e-300)
    return (v * np.sqrt(w)) @ v.T, (v / np.sqrt(w)) @ v.T


def exact(cov, cov_t, root):
    c = cov.shape[0]
    m_sqrt, m_isqrt = sqrt_and_inv(root @ cov @ root)
    loss = np.trace(cov + cov_t - 2 * m_sqrt) / c
    return loss, (np.eye(c) - root @ m_isqrt @ root) / c


def sym(a):
    return (a + a.T) / 2


def newton_schulz(cov, cov_t, root, iters):
    f32 = np.float32
    c = cov.shape[0]
    cov, root, eye = cov.astype(f32), root.astype(f32), np.eye(c, dtype=f32)
    m = sym(root) @ (sym(cov) @ root)
    s = np.linalg.norm(m)
    y, z = m / s, eye.copy()
    for _ in range(iters):
        t = (3 * eye - sym(z) @ y) / 2
        y, z = sym(y) @ t, sym(t) @ z
    loss = (np.trace(cov) + np.trace(cov_t) - 2 * np.sqrt(s) * np.trace(y)) / c
    return loss, (eye - sym(root) @ (sym(z) @ root) / np.sqrt(s)) / c


def main():
    cases = [(64, 4096, 32, 1.0), (256, 1024, 64, 3.0), (512, 1024, 256, 30.0),  # full rank
             (512, 256, 96, 10.0), (512, 64, 64, 10.0), (512, 16, 16, 10.0),  # rank-deficient
             (64, 20, 8, 1.0), (256, 30, 30, 1.0)]
    for c, n, k, scale in cases:
        f, ft = features(c, n, k, scale), features(c, 3 * n, k, scale)
        mu, cov = mean_cov(f)
        _, cov_t = mean_cov(ft)
        root, _ = sqrt_and_inv(cov_t)
        loss, d = exact(cov, cov_t, root)
        w = np.linalg.eigvalsh(root @ cov @ root)
        grad = 2 * d @ (f - mu) / n
        row = []
        for iters in range(10, 19):
            l32, d32 = newton_schulz(cov, cov_t, root, iters)
            g32 = 2 * d32 @ (f - mu) / n
            with np.errstate(all="ignore"):
                row.append(f"{iters}:{abs(l32 - loss) / abs(loss):.0e}/"
                           f"{np.linalg.norm(g32 - grad) / np.linalg.norm(grad):.0e}")
        print(f"c {c} n {n} rank<={k} cond(M) {w.max() / max(w.min(), 1e-300):.0e}: " + " ".join(row))


if __name__ == "__main__":
    main()
