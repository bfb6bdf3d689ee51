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

// A workgroup packs 8192 elements into 256 words. Lane li reads elements base + 256 k + li
// (k < 32: coalesced loads) and ORs bit li % 32 into word 8 k + li / 32 in workgroup memory.
// Bits past n are 0.
var<workgroup> words: array<atomic<u32>, 256>;

@compute @workgroup_size(256)
fn relu_mask_pack(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let wg = wid.y * P.gx + wid.x;
    let base = wg * 8192u;
    atomicStore(&words[li], 0u);
    workgroupBarrier();
    for (var k = 0u; k < 32u; k++) {
        let e = base + k * 256u + li;
        if (e < P.n && A[e] > 0.0) {
            atomicOr(&words[k * 8u + li / 32u], 1u << (li % 32u));
        }
    }
    workgroupBarrier();
    let j = wg * 256u + li;
    if (j * 32u < P.n) {
        Out[j] = atomicLoad(&words[li]);
    }
}
