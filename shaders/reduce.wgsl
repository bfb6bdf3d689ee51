// reduce: scalar losses and their gradients, summed on the GPU in two deterministic stages.
//   stage 1 (mse_partial, tv_partial, sum_partial, dot_partial, abs_sum_partial): workgroup z sums its grid-stride share of
//           the terms and writes Part[z]  (fixed order: repeatable bit for bit)
//   stage 2 (reduce_finish): one workgroup sums Part[0..groups] and writes Out[slot] (+)= scale * sum
//   mse_partial_grad: mse_partial that also writes mse_backward's dx in the same pass over x and
//           t (the fused loss + gradient of one content or style term)
//   mse_backward: dx (+)= scale * (x - t)             (scale = 2 * weight / n)
//   tv_backward:  dx (+)= scale * d tv_sum / dx       (scale = 2 * weight / (c*h*w) is applied
//                 to the stencil of differences; see reference::tv_backward)
//   add_l1_normalized: Out (+)= scale * X / (Tg[0] + 1e-8), Tg[0] = sum |X| written just before
//                 by abs_sum_partial + reduce_finish (one loss term's gradient under
//                 --normalize-gradients, as jcjohnson/neural-style; see reference::add_l1_normalized)
// TV here is the sum of squared horizontal and vertical neighbour differences of (c, h, w).
// Stage 1 reads 4 elements per load (X4, T4: the same buffers as vec4s; the last n % 4 elements
// one at a time) and the wrappers size the grid so each lane takes >= 16 loads: on CPU drivers
// every load is a per-lane loop and every barrier of the tree sum a pass over the workgroup.
// Checked by tests/kernels.rs against reference::mse_*, tv_*, sum, add_l1_normalized.

struct Params {
    n: u32,          // elements
    groups: u32,     // stage-1 workgroups (= partial sums)
    h: u32, w: u32,  // tv: plane shape
    scale: f32,
    slot: u32,       // reduce_finish: index written in Out
    accumulate: u32, // backward: 1 adds into the gradient
    gx: u32,         // backward: workgroups along x of the 2-D grid
    gscale: f32,     // mse_partial_grad: the gradient's scale (2 * weight / n)
    gaccumulate: u32,// mse_partial_grad: 1 adds into dx
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> X: array<f32>;          // x (or the partial sums in finish)
@group(0) @binding(2) var<storage, read> Tg: array<f32>;         // mse: target t
@group(0) @binding(3) var<storage, read_write> Out: array<f32>;  // partials / losses / gradient
@group(0) @binding(4) var<storage, read> X4: array<vec4<f32>>;   // X again, as vec4
@group(0) @binding(5) var<storage, read> T4: array<vec4<f32>>;   // Tg again, as vec4
@group(0) @binding(6) var<storage, read_write> D: array<f32>;    // mse_partial_grad: dx
@group(0) @binding(7) var<storage, read_write> D4: array<vec4<f32>>; // D again, as vec4

var<workgroup> red: array<f32, 256>;

fn tree_sum(li: u32, v: f32) -> f32 {
    red[li] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (li < s) {
            red[li] += red[li + s];
        }
        workgroupBarrier();
    }
    return red[0];
}

fn tv_term(i: u32) -> f32 {
    let j = i % P.w;
    let y = (i / P.w) % P.h;
    let v = X[i];
    var s = 0.0;
    if (j + 1u < P.w) { let d = X[i + 1u] - v; s += d * d; }
    if (y + 1u < P.h) { let d = X[i + P.w] - v; s += d * d; }
    return s;
}

// Sum of (x - t)^2 over this lane's grid-stride share.
fn mse_terms(wid: vec3<u32>, li: u32) -> f32 {
    let n4 = P.n / 4u;
    var s = 0.0;
    for (var q = wid.x * 256u + li; q < n4; q += P.groups * 256u) {
        let d = X4[q] - T4[q];
        s += dot(d, d);
    }
    let i = n4 * 4u + li;
    if (wid.x == 0u && i < P.n) {
        let d = X[i] - Tg[i];
        s += d * d;
    }
    return s;
}

// mse_terms, and dx (+)= gscale (x - t). A function of its own so that only mse_partial_grad
// uses (and binds) D and D4.
fn mse_terms_grad(wid: vec3<u32>, li: u32) -> f32 {
    let n4 = P.n / 4u;
    var s = 0.0;
    for (var q = wid.x * 256u + li; q < n4; q += P.groups * 256u) {
        let d = X4[q] - T4[q];
        s += dot(d, d);
        var g = P.gscale * d;
        if (P.gaccumulate != 0u) { g += D4[q]; }
        D4[q] = g;
    }
    let i = n4 * 4u + li;
    if (wid.x == 0u && i < P.n) {
        let d = X[i] - Tg[i];
        s += d * d;
        var g = P.gscale * d;
        if (P.gaccumulate != 0u) { g += D[i]; }
        D[i] = g;
    }
    return s;
}

@compute @workgroup_size(256)
fn mse_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let t = tree_sum(li, mse_terms(wid, li));
    if (li == 0u) { Out[wid.x] = t; }
}

@compute @workgroup_size(256)
fn mse_partial_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let t = tree_sum(li, mse_terms_grad(wid, li));
    if (li == 0u) { Out[wid.x] = t; }
}

@compute @workgroup_size(256)
fn tv_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    var s = 0.0;
    for (var i = wid.x * 256u + li; i < P.n; i += P.groups * 256u) {
        s += tv_term(i);
    }
    let t = tree_sum(li, s);
    if (li == 0u) { Out[wid.x] = t; }
}

@compute @workgroup_size(256)
fn sum_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let n4 = P.n / 4u;
    var s = 0.0;
    for (var q = wid.x * 256u + li; q < n4; q += P.groups * 256u) {
        let v = X4[q];
        s += (v.x + v.y) + (v.z + v.w);
    }
    let i = n4 * 4u + li;
    if (wid.x == 0u && i < P.n) { s += X[i]; }
    let t = tree_sum(li, s);
    if (li == 0u) { Out[wid.x] = t; }
}

@compute @workgroup_size(256)
fn reduce_finish(@builtin(local_invocation_index) li: u32) {
    var s = 0.0;
    for (var i = li; i < P.groups; i += 256u) {
        s += X[i];
    }
    let t = tree_sum(li, s);
    if (li == 0u) {
        var v = t * P.scale;
        if (P.accumulate != 0u) { v += Out[P.slot]; }
        Out[P.slot] = v;
    }
}

@compute @workgroup_size(256)
fn mse_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = (wid.y * P.gx + wid.x) * 256u + li;
    if (i >= P.n) { return; }
    var v = P.scale * (X[i] - Tg[i]);
    if (P.accumulate != 0u) { v += Out[i]; }
    Out[i] = v;
}

@compute @workgroup_size(256)
fn tv_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = (wid.y * P.gx + wid.x) * 256u + li;
    if (i >= P.n) { return; }
    let j = i % P.w;
    let y = (i / P.w) % P.h;
    let v = X[i];
    // d/dv of sum of (right - v)^2 + (v - left)^2 + (below - v)^2 + (v - above)^2, halved into scale.
    var g = 0.0;
    if (j + 1u < P.w) { g -= X[i + 1u] - v; }
    if (j > 0u) { g += v - X[i - 1u]; }
    if (y + 1u < P.h) { g -= X[i + P.w] - v; }
    if (y > 0u) { g += v - X[i - P.w]; }
    var o = P.scale * g;
    if (P.accumulate != 0u) { o += Out[i]; }
    Out[i] = o;
}

@compute @workgroup_size(256)
fn dot_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let n4 = P.n / 4u;
    var s = 0.0;
    for (var q = wid.x * 256u + li; q < n4; q += P.groups * 256u) {
        s += dot(X4[q], T4[q]);
    }
    let i = n4 * 4u + li;
    if (wid.x == 0u && i < P.n) { s = fma(X[i], Tg[i], s); }
    let t = tree_sum(li, s);
    if (li == 0u) { Out[wid.x] = t; }
}

@compute @workgroup_size(256)
fn abs_sum_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let n4 = P.n / 4u;
    var s = 0.0;
    for (var q = wid.x * 256u + li; q < n4; q += P.groups * 256u) {
        let v = abs(X4[q]);
        s += (v.x + v.y) + (v.z + v.w);
    }
    let i = n4 * 4u + li;
    if (wid.x == 0u && i < P.n) { s += abs(X[i]); }
    let t = tree_sum(li, s);
    if (li == 0u) { Out[wid.x] = t; }
}

// jcjohnson/neural-style's epsilon: torch.norm(g, 1) + 1e-8.
const L1_EPS: f32 = 1e-8;

@compute @workgroup_size(256)
fn add_l1_normalized(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = (wid.y * P.gx + wid.x) * 256u + li;
    if (i >= P.n) { return; }
    let s = P.scale / (Tg[0] + L1_EPS);
    var v = s * X[i];
    if (P.accumulate != 0u) { v += Out[i]; }
    Out[i] = v;
}
