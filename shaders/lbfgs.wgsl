// lbfgs: L-BFGS on a flat parameter vector, as torch.optim.LBFGS without line search (what
// jcjohnson/neural-style uses), with every vector AND every scalar on the GPU so the loop needs
// no readback. Scalars live in a small buffer S (layout in gpu::lbfgs); dot products come from
// reduce.wgsl's dot_forward into S.
//   lbfgs_pair:    Yk = g - g_prev; Sk = the last step; g_prev = g   (new curvature pair)
//   lbfgs_neg:     d = -g                                            (q of the two-loop recursion)
//   lbfgs_axpy:    d += (fa * S[ia] + fb * S[ib]) * V                 (both loops' updates)
//   lbfgs_scale:   d *= S[H]                                          (initial Hessian guess)
//   lbfgs_fallback: d = -S[H] * g where g . d (in S[GD]) is not negative (not a descent direction)
//   lbfgs_step:    x += S[T] * d, then clamped to [lo, hi] when mode = 1 (projected L-BFGS);
//                  the step taken (S[T] * d unbounded, x_new - x_old bounded) kept for the pair
//   lbfgs_scalar:  one invocation; `mode` selects the scalar update (see gpu::lbfgs::Mode).
// Checked by tests/lbfgs.rs against reference::Lbfgs on a quadratic.

struct Params {
    n: u32, gx: u32, mode: u32, slot: u32,
    ia: u32, ib: u32, fa: f32, fb: f32,
    lr: f32, hist: u32, lo: f32, hi: f32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read_write> S: array<f32>;   // scalars
@group(0) @binding(2) var<storage, read> G: array<f32>;         // gradient (or V for axpy)
@group(0) @binding(3) var<storage, read_write> A: array<f32>;   // pair: g_prev; others: d
@group(0) @binding(4) var<storage, read_write> B: array<f32>;   // pair: Yk; step: x
@group(0) @binding(5) var<storage, read_write> C: array<f32>;   // pair: Sk; step: the step taken
@group(0) @binding(6) var<storage, read> D: array<f32>;         // pair: the last step

// Scalar slots (must match gpu::lbfgs).
const T: u32 = 0u;      // step length of the last / next update
const H: u32 = 1u;      // initial inverse-Hessian scale ys / yy
const YS: u32 = 2u;
const YY: u32 = 3u;
const TMP: u32 = 4u;    // a dot product just computed
const BE: u32 = 5u;
const L1: u32 = 6u;     // |g|_1 (first iteration)
const GD: u32 = 7u;     // g . d of the direction just computed
const RO: u32 = 8u;     // RO + k: 1 / (y_k . s_k), 0 for a skipped pair
// AL + k at RO + hist + k; then two counters at RO + 2 hist: pairs skipped, fallbacks taken

fn idx(wid: vec3<u32>, li: u32) -> u32 {
    return (wid.y * P.gx + wid.x) * 256u + li;
}

@compute @workgroup_size(256)
fn lbfgs_pair(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = idx(wid, li);
    if (i >= P.n) { return; }
    let g = G[i];
    B[i] = g - A[i];
    C[i] = D[i];
    A[i] = g;
}

@compute @workgroup_size(256)
fn lbfgs_neg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = idx(wid, li);
    if (i >= P.n) { return; }
    A[i] = -G[i];
}

@compute @workgroup_size(256)
fn lbfgs_axpy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = idx(wid, li);
    if (i >= P.n) { return; }
    let c = P.fa * S[P.ia] + P.fb * S[P.ib];
    A[i] = A[i] + c * G[i];
}

@compute @workgroup_size(256)
fn lbfgs_scale(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = idx(wid, li);
    if (i >= P.n) { return; }
    A[i] = A[i] * S[H];
}

@compute @workgroup_size(256)
fn lbfgs_step(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = idx(wid, li);
    if (i >= P.n) { return; }
    let step = S[T] * A[i];
    if (P.mode == 1u) {
        let x = B[i];
        let nx = clamp(x + step, P.lo, P.hi);
        B[i] = nx;
        C[i] = nx - x;
    } else {
        B[i] = B[i] + step;
        C[i] = step;
    }
}

@compute @workgroup_size(1)
fn lbfgs_scalar() {
    switch P.mode {
        // First iteration: H = 1, t = min(1, 1 / |g|_1) * lr (torch's first step).
        case 0u: {
            S[H] = 1.0;
            S[T] = min(1.0, 1.0 / S[L1]) * P.lr;
        }
        // New pair in slot k: accept it only with enough curvature (ys > 1e-10), as torch.
        case 1u: {
            let ys = S[YS];
            if (ys > 1e-10) {
                S[RO + P.slot] = 1.0 / ys;
                S[H] = ys / S[YY];
            } else {
                S[RO + P.slot] = 0.0;
                S[RO + 2u * P.hist] = S[RO + 2u * P.hist] + 1.0;
            }
        }
        // First loop: al_k = ro_k * (s_k . q)
        case 2u: {
            S[RO + P.hist + P.slot] = S[TMP] * S[RO + P.slot];
        }
        // Second loop: be = ro_k * (y_k . r)
        case 3u: {
            S[BE] = S[TMP] * S[RO + P.slot];
        }
        // Not a descent direction (or NaN): count the fallback lbfgs_fallback takes.
        case 5u: {
            if (!(S[GD] < 0.0)) {
                S[RO + 2u * P.hist + 1u] = S[RO + 2u * P.hist + 1u] + 1.0;
            }
        }
        // Later iterations: t = lr.
        default: {
            S[T] = P.lr;
        }
    }
}

@compute @workgroup_size(256)
fn lbfgs_copy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = idx(wid, li);
    if (i >= P.n) { return; }
    A[i] = G[i];
}

@compute @workgroup_size(256)
fn lbfgs_fallback(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = idx(wid, li);
    if (i >= P.n) { return; }
    if (!(S[GD] < 0.0)) {
        A[i] = -S[H] * G[i];
    }
}
