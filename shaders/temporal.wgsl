// temporal: the short-term temporal loss of Ruder, Dosovitskiy & Brox 2016 and its gradient, for
// video frames: the image x (c, h, w) is pulled toward the previous frame's output warped into
// this frame, t (c, h, w), on the pixels the mask m (h, w) trusts (1) and not elsewhere (0):
//   loss = weight * sum_{c,p} m[p]^2 (x[c,p] - t[c,p])^2 / n,   n = c h w
//   dx  (+)= 2 weight m[p]^2 (x[c,p] - t[c,p]) / n
// (m is 0 or 1 from flow_consistency, so m^2 = m: Ruder's c_k (x - t)^2; squared so that a soft
// mask would still give a loss whose gradient this is.)
// Stage 1 of reduce.wgsl's two deterministic stages: temporal_partial's workgroup z sums its
// grid-stride share of the terms into Part[z] and writes the gradient of those elements (gscale =
// 2 weight / n); reduce.wgsl's reduce_finish then sums Part into the loss slot (scale = weight / n).
// tree_sum is reduce.wgsl's (WGSL has no includes; every file stands alone).
// CPU twin: reference::flow::temporal_loss; checked by tests/temporal.rs (and finite differences).

struct Params { n: u32, plane: u32, groups: u32, accumulate: u32, gscale: f32, pad0: u32, pad1: u32, pad2: u32 }

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> X: array<f32>;          // x (c, h, w)
@group(0) @binding(2) var<storage, read> T: array<f32>;          // the warped previous output (c, h, w)
@group(0) @binding(3) var<storage, read> M: array<f32>;          // the mask (h, w)
@group(0) @binding(4) var<storage, read_write> D: array<f32>;    // dx (c, h, w)
@group(0) @binding(5) var<storage, read_write> Part: array<f32>; // partial sums (groups)

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

@compute @workgroup_size(256)
fn temporal_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    var s = 0.0;
    for (var i = wid.x * 256u + li; i < P.n; i += P.groups * 256u) {
        let d = M[i % P.plane] * (X[i] - T[i]);
        s += d * d;
        var g = P.gscale * M[i % P.plane] * d;
        if (P.accumulate != 0u) { g += D[i]; }
        D[i] = g;
    }
    let t = tree_sum(li, s);
    if (li == 0u) { Part[wid.x] = t; }
}
