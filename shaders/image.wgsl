// image: the network's input transform and its gradient, on a (3, h, w) image.
//   preprocess_forward:  y[c] = x[src[c]] * a[c] + b[c]
//     torchvision weights: src = (0,1,2) (RGB), a = 1/std, b = -mean/std, x in [0,1]
//     Caffe weights:       src = (2,1,0) (BGR), a = 255,   b = -mean_bgr
//   preprocess_backward: dx[src[c]] = dy[c] * a[c]   (src is a permutation: no races)
// The optimiser works on x in [0,1] RGB whatever the weights' convention, so learning rates
// mean the same thing for every weights file.
// Checked by tests/kernels.rs against reference::step::preprocess_*.

struct Params {
    plane: u32, gx: u32, _p0: u32, _p1: u32,
    src: vec4<u32>,
    a: vec4<f32>,
    b: vec4<f32>,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;

@compute @workgroup_size(256)
fn preprocess_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = (wid.y * P.gx + wid.x) * 256u + li;
    if (i >= 3u * P.plane) { return; }
    let c = i / P.plane;
    let p = i % P.plane;
    Y[i] = X[P.src[c] * P.plane + p] * P.a[c] + P.b[c];
}

@compute @workgroup_size(256)
fn preprocess_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = (wid.y * P.gx + wid.x) * 256u + li;
    if (i >= 3u * P.plane) { return; }
    let c = i / P.plane;
    let p = i % P.plane;
    Y[P.src[c] * P.plane + p] = X[i] * P.a[c];
}
