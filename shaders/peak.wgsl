// peak: two calibration kernels for `stylize bench`'s "% of peak" column (src/bench.rs). They
// measure what this adapter can do at best, so each kernel's rate can be read against it.
//   peak_fma:  each invocation runs `iters` rounds of 8 independent vec4 FMA chains (32 scalar
//              chains, 64 FLOPs a round) in registers, no memory traffic, then stores one vec4
//              so the work cannot be dropped: the compute ceiling. FLOPs = 64 * iters * n.
//   peak_copy: Out[i] = In[i] for n vec4<f32> (16 bytes read + 16 bytes written each): the
//              memory-bandwidth ceiling. Bytes = 32 * n.
// Both lay 1-D work over a 2-D grid of workgroups (index = (wid.y * gx + wid.x) * size + lid) to
// stay under the 65,535-workgroups-per-dimension limit.
// No CPU twin: the bench checks only that the rates are finite and positive.

struct Params { n: u32, gx: u32, iters: u32, _p0: u32 }

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> In: array<vec4<f32>>;         // peak_copy: (n) vec4
@group(0) @binding(2) var<storage, read_write> Out: array<vec4<f32>>;  // (n) vec4

@compute @workgroup_size(64)
fn peak_fma(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = (wid.y * P.gx + wid.x) * 64u + li;
    // Multiplier just below 1 and a small addend: the chains stay finite and normal for any
    // number of rounds (they converge to c / (1 - m)).
    let m = vec4<f32>(0.9999);
    let c = vec4<f32>(1e-4);
    let s = f32(i & 1023u) * 1e-3;
    var a0 = vec4<f32>(s, s + 0.01, s + 0.02, s + 0.03);
    var a1 = a0 + 0.1;
    var a2 = a0 + 0.2;
    var a3 = a0 + 0.3;
    var a4 = a0 + 0.4;
    var a5 = a0 + 0.5;
    var a6 = a0 + 0.6;
    var a7 = a0 + 0.7;
    for (var t = 0u; t < P.iters; t++) {
        a0 = fma(a0, m, c);
        a1 = fma(a1, m, c);
        a2 = fma(a2, m, c);
        a3 = fma(a3, m, c);
        a4 = fma(a4, m, c);
        a5 = fma(a5, m, c);
        a6 = fma(a6, m, c);
        a7 = fma(a7, m, c);
    }
    if (i < P.n) {
        Out[i] = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7));
    }
}

@compute @workgroup_size(256)
fn peak_copy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = (wid.y * P.gx + wid.x) * 256u + li;
    if (i < P.n) {
        Out[i] = In[i];
    }
}
