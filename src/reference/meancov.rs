//! The f64 twin of the mean-covariance (Wasserstein-2) style loss: raw moments, symmetric
//! eigendecompositions by cyclic Jacobi, and the loss with its gradient w.r.t. the features.
//! The GPU runs Newton-Schulz instead (`gpu::meancov`), so the tests compare two methods.

use crate::model::MEANCOV_EPS;

/// Eigenvalues and eigenvectors of the symmetric n x n matrix `a` (row-major) by cyclic Jacobi
/// rotations: (values, vectors) with vector k in column k of the row-major n x n `vectors`, so
/// a = V diag(values) V^T. Sweeps until the off-diagonal mass is below 1e-30 of the total.
pub fn sym_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let (vals, vt) = sym_eigen_rows(a, n);
    let mut v = vec![0.0; n * n];
    for k in 0..n {
        for i in 0..n {
            v[i * n + k] = vt[k * n + i];
        }
    }
    (vals, v)
}

/// [`sym_eigen`] with the eigenvectors as rows (vector k in row k): every rotation then touches
/// two contiguous rows of the matrix and of the vectors, and mirrors the matrix's rows into its
/// columns (it stays symmetric), which keeps c = 512 at a few seconds.
fn sym_eigen_rows(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    assert_eq!(a.len(), n * n);
    let mut a = a.to_vec();
    let mut vt = vec![0.0; n * n];
    for i in 0..n {
        vt[i * n + i] = 1.0;
    }
    let total: f64 = a.iter().map(|x| x * x).sum();
    for _sweep in 0..64 {
        let off: f64 = (0..n)
            .flat_map(|p| (0..n).map(move |q| (p, q)))
            .filter(|(p, q)| p != q)
            .map(|(p, q)| a[p * n + q].powi(2))
            .sum();
        if off <= 1e-30 * total || off == 0.0 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                // The rotation J (J_pp = J_qq = c, J_pq = s = -J_qp) with t = s / c the smaller
                // root of t^2 + 2 theta t - 1 = 0 zeroes (J^T A J)_pq.
                let (app, aqq) = (a[p * n + p], a[q * n + q]);
                let theta = (aqq - app) / (2.0 * apq);
                let t = if theta == 0.0 { 1.0 } else { theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt()) };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    if k == p || k == q {
                        continue;
                    }
                    let (x, y) = (a[p * n + k], a[q * n + k]);
                    let (np, nq) = (c * x - s * y, s * x + c * y);
                    a[p * n + k] = np;
                    a[q * n + k] = nq;
                    a[k * n + p] = np;
                    a[k * n + q] = nq;
                }
                a[p * n + p] = c * c * app - 2.0 * c * s * apq + s * s * aqq;
                a[q * n + q] = s * s * app + 2.0 * c * s * apq + c * c * aqq;
                a[p * n + q] = 0.0;
                a[q * n + p] = 0.0;
                for i in 0..n {
                    let (x, y) = (vt[p * n + i], vt[q * n + i]);
                    vt[p * n + i] = c * x - s * y;
                    vt[q * n + i] = s * x + c * y;
                }
            }
        }
    }
    ((0..n).map(|i| a[i * n + i]).collect(), vt)
}

/// V diag(f(values)) V^T for the symmetric `a` (n x n): a matrix function by [`sym_eigen`].
pub fn sym_fn(a: &[f64], n: usize, f: impl Fn(f64) -> f64) -> Vec<f64> {
    let (vals, vt) = sym_eigen_rows(a, n);
    let mut out = vec![0.0; n * n];
    for (k, &val) in vals.iter().enumerate() {
        let fk = f(val);
        let row = &vt[k * n..(k + 1) * n];
        for i in 0..n {
            let w = fk * row[i];
            for (o, r) in out[i * n..(i + 1) * n].iter_mut().zip(row) {
                *o += w * r;
            }
        }
    }
    out
}

/// a b for n x n row-major matrices.
pub fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut out = vec![0.0; n * n];
    for i in 0..n {
        for k in 0..n {
            let aik = a[i * n + k];
            for j in 0..n {
                out[i * n + j] += aik * b[k * n + j];
            }
        }
    }
    out
}

/// The raw moments of features f (c, n): S = F F^T / n (c x c) then the mean mu = F 1 / n (c);
/// the mean-covariance loss's style target (`model::StyleLoss::target_len`).
pub fn meancov_moments(f: &[f64], c: usize, n: usize) -> Vec<f64> {
    let mut out = super::gram_forward(f, c, n);
    // gram_forward divides by c * n; the second moment divides by n only.
    out.iter_mut().for_each(|v| *v *= c as f64);
    out.extend((0..c).map(|i| f[i * n..(i + 1) * n].iter().sum::<f64>() / n as f64));
    out
}

/// The covariance with the ridge, S - mu mu^T + eps I, from [`meancov_moments`]' layout.
pub fn meancov_covariance(moments: &[f64], c: usize) -> Vec<f64> {
    assert_eq!(moments.len(), c * c + c);
    let mu = &moments[c * c..];
    let mut cov = moments[..c * c].to_vec();
    for i in 0..c {
        for j in 0..c {
            cov[i * c + j] -= mu[i] * mu[j];
        }
        cov[i * c + i] += MEANCOV_EPS;
    }
    cov
}

/// What the loss needs of a style target: its mean, R = C_t^{1/2} and tr C_t (C_t with the
/// ridge). Computed once per target.
#[derive(Clone, Debug)]
pub struct MeanCovTarget {
    /// Channels.
    pub c: usize,
    /// mu_t (c).
    pub mean: Vec<f64>,
    /// R = C_t^{1/2} (c x c, symmetric).
    pub root: Vec<f64>,
    /// tr C_t.
    pub trace: f64,
}

/// The target from its raw moments ([`meancov_moments`]' layout).
pub fn meancov_target(moments: &[f64], c: usize) -> MeanCovTarget {
    let cov = meancov_covariance(moments, c);
    let trace = (0..c).map(|i| cov[i * c + i]).sum();
    let root = sym_fn(&cov, c, |x| x.max(0.0).sqrt());
    MeanCovTarget { c, mean: moments[c * c..].to_vec(), root, trace }
}

/// The weight-free loss mean((mu - mu_t)^2) + tr(C + C_t - 2 (R C R)^{1/2}) / c of features f
/// (c, n) against `t`, and dLoss/dF (c, n): with M = R C R, D = dL/dC = (I - R M^{-1/2} R) / c,
/// dL/dmu = 2 (mu - mu_t) / c - 2 D mu, dL/dF = 2 D F / n + dL/dmu 1^T / n.
pub fn meancov_forward_backward(f: &[f64], c: usize, n: usize, t: &MeanCovTarget) -> (f64, Vec<f64>) {
    assert_eq!(t.c, c);
    let moments = meancov_moments(f, c, n);
    let mu = &moments[c * c..];
    let cov = meancov_covariance(&moments, c);
    let m = matmul(&t.root, &matmul(&cov, &t.root, c), c);
    let (vals, v) = sym_eigen(&m, c);
    let sqrt_trace: f64 = vals.iter().map(|&x| x.max(0.0).sqrt()).sum();
    let tr_cov: f64 = (0..c).map(|i| cov[i * c + i]).sum();
    let mean_term = mu.iter().zip(&t.mean).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / c as f64;
    let loss = mean_term + (tr_cov + t.trace - 2.0 * sqrt_trace) / c as f64;
    // M^{-1/2}; M >= eps^2 I in exact arithmetic, so the floor only guards rounding.
    let mut inv = vec![0.0; c * c];
    for i in 0..c {
        for j in 0..c {
            inv[i * c + j] = (0..c).map(|k| v[i * c + k] * v[j * c + k] / vals[k].max(1e-300).sqrt()).sum();
        }
    }
    let rmr = matmul(&t.root, &matmul(&inv, &t.root, c), c);
    let mut d: Vec<f64> = rmr.iter().map(|x| -x / c as f64).collect();
    for i in 0..c {
        d[i * c + i] += 1.0 / c as f64;
    }
    let dmu: Vec<f64> = (0..c)
        .map(|i| 2.0 * (mu[i] - t.mean[i]) / c as f64 - 2.0 * (0..c).map(|j| d[i * c + j] * mu[j]).sum::<f64>())
        .collect();
    let mut df = vec![0.0; c * n];
    for i in 0..c {
        for j in 0..c {
            let dij = 2.0 * d[i * c + j] / n as f64;
            for p in 0..n {
                df[i * n + p] += dij * f[j * n + p];
            }
        }
        for p in 0..n {
            df[i * n + p] += dmu[i] / n as f64;
        }
    }
    (loss, df)
}
