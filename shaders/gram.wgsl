// gram: Gram matrices of a feature map F (c, n), n = h*w, and their gradient.
//   gram_partial:  Part[z] = F[:, chunk z] F[:, chunk z]^T   (split over positions: the outputs
//                  are only c x c, so splitting the long n axis is what gives parallelism)
//   gram_finish:   G (+)= scale * sum_z Part[z], scale = 1 / (c * n) (tiles pass their share)
//   gram_backward: dF (+)= scale * (dG + dG^T) F
// 16x16 output tiles; operands staged through workgroup memory 16 positions (or rows) at a time.
// Checked by tests/kernels.rs against reference::gram_forward / gram_backward.

struct Params {
    c: u32, n: u32,
    chunk: u32,      // positions per split (multiple of 16)
    splits: u32,
    scale: f32,
    accumulate: u32, // 1 adds into the output instead of overwriting
    gx: u32,         // gram_backward: workgroups along x (positions fold into x and y)
    _p1: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> F: array<f32>;          // f: (c, n)
@group(0) @binding(2) var<storage, read> In: array<f32>;         // finish: parts (splits, c, c); backward: dG (c, c)
@group(0) @binding(3) var<storage, read_write> Out: array<f32>;  // partial: parts; finish: G; backward: dF (c, n)

var<workgroup> ta: array<array<f32, 17>, 16>;  // +1 column: avoids bank conflicts on transposed reads
var<workgroup> tb: array<array<f32, 17>, 16>;

fn f_at(row: u32, p: u32) -> f32 {
    if (row < P.c && p < P.n) {
        return F[row * P.n + p];
    }
    return 0.0;
}

@compute @workgroup_size(16, 16, 1)
fn gram_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let a = wid.y * 16u + lid.y;
    let b = wid.x * 16u + lid.x;
    let p_begin = wid.z * P.chunk;
    let p_end = min(P.n, p_begin + P.chunk);
    var acc = 0.0;
    for (var p0 = p_begin; p0 < p_end; p0 += 16u) {
        let p = p0 + lid.x;
        let inside = p < p_end;
        ta[lid.y][lid.x] = select(0.0, f_at(wid.y * 16u + lid.y, p), inside);
        tb[lid.y][lid.x] = select(0.0, f_at(wid.x * 16u + lid.y, p), inside);
        workgroupBarrier();
        for (var k = 0u; k < 16u; k++) {
            acc = fma(ta[lid.y][k], tb[lid.x][k], acc);
        }
        workgroupBarrier();
    }
    if (a < P.c && b < P.c) {
        Out[(wid.z * P.c + a) * P.c + b] = acc;
    }
}

@compute @workgroup_size(256)
fn gram_finish(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = wid.x * 256u + li;
    let cc = P.c * P.c;
    if (i >= cc) { return; }
    var s = 0.0;
    for (var z = 0u; z < P.splits; z++) {
        s += In[z * cc + i];
    }
    var v = s * P.scale;
    if (P.accumulate != 0u) {
        v += Out[i];
    }
    Out[i] = v;
}

@compute @workgroup_size(16, 16, 1)
fn gram_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    // Channels along z; positions along x and y, since a megapixel's n/16 passes the 65535 limit.
    let a = wid.z * 16u + lid.y;   // row of dF (channel)
    let p = (wid.y * P.gx + wid.x) * 16u + lid.x;   // column of dF (position)
    var acc = 0.0;
    for (var b0 = 0u; b0 < P.c; b0 += 16u) {
        // ta[a'][b'] = dG[a, b] + dG[b, a];  tb[b'][p'] = F[b, p]
        let cb = b0 + lid.x;
        var s = 0.0;
        if (a < P.c && cb < P.c) {
            s = In[a * P.c + cb] + In[cb * P.c + a];
        }
        ta[lid.y][lid.x] = s;
        tb[lid.y][lid.x] = f_at(b0 + lid.y, p);
        workgroupBarrier();
        for (var k = 0u; k < 16u; k++) {
            acc = fma(ta[lid.y][k], tb[k][lid.x], acc);
        }
        workgroupBarrier();
    }
    if (a < P.c && p < P.n) {
        let idx = a * P.n + p;
        var v = acc * P.scale;
        if (P.accumulate != 0u) {
            v += Out[idx];
        }
        Out[idx] = v;
    }
}
