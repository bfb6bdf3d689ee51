// relu: element-wise rectifier on a flat tensor of n elements.
//   relu_forward:  y = max(x, 0)
//   relu_backward: dx = dy * (y > 0)   (y: the forward output, or equally its input)
//   relu_mask_pack: bits[j] bit k = (y[32 j + k] > 0): the ReLU-backward mask at 1 bit per
//                   element, which the runner keeps instead of the f32 activation (32x smaller)
//                   and conv3x3_backward_input reads (shaders/conv3x3*.wgsl).
// 1-D data laid over a 2-D grid of 256-wide workgroups (index = (wid.y * gx + wid.x) * 256 + lid)
// so large tensors stay under the 65,535-workgroups-per-dimension limit.
// Checked by tests/kernels.rs against reference::relu_forward / relu_backward.

struct Params { n: u32, gx: u32, _p0: u32, _p1: u32 }

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> A: array<f32>;       // forward: x; backward: y
@group(0) @binding(2) var<storage, read> G: array<f32>;       // backward: dy
@group(0) @binding(3) var<storage, read_write> Out: array<u32>;  // f32 bits, or mask words
@group(0) @binding(4) var<storage, read> A4: array<vec4<f32>>;  // relu_mask_pack: A again, 4 at a time

@compute @workgroup_size(256)
fn relu_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = (wid.y * P.gx + wid.x) * 256u + li;
    if (i < P.n) {
        Out[i] = bitcast<u32>(max(A[i], 0.0));
    }
}

@compute @workgroup_size(256)
fn relu_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = (wid.y * P.gx + wid.x) * 256u + li;
    if (i < P.n) {
        Out[i] = bitcast<u32>(select(0.0, G[i], A[i] > 0.0));
    }
}

// Invocation j packs elements 32 j .. 32 j + 31 into word j, reading them as 8 vec4 (on CPU
// drivers each storage load is a per-lane loop, so fewer, wider loads pay; on GPUs a lane's 128
// contiguous bytes stay in cache across its 8 loads). Elements past n give 0 bits; the last
// word reads its tail one scalar at a time, as A4 covers only floor(n / 4) vec4s.
@compute @workgroup_size(256)
fn relu_mask_pack(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let j = (wid.y * P.gx + wid.x) * 256u + li;
    if (j * 32u >= P.n) {
        return;
    }
    var word = 0u;
    if (j * 32u + 32u <= P.n) {
        for (var q = 0u; q < 8u; q++) {
            let v = A4[j * 8u + q];
            let b = select(vec4<u32>(0u), vec4<u32>(1u, 2u, 4u, 8u), v > vec4<f32>(0.0));
            word |= (b.x | b.y | b.z | b.w) << (4u * q);
        }
    } else {
        for (var k = 0u; k < P.n - j * 32u; k++) {
            word |= select(0u, 1u << k, A[j * 32u + k] > 0.0);
        }
    }
    Out[j] = word;
}
