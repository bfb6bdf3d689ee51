// meancov: the small kernels of the mean-covariance (Wasserstein-2) style loss around the
// c x c matrix products (those run on gram.wgsl's backward, see gpu/meancov.rs). c <= 512.
//   meancov_mean:          Out[i] = sum_p A[i, p] / n                   A: F (c, n); Out: mu (c)
//   meancov_center:        Out[i, j] += -A[i] A[j] + eps [i == j]       A: mu; Out: S -> C (c, c)
//   meancov_norm:          Stats[0] = |A|_F                              A: M (c, c)
//   meancov_ns_init:       Out = A / Stats[0]; Out2 = I                 Newton-Schulz Y0, Z0
//   meancov_ns_t:          Out = (3 I - Out) / 2                        T from Z Y, in place
//   meancov_loss:          Out[slot] = weight (mean((B - Cm)^2) + (tr D + trace_t - 2 sqrt(s) tr A) / c)
//                          A: Y; B: mu; Cm: mu_t; D: C
//   meancov_dcov:          Out = gweight / c (I - A / sqrt(s))          A: R Z R; Out: dL/dC
//   meancov_dmu:           Out[i] = gweight 2 (B[i] - Cm[i]) / c - 2 sum_j A[i, j] B[j]
//                          A: dL/dC (already times gweight); B: mu; Cm: mu_t
//   meancov_add_mean_grad: Out[i, p] += A[i] / n                        A: dL/dmu; Out: dF (c, n)
// s = Stats[0]. Checked by tests/meancov.rs against reference::meancov.

struct Params {
    c: u32, n: u32,
    gx: u32,         // workgroups along x of 2-D grids (meancov_add_mean_grad)
    slot: u32,       // loss slot (meancov_loss)
    eps: f32,
    weight: f32,     // loss weight
    gweight: f32,    // gradient weight
    trace_t: f32,    // tr C_t
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;
@group(0) @binding(3) var<storage, read> Cm: array<f32>;
@group(0) @binding(4) var<storage, read> D: array<f32>;
@group(0) @binding(5) var<storage, read_write> Out: array<f32>;
@group(0) @binding(6) var<storage, read_write> Out2: array<f32>;
@group(0) @binding(7) var<storage, read_write> Stats: array<f32>;

var<workgroup> red: array<f32, 256>;
var<workgroup> red2: array<f32, 256>;
var<workgroup> red3: array<f32, 256>;

// Tree sum of red[0..256] (every invocation of the workgroup calls it); result in red[0].
fn reduce1(li: u32) {
    for (var k = 128u; k > 0u; k >>= 1u) {
        workgroupBarrier();
        if (li < k) { red[li] += red[li + k]; }
    }
    workgroupBarrier();
}

// One workgroup per channel.
@compute @workgroup_size(256)
fn meancov_mean(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = wid.x;
    var s = 0.0;
    for (var p = li; p < P.n; p += 256u) {
        s += A[i * P.n + p];
    }
    red[li] = s;
    reduce1(li);
    if (li == 0u) { Out[i] = red[0] / f32(P.n); }
}

@compute @workgroup_size(256)
fn meancov_center(@builtin(global_invocation_id) gid: vec3<u32>) {
    let k = gid.x;
    if (k >= P.c * P.c) { return; }
    let i = k / P.c;
    let j = k % P.c;
    Out[k] = Out[k] - A[i] * A[j] + select(0.0, P.eps, i == j);
}

// One workgroup.
@compute @workgroup_size(256)
fn meancov_norm(@builtin(local_invocation_index) li: u32) {
    var s = 0.0;
    for (var k = li; k < P.c * P.c; k += 256u) {
        s = fma(A[k], A[k], s);
    }
    red[li] = s;
    reduce1(li);
    if (li == 0u) { Stats[0] = sqrt(red[0]); }
}

@compute @workgroup_size(256)
fn meancov_ns_init(@builtin(global_invocation_id) gid: vec3<u32>) {
    let k = gid.x;
    if (k >= P.c * P.c) { return; }
    Out[k] = A[k] / Stats[0];
    Out2[k] = select(0.0, 1.0, k / P.c == k % P.c);
}

@compute @workgroup_size(256)
fn meancov_ns_t(@builtin(global_invocation_id) gid: vec3<u32>) {
    let k = gid.x;
    if (k >= P.c * P.c) { return; }
    Out[k] = (select(0.0, 3.0, k / P.c == k % P.c) - Out[k]) * 0.5;
}

// One workgroup.
@compute @workgroup_size(256)
fn meancov_loss(@builtin(local_invocation_index) li: u32) {
    var ty = 0.0;
    var tc = 0.0;
    var dm = 0.0;
    for (var i = li; i < P.c; i += 256u) {
        ty += A[i * P.c + i];
        tc += D[i * P.c + i];
        let d = B[i] - Cm[i];
        dm = fma(d, d, dm);
    }
    red[li] = ty;
    red2[li] = tc;
    red3[li] = dm;
    for (var k = 128u; k > 0u; k >>= 1u) {
        workgroupBarrier();
        if (li < k) {
            red[li] += red[li + k];
            red2[li] += red2[li + k];
            red3[li] += red3[li + k];
        }
    }
    workgroupBarrier();
    if (li == 0u) {
        let c = f32(P.c);
        let tr_sqrt = sqrt(Stats[0]) * red[0];
        Out[P.slot] = P.weight * (red3[0] / c + (red2[0] + P.trace_t - 2.0 * tr_sqrt) / c);
    }
}

@compute @workgroup_size(256)
fn meancov_dcov(@builtin(global_invocation_id) gid: vec3<u32>) {
    let k = gid.x;
    if (k >= P.c * P.c) { return; }
    let eye = select(0.0, 1.0, k / P.c == k % P.c);
    Out[k] = P.gweight / f32(P.c) * (eye - A[k] / sqrt(Stats[0]));
}

@compute @workgroup_size(64)
fn meancov_dmu(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= P.c) { return; }
    var s = 0.0;
    for (var j = 0u; j < P.c; j++) {
        s = fma(A[i * P.c + j], B[j], s);
    }
    Out[i] = P.gweight * 2.0 * (B[i] - Cm[i]) / f32(P.c) - 2.0 * s;
}

@compute @workgroup_size(256)
fn meancov_add_mean_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let k = (wid.y * P.gx + wid.x) * 256u + li;
    if (k >= P.c * P.n) { return; }
    Out[k] += A[k / P.n] / f32(P.n);
}
