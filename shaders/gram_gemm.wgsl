// gram_gemm: the Gram matrix of a feature map F (c, n), n = h*w, and its gradient, as GEMMs with
// register blocking (the design of shaders/conv3x3_gemm.wgsl):
//   gram_gemm_partial:  Part[z] = F[:, chunk z] F[:, chunk z]^T   (M = N = c, K = the chunk),
//                       only the 64x64 tiles on or above the diagonal (G is symmetric: 36 of 64
//                       tiles at 512 channels)
//   gram_gemm_finish:   G (+)= scale * sum_z Part[z], each entry below the diagonal tiles read
//                       from its mirror image
//   gram_gemm_sym:      S = dG + dG^T, once per backward, so that the GEMM below stages S by
//                       rows (coalesced) and not half of it by columns (one load per 32 B sector)
//   gram_gemm_backward: dF (+)= scale * S F                         (M = c, N = n, K = c)
// A workgroup of 16x16 invocations owns a 64x64 output tile; each invocation accumulates a 4x4
// block in registers; K is staged 16 deep, one vec4 of each operand per invocation, so 16 FMAs
// cost 2 vec4 workgroup loads. Checked by tests/kernels.rs against reference::gram_forward /
// gram_backward like every Gram variant.

struct Params {
    c: u32, n: u32,
    chunk: u32,      // partial: positions per split (multiple of 16)
    splits: u32,
    scale: f32,
    accumulate: u32, // backward: 1 adds into dF instead of overwriting
    gx: u32,         // backward: workgroups along x (position blocks are wid.y * gx + wid.x)
    tiles: u32,      // partial: 64-channel tiles along each side, ceil(c / 64)
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> F: array<f32>;          // f: (c, n)
// In:  finish: the parts (splits, c, c); sym: dG (c, c); backward: S (c, c).
// Out: partial: the parts; finish: G (c, c); sym: S; backward: dF (c, n).
@group(0) @binding(2) var<storage, read> In: array<f32>;
@group(0) @binding(3) var<storage, read_write> Out: array<f32>;

const KT: u32 = 16u;

// As[kk * 16 + g]: rows 4g .. 4g + 3 of the output block's left operand at k0 + kk.
var<workgroup> As: array<vec4<f32>, 256>;
// Bs[kk * 16 + g]: columns 4g .. 4g + 3 of the output block's right operand at k0 + kk.
var<workgroup> Bs: array<vec4<f32>, 256>;

// F[r0 + i][p] for i < 4 (zero past c or past `end`).
fn f_rows4(r0: u32, p: u32, end: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if (p < end) {
        for (var i = 0u; i < 4u; i++) {
            if (r0 + i < P.c) {
                v[i] = F[(r0 + i) * P.n + p];
            }
        }
    }
    return v;
}

// acc[i] += As[.., ty][i] * Bs[.., tx] over the staged chunk.
fn accumulate(lid: vec3<u32>, acc: ptr<function, array<vec4<f32>, 4>>) {
    for (var kk = 0u; kk < KT; kk++) {
        let a = As[kk * 16u + lid.y];
        let b = Bs[kk * 16u + lid.x];
        (*acc)[0] = fma(vec4<f32>(a.x), b, (*acc)[0]);
        (*acc)[1] = fma(vec4<f32>(a.y), b, (*acc)[1]);
        (*acc)[2] = fma(vec4<f32>(a.z), b, (*acc)[2]);
        (*acc)[3] = fma(vec4<f32>(a.w), b, (*acc)[3]);
    }
}

@compute @workgroup_size(16, 16, 1)
fn gram_gemm_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
                     @builtin(local_invocation_index) li: u32) {
    // wid.x numbers the tiles (ti, tj), ti <= tj, row by row.
    var ti = 0u;
    var k = wid.x;
    while (k >= P.tiles - ti) {
        k -= P.tiles - ti;
        ti++;
    }
    let a0 = ti * 64u;
    let b0 = (ti + k) * 64u;
    let p_begin = wid.z * P.chunk;
    let p_end = min(P.n, p_begin + P.chunk);
    // Consecutive invocations stage consecutive positions of one row group.
    let kk = li % KT;
    let g = li / KT;
    var acc: array<vec4<f32>, 4>;
    for (var p0 = p_begin; p0 < p_end; p0 += KT) {
        As[kk * 16u + g] = f_rows4(a0 + 4u * g, p0 + kk, p_end);
        Bs[kk * 16u + g] = f_rows4(b0 + 4u * g, p0 + kk, p_end);
        workgroupBarrier();
        accumulate(lid, &acc);
        workgroupBarrier();
    }
    // acc indexed by constants only (see store_part).
    let a = a0 + 4u * lid.y;
    let b = b0 + 4u * lid.x;
    store_part(wid.z, a, b, acc[0]);
    store_part(wid.z, a + 1u, b, acc[1]);
    store_part(wid.z, a + 2u, b, acc[2]);
    store_part(wid.z, a + 3u, b, acc[3]);
}

@compute @workgroup_size(256, 1, 1)
fn gram_gemm_finish(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = wid.x * 256u + li;
    let cc = P.c * P.c;
    if (i >= cc) { return; }
    var a = i / P.c;
    var b = i % P.c;
    // Below the diagonal tiles: the partial kernel wrote only the mirror image.
    if (a / 64u > b / 64u) {
        let t = a;
        a = b;
        b = t;
    }
    let j = a * P.c + b;
    var s = 0.0;
    for (var z = 0u; z < P.splits; z++) {
        s += In[z * cc + j];
    }
    var v = s * P.scale;
    if (P.accumulate != 0u) {
        v += Out[i];
    }
    Out[i] = v;
}

// Part[z][a][b .. b + 3] = v inside the c x c block. A helper called with acc[0] .. acc[3] rather
// than a loop over acc[i]: an accumulator array indexed by a variable is kept in memory by a driver
// that does not unroll the loop (on an H200 the GEMM conv ran 2x faster without such loops).
fn store_part(z: u32, a: u32, b: u32, v: vec4<f32>) {
    if (a >= P.c) {
        return;
    }
    let o = (z * P.c + a) * P.c + b;
    if (b < P.c) {
        Out[o] = v.x;
    }
    if (b + 1u < P.c) {
        Out[o + 1u] = v.y;
    }
    if (b + 2u < P.c) {
        Out[o + 2u] = v.z;
    }
    if (b + 3u < P.c) {
        Out[o + 3u] = v.w;
    }
}

@compute @workgroup_size(16, 16, 1)
fn gram_gemm_sym(@builtin(global_invocation_id) gid: vec3<u32>) {
    let a = gid.y;
    let k = gid.x;
    if (a < P.c && k < P.c) {
        Out[a * P.c + k] = In[a * P.c + k] + In[k * P.c + a];
    }
}

// S[a][k] (zero past c).
fn s_at(a: u32, k: u32) -> f32 {
    if (a < P.c && k < P.c) {
        return In[a * P.c + k];
    }
    return 0.0;
}

@compute @workgroup_size(16, 16, 1)
fn gram_gemm_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
                      @builtin(local_invocation_index) li: u32) {
    let a0 = wid.z * 64u;
    let q0 = (wid.y * P.gx + wid.x) * 64u;
    var acc: array<vec4<f32>, 4>;
    for (var k0 = 0u; k0 < P.c; k0 += KT) {
        // S: consecutive invocations read consecutive k of one row group.
        let ka = li % KT;
        let ga = li / KT;
        var s = vec4<f32>(0.0);
        for (var i = 0u; i < 4u; i++) {
            s[i] = s_at(a0 + 4u * ga + i, k0 + ka);
        }
        As[ka * 16u + ga] = s;
        // F: consecutive invocations read consecutive positions of one k.
        let kb = li / 16u;
        let gb = li % 16u;
        var f = vec4<f32>(0.0);
        if (k0 + kb < P.c) {
            for (var j = 0u; j < 4u; j++) {
                let p = q0 + 4u * gb + j;
                if (p < P.n) {
                    f[j] = F[(k0 + kb) * P.n + p];
                }
            }
        }
        Bs[kb * 16u + gb] = f;
        workgroupBarrier();
        accumulate(lid, &acc);
        workgroupBarrier();
    }
    let a = a0 + 4u * lid.y;
    let p = q0 + 4u * lid.x;
    store_grad(a, p, acc[0]);
    store_grad(a + 1u, p, acc[1]);
    store_grad(a + 2u, p, acc[2]);
    store_grad(a + 3u, p, acc[3]);
}

// dF[a][p .. p + 3] (+)= scale * v inside the c x n map (constant acc indices, as store_part).
fn store_grad(a: u32, p: u32, v: vec4<f32>) {
    if (a >= P.c) {
        return;
    }
    let o = a * P.n + p;
    if (p < P.n) {
        store_grad1(o, v.x);
    }
    if (p + 1u < P.n) {
        store_grad1(o + 1u, v.y);
    }
    if (p + 2u < P.n) {
        store_grad1(o + 2u, v.z);
    }
    if (p + 3u < P.n) {
        store_grad1(o + 3u, v.w);
    }
}

fn store_grad1(o: u32, v: f32) {
    var r = P.scale * v;
    if (P.accumulate != 0u) {
        r += Out[o];
    }
    Out[o] = r;
}
