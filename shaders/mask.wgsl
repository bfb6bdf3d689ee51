// mask: a per-pixel weight on every channel of a CHW tensor (regional styles: `--style-mask`).
//   mask_mul: Out[i] = (accumulate ? Out[i] : 0) + X[i] * M[i % n]    (n = h * w pixels)
//   Forward: a style tap's features weighted by its style's mask, before their Gram.
//   Backward: the gradient w.r.t. the weighted features times the mask again (d(F m)/dF = m),
//   accumulated into the tap's gradient.
// 1-D data over a 2-D grid of 256-wide workgroups (index = (wid.y * gx + wid.x) * 256 + lid).
// Checked by tests/mask.rs against reference::mask::mask_mul.

struct Params { len: u32, n: u32, gx: u32, accumulate: u32 }

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> X: array<f32>;          // c x n
@group(0) @binding(2) var<storage, read> M: array<f32>;          // n
@group(0) @binding(3) var<storage, read_write> Out: array<f32>;  // c x n

@compute @workgroup_size(256)
fn mask_mul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = (wid.y * P.gx + wid.x) * 256u + li;
    if (i < P.len) {
        let v = X[i] * M[i % P.n];
        if (P.accumulate != 0u) {
            Out[i] = Out[i] + v;
        } else {
            Out[i] = v;
        }
    }
}
