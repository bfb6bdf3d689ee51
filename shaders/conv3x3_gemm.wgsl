// conv3x3_gemm: the 3x3 convolution (stride 1, zero padding 1, batch 1, CHW) as an implicit GEMM
// with register blocking, the design of TensorFlow.js / ONNX Runtime Web's conv2d_mm:
//   Y[co][p] = sum_k W[co][k] * Xcol[k][p],  k = ci * 9 + 3 (dy + 1) + (dx + 1),  p = y * w + x,
// Xcol never stored: each K-chunk of it is gathered from X into workgroup memory.
//   conv3x3_gemm_forward:                y = conv(x, w) + b, then max(0, .) if relu.
//   conv3x3_gemm_backward_input:         dx = conv(dy, w~) (w~: gpu::conv::transpose_flip).
//   conv3x3_gemm_backward_input_masked:  the same with dy times the ReLU mask bits of its input.
// Tiling: a workgroup of 16x16 invocations owns 64 output channels x 64 pixels (consecutive in
// row-major order); each invocation accumulates a 4x4 block (4 channels x 4 pixels) in registers.
// Per K-chunk of 16, every invocation stages one vec4 of weights and one vec4 of gathered inputs,
// then does 16 x 16 FMAs from 2 x 16 vec4 workgroup loads: 8 FMAs per vec4 load, against one
// scalar load per FMA in conv3x3.wgsl. Checked by tests/kernels.rs against
// reference::conv3x3_forward / conv3x3_backward_input like every variant.

struct Params {
    cin: u32, cout: u32, h: u32, w: u32,
    relu: u32,  // 1: apply max(0, .) to the output
    gx: u32,    // workgroups along x (pixel blocks are wid.y * gx + wid.x)
    _p0: u32, _p1: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> X: array<f32>;        // x: (cin, h, w)
@group(0) @binding(2) var<storage, read> Wt: array<f32>;       // w: (cout, cin * 9)
@group(0) @binding(3) var<storage, read> B: array<f32>;        // b: (cout)
@group(0) @binding(4) var<storage, read> M: array<u32>;        // m: (cin, h, w) bits, 32 per word
@group(0) @binding(5) var<storage, read_write> Y: array<f32>;  // y: (cout, h, w)

const TM: u32 = 64u;  // output channels per workgroup
const TN: u32 = 64u;  // pixels per workgroup
const KT: u32 = 16u;  // K per chunk

// As[kk * 16 + g]: the weights of channels co0 + 4g .. + 3 at k0 + kk.
var<workgroup> As: array<vec4<f32>, 256>; // KT * TM / 4
// Bs[kk * 16 + g]: Xcol at k0 + kk for pixels p0 + 4g .. + 3.
var<workgroup> Bs: array<vec4<f32>, 256>; // KT * TN / 4

// Flat index of x[ci][y + dy][x + dx] for pixel p and tap t, or -1 outside the image, past the
// pixels or past cin.
fn x_index(ci: u32, t: u32, p: u32) -> i32 {
    let n = P.h * P.w;
    if (ci >= P.cin || p >= n) {
        return -1;
    }
    let iy = i32(p / P.w) + i32(t / 3u) - 1;
    let ix = i32(p % P.w) + i32(t % 3u) - 1;
    if (iy < 0 || ix < 0 || iy >= i32(P.h) || ix >= i32(P.w)) {
        return -1;
    }
    return i32((ci * P.h + u32(iy)) * P.w + u32(ix));
}

fn load_x(ci: u32, t: u32, p: u32) -> f32 {
    let i = x_index(ci, t, p);
    if (i < 0) {
        return 0.0;
    }
    return X[u32(i)];
}

fn load_x_masked(ci: u32, t: u32, p: u32) -> f32 {
    let i = x_index(ci, t, p);
    if (i < 0) {
        return 0.0;
    }
    let idx = u32(i);
    return select(0.0, X[idx], ((M[idx >> 5u] >> (idx & 31u)) & 1u) != 0u);
}

// The weights of channels co0 + 4g .. + 3 at k (zero past cout and K).
fn load_w4(co0: u32, g: u32, k: u32) -> vec4<f32> {
    let kk = P.cin * 9u;
    var v = vec4<f32>(0.0);
    if (k < kk) {
        for (var i = 0u; i < 4u; i++) {
            let co = co0 + 4u * g + i;
            if (co < P.cout) {
                v[i] = Wt[co * kk + k];
            }
        }
    }
    return v;
}

// The block this workgroup owns: (first channel, first pixel).
fn block(wid: vec3<u32>) -> vec2<u32> {
    return vec2<u32>(wid.z * TM, (wid.y * P.gx + wid.x) * TN);
}

// acc[i] += the staged chunk's contribution to channels co0 + 4 ty + i, pixels p0 + 4 tx .. + 3.
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

// Y at channels co0 + 4 ty + i, pixels p0 + 4 tx + j (+ bias[i]; max(0, .) if relu).
fn store(blk: vec2<u32>, lid: vec3<u32>, acc: array<vec4<f32>, 4>, bias: vec4<f32>) {
    let n = P.h * P.w;
    for (var i = 0u; i < 4u; i++) {
        let co = blk.x + 4u * lid.y + i;
        if (co >= P.cout) {
            return;
        }
        for (var j = 0u; j < 4u; j++) {
            let p = blk.y + 4u * lid.x + j;
            if (p < n) {
                var v = acc[i][j] + bias[i];
                if (P.relu != 0u) {
                    v = max(v, 0.0);
                }
                Y[co * n + p] = v;
            }
        }
    }
}

// Chunk k0's weights: one vec4 per invocation; consecutive invocations read consecutive k of one
// channel group.
fn stage_weights(blk: vec2<u32>, li: u32, k0: u32) {
    As[(li % KT) * 16u + li / KT] = load_w4(blk.x, li / KT, k0 + li % KT);
}

// Which gathered vec4 an invocation stages: Bs[kk * 16 + g] holds k = k0 + kk, pixels
// p0 + 4g .. + 3 (consecutive invocations read consecutive pixels of one k).
fn gather_slot(li: u32) -> vec2<u32> {
    return vec2<u32>(li / 16u, li % 16u);
}

fn stage_inputs(blk: vec2<u32>, li: u32, k0: u32) {
    let s = gather_slot(li);
    let k = k0 + s.x;
    var v = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        v[j] = load_x(k / 9u, k % 9u, blk.y + 4u * s.y + j);
    }
    Bs[s.x * 16u + s.y] = v;
}

fn stage_inputs_masked(blk: vec2<u32>, li: u32, k0: u32) {
    let s = gather_slot(li);
    let k = k0 + s.x;
    var v = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        v[j] = load_x_masked(k / 9u, k % 9u, blk.y + 4u * s.y + j);
    }
    Bs[s.x * 16u + s.y] = v;
}

// The staged chunk: wait for it, accumulate it, and let the next one be staged.
fn run_chunk(lid: vec3<u32>, acc: ptr<function, array<vec4<f32>, 4>>) {
    workgroupBarrier();
    accumulate(lid, acc);
    workgroupBarrier();
}

@compute @workgroup_size(16, 16, 1)
fn conv3x3_gemm_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
                        @builtin(local_invocation_index) li: u32) {
    let blk = block(wid);
    var acc: array<vec4<f32>, 4>;
    for (var k0 = 0u; k0 < P.cin * 9u; k0 += KT) {
        stage_weights(blk, li, k0);
        stage_inputs(blk, li, k0);
        run_chunk(lid, &acc);
    }
    var bias = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
        let co = blk.x + 4u * lid.y + i;
        if (co < P.cout) {
            bias[i] = B[co];
        }
    }
    store(blk, lid, acc, bias);
}

@compute @workgroup_size(16, 16, 1)
fn conv3x3_gemm_backward_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
                               @builtin(local_invocation_index) li: u32) {
    let blk = block(wid);
    var acc: array<vec4<f32>, 4>;
    for (var k0 = 0u; k0 < P.cin * 9u; k0 += KT) {
        stage_weights(blk, li, k0);
        stage_inputs(blk, li, k0);
        run_chunk(lid, &acc);
    }
    store(blk, lid, acc, vec4<f32>(0.0));
}

@compute @workgroup_size(16, 16, 1)
fn conv3x3_gemm_backward_input_masked(@builtin(workgroup_id) wid: vec3<u32>,
                                      @builtin(local_invocation_id) lid: vec3<u32>,
                                      @builtin(local_invocation_index) li: u32) {
    let blk = block(wid);
    var acc: array<vec4<f32>, 4>;
    for (var k0 = 0u; k0 < P.cin * 9u; k0 += KT) {
        stage_weights(blk, li, k0);
        stage_inputs_masked(blk, li, k0);
        run_chunk(lid, &acc);
    }
    store(blk, lid, acc, vec4<f32>(0.0));
}
