// relu: element-wise rectifier on a flat tensor of n elements.
//   relu_forward:  y = max(x, 0)
//   relu_backward: dx = dy * (y > 0)   (masks by the forward OUTPUT, which the runner keeps)
// 1-D data laid over a 2-D grid of 256-wide workgroups (index = (wid.y * gx + wid.x) * 256 + lid)
// so large tensors stay under the 65,535-workgroups-per-dimension limit.
// Checked by tests/kernels.rs against reference::relu_forward / relu_backward.

struct Params { n: u32, gx: u32, _p0: u32, _p1: u32 }

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> A: array<f32>;       // forward: x; backward: y
@group(0) @binding(2) var<storage, read> G: array<f32>;       // backward: dy
@group(0) @binding(3) var<storage, read_write> Out: array<f32>;

@compute @workgroup_size(256)
fn relu_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = (wid.y * P.gx + wid.x) * 256u + li;
    if (i < P.n) {
        Out[i] = max(A[i], 0.0);
    }
}

@compute @workgroup_size(256)
fn relu_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = (wid.y * P.gx + wid.x) * 256u + li;
    if (i < P.n) {
        Out[i] = select(0.0, G[i], A[i] > 0.0);
    }
}
