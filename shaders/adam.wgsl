// adam: Adam (Kingma & Ba 2015) on a flat parameter tensor, entirely on the GPU.
//   adam_tick: one invocation; S = [t, 1 - b1^t, 1 - b2^t, 0] with t incremented, so the loop
//              needs no host write per step. 1 - b^t is kept by the recurrence
//              c_t = b c_{t-1} + (1 - b) with (1 - b) computed on the host in f64: forming
//              1 - 0.999f in f32 would be off by 1.3e-5 relative.
//   adam_step: m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
//              p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)   (the textbook form)
//              then, if clamp, p = clamp(p, lo, hi).
// Checked by tests/kernels.rs against reference::adam_step over several steps.

struct Params {
    n: u32, gx: u32,
    lr: f32, beta1: f32, beta2: f32, eps: f32,
    clamp: u32, _p: u32,
    lo: f32, hi: f32,
    one_minus_beta1: f32, one_minus_beta2: f32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read_write> S: array<f32>;      // state: t, bc1, bc2, _
@group(0) @binding(2) var<storage, read> G: array<f32>;            // gradient
@group(0) @binding(3) var<storage, read_write> Prm: array<f32>;    // parameters
@group(0) @binding(4) var<storage, read_write> M: array<f32>;      // first moment
@group(0) @binding(5) var<storage, read_write> V: array<f32>;      // second moment

@compute @workgroup_size(1)
fn adam_tick() {
    S[0] = S[0] + 1.0;
    S[1] = P.beta1 * S[1] + P.one_minus_beta1;
    S[2] = P.beta2 * S[2] + P.one_minus_beta2;
}

@compute @workgroup_size(256)
fn adam_step(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = (wid.y * P.gx + wid.x) * 256u + li;
    if (i >= P.n) { return; }
    let g = G[i];
    let m = P.beta1 * M[i] + P.one_minus_beta1 * g;
    let v = P.beta2 * V[i] + P.one_minus_beta2 * g * g;
    M[i] = m;
    V[i] = v;
    var p = Prm[i] - P.lr * (m / S[1]) / (sqrt(v / S[2]) + P.eps);
    if (P.clamp != 0u) {
        p = clamp(p, P.lo, P.hi);
    }
    Prm[i] = p;
}
