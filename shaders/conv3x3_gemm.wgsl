// conv3x3_gemm: the 3x3 convolution (stride 1, zero padding 1, batch 1, CHW) as an implicit GEMM
// with register blocking, the design of TensorFlow.js / ONNX Runtime Web's conv2d_mm:
//   Y[co][p] = sum_k W[co][k] * Xcol[k][p],  k = ci * 9 + 3 (dy + 1) + (dx + 1),  p = y * w + x,
// Xcol never stored: each K-chunk of it is gathered from X into workgroup memory.
//   conv3x3_gemm_forward:                y = conv(x, w) + b, then max(0, .) if relu.
//   conv3x3_gemm_backward_input:         dx = conv(dy, w~) (w~: gpu::conv::transpose_flip).
//   conv3x3_gemm_backward_input_masked:  the same with dy times the ReLU mask bits of its input.
//   conv3x3_gemm_batched:                a plain batched GEMM on the same core (the products of the
//                                        Winograd kernels, conv3x3_wino_gemm.wgsl).
// Tiling: a workgroup of WX x WY invocations owns TM = RM WY output channels x TN = RN WX pixels
// (consecutive in row-major order); each invocation accumulates RM channels x RN pixels in
// registers. Per K-chunk of KT, the workgroup stages KT x TM weights and KT x TN gathered inputs
// as vec4s, then every invocation does KT RM RN FMAs from KT (RM + RN) / 4 vec4 workgroup loads.
// The default (RM = RN = 4, 16 x 16 invocations, 64 x 64 tiles, KT = 16) does 8 FMAs per vec4
// load, against one scalar load per FMA in conv3x3.wgsl; 8 x 8 blocks do 16. The loops over the
// register block below are the readable form; gpu::conv_gen::gemm_source also writes each tile
// with `accumulate` and `store` unrolled (every accumulator index a constant), which ran 2-8x
// faster on an H200, where the loops evidently left the accumulators in memory. Checked by
// tests/kernels.rs against reference::conv3x3_forward / conv3x3_backward_input like every variant.

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

// The tile. This file as written is the default variant; gpu::conv_gen::gemm_source writes the
// others (GemmTile: the autotuner's candidates) by replacing these six lines.
const RM: u32 = 4u;   // output channels per invocation (a multiple of 4)
const RN: u32 = 4u;   // pixels per invocation (a multiple of 4)
const WX: u32 = 16u;  // invocations along pixels
const WY: u32 = 16u;  // invocations along channels
const KT: u32 = 16u;  // K per staged chunk
const NBUF: u32 = 1u; // staging buffers: 2 stages the next chunk while this one is accumulated

const TM: u32 = RM * WY;  // output channels per workgroup
const TN: u32 = RN * WX;  // pixels per workgroup
const NT: u32 = WX * WY;  // invocations per workgroup
const RM4: u32 = RM / 4u;
const RN4: u32 = RN / 4u;
const TM4: u32 = TM / 4u;
const TN4: u32 = TN / 4u;

// As[buf KT TM4 + kk TM4 + g]: the weights of channels co0 + 4g .. + 3 at k0 + kk, in buffer buf.
var<workgroup> As: array<vec4<f32>, NBUF * KT * TM4>;
// Bs[buf KT TN4 + kk TN4 + g]: Xcol at k0 + kk for pixels p0 + 4g .. + 3, in buffer buf.
var<workgroup> Bs: array<vec4<f32>, NBUF * KT * TN4>;

// The pixels invocation li stages: every s = li + m NT it stages has s % TN4 = li % TN4 (NT is a
// multiple of TN4: GemmTile::valid), so its 4 pixels blk.y + 4 (li % TN4) .. + 3, and their rows
// and columns, are the same for the whole workgroup: computed once here rather than per staged
// element (an integer division by the width each). A pixel past the image gets row -2, which no
// tap brings inside.
struct Pix { y: vec4<i32>, x: vec4<i32> }

fn staging_pixels(blk: vec2<u32>, li: u32) -> Pix {
    let p = vec4<u32>(blk.y + 4u * (li % TN4)) + vec4<u32>(0u, 1u, 2u, 3u);
    let y = select(vec4<i32>(-2), vec4<i32>(p / vec4<u32>(P.w)), p < vec4<u32>(P.h * P.w));
    return Pix(y, vec4<i32>(p % vec4<u32>(P.w)));
}

// Flat indices of x[ci][y + dy - 1][x + dx - 1] at the staging pixels for tap t = 3 dy + dx, or
// -1 outside the image or past cin.
fn x_index4(ci: u32, t: u32, px: Pix) -> vec4<i32> {
    let iy = px.y + vec4<i32>(i32(t / 3u) - 1);
    let ix = px.x + vec4<i32>(i32(t % 3u) - 1);
    let inside = (iy >= vec4<i32>(0)) & (ix >= vec4<i32>(0)) & (iy < vec4<i32>(i32(P.h)))
        & (ix < vec4<i32>(i32(P.w))) & vec4<bool>(ci < P.cin);
    let idx = (vec4<i32>(i32(ci * P.h)) + iy) * vec4<i32>(i32(P.w)) + ix;
    return select(vec4<i32>(-1), idx, inside);
}

fn load_x(i: i32) -> f32 {
    if (i < 0) {
        return 0.0;
    }
    return X[u32(i)];
}

fn load_x_masked(i: i32) -> f32 {
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

// Invocation (tx, ty) owns channel groups ty + i4 WY (4 channels each, i4 < RM4) and pixel
// groups tx + j WX (4 pixels each, j < RN4): strided, so neighbouring invocations read
// neighbouring vec4s of As and Bs and write neighbouring pixels.
// acc[(4 i4 + c) RN4 + j]: channel co0 + 4 (ty + i4 WY) + c, pixels p0 + 4 (tx + j WX) .. + 3.
fn accumulate(lid: vec3<u32>, acc: ptr<function, array<vec4<f32>, RM * RN4>>, buf: u32) {
    for (var kk = 0u; kk < KT; kk++) {
        var b: array<vec4<f32>, RN4>;
        for (var j = 0u; j < RN4; j++) {
            b[j] = Bs[(buf * KT + kk) * TN4 + lid.x + j * WX];
        }
        for (var i4 = 0u; i4 < RM4; i4++) {
            let a = As[(buf * KT + kk) * TM4 + lid.y + i4 * WY];
            for (var j = 0u; j < RN4; j++) {
                let r = 4u * i4 * RN4 + j;
                (*acc)[r] = fma(vec4<f32>(a.x), b[j], (*acc)[r]);
                (*acc)[r + RN4] = fma(vec4<f32>(a.y), b[j], (*acc)[r + RN4]);
                (*acc)[r + 2u * RN4] = fma(vec4<f32>(a.z), b[j], (*acc)[r + 2u * RN4]);
                (*acc)[r + 3u * RN4] = fma(vec4<f32>(a.w), b[j], (*acc)[r + 3u * RN4]);
            }
        }
    }
}

// Channel i (< RM) of this invocation.
fn channel(blk: vec2<u32>, lid: vec3<u32>, i: u32) -> u32 {
    return blk.x + 4u * (lid.y + (i / 4u) * WY) + i % 4u;
}

// Y[ybase + co n + p] at the invocation's channels co and pixels p (+ bias; max(0, .) if relu).
fn store(blk: vec2<u32>, lid: vec3<u32>, acc: array<vec4<f32>, RM * RN4>, bias: array<f32, RM>, ybase: u32) {
    let n = P.h * P.w;
    for (var i = 0u; i < RM; i++) {
        let co = channel(blk, lid, i);
        if (co >= P.cout) {
            continue;
        }
        for (var j = 0u; j < RN4; j++) {
            let v4 = acc[i * RN4 + j];
            for (var e = 0u; e < 4u; e++) {
                let p = blk.y + 4u * (lid.x + j * WX) + e;
                if (p < n) {
                    var v = v4[e] + bias[i];
                    if (P.relu != 0u) {
                        v = max(v, 0.0);
                    }
                    Y[ybase + co * n + p] = v;
                }
            }
        }
    }
}

// Chunk k0's weights; consecutive invocations read consecutive k of one channel group.
fn stage_weights(blk: vec2<u32>, li: u32, k0: u32, buf: u32) {
    for (var s = li; s < KT * TM4; s += NT) {
        As[(buf * KT + s % KT) * TM4 + s / KT] = load_w4(blk.x, s / KT, k0 + s % KT);
    }
}

// Chunk k0's gathered inputs at the staging pixels px; consecutive invocations read consecutive
// pixels of one k.
fn stage_inputs(li: u32, k0: u32, px: Pix, buf: u32) {
    for (var s = li; s < KT * TN4; s += NT) {
        let k = k0 + s / TN4;
        let i = x_index4(k / 9u, k % 9u, px);
        Bs[buf * KT * TN4 + s] = vec4<f32>(load_x(i.x), load_x(i.y), load_x(i.z), load_x(i.w));
    }
}

fn stage_inputs_masked(li: u32, k0: u32, px: Pix, buf: u32) {
    for (var s = li; s < KT * TN4; s += NT) {
        let k = k0 + s / TN4;
        let i = x_index4(k / 9u, k % 9u, px);
        Bs[buf * KT * TN4 + s] = vec4<f32>(load_x_masked(i.x), load_x_masked(i.y), load_x_masked(i.z), load_x_masked(i.w));
    }
}

// conv3x3_gemm_batched's operands: batch b's A = Wt[b cout cin ..] (cout x cin, row-major) and
// B = X[b cin n ..] (cin x n), n = h w; zero past their edges.
fn load_a4(base: u32, co0: u32, g: u32, k: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if (k < P.cin) {
        for (var i = 0u; i < 4u; i++) {
            let co = co0 + 4u * g + i;
            if (co < P.cout) {
                v[i] = Wt[base + co * P.cin + k];
            }
        }
    }
    return v;
}

fn load_b(base: u32, k: u32, p: u32) -> f32 {
    if (k >= P.cin || p >= P.h * P.w) {
        return 0.0;
    }
    return X[base + k * P.h * P.w + p];
}

fn stage_a(base: u32, blk: vec2<u32>, li: u32, k0: u32, buf: u32) {
    for (var s = li; s < KT * TM4; s += NT) {
        As[(buf * KT + s % KT) * TM4 + s / KT] = load_a4(base, blk.x, s / KT, k0 + s % KT);
    }
}

fn stage_b(base: u32, blk: vec2<u32>, li: u32, k0: u32, buf: u32) {
    for (var s = li; s < KT * TN4; s += NT) {
        let k = k0 + s / TN4;
        let p = blk.y + 4u * (s % TN4);
        Bs[buf * KT * TN4 + s] = vec4<f32>(load_b(base, k, p), load_b(base, k, p + 1u), load_b(base, k, p + 2u), load_b(base, k, p + 3u));
    }
}

// The K loops (one per kind of staging: an entry point binds only what its functions use).
// Chunk c is staged in buffer c % NBUF. One buffer: wait for the chunk, accumulate it, wait until
// everyone has (stage_after), stage the next. Two: wait for the chunk, stage the next into the
// other buffer (stage_ahead) while accumulating this one: one wait per chunk, which also tells
// that the other buffer's previous chunk has been read.
fn stage_ahead(k0: u32, nk: u32) -> bool {
    return NBUF == 2u && k0 + KT < nk;
}

fn stage_after(k0: u32, nk: u32) -> bool {
    if (NBUF == 1u) {
        workgroupBarrier();
    }
    return NBUF == 1u && k0 + KT < nk;
}

fn stage_conv(blk: vec2<u32>, li: u32, px: Pix, k0: u32, buf: u32) {
    stage_weights(blk, li, k0, buf);
    stage_inputs(li, k0, px, buf);
}

fn k_loop_conv(blk: vec2<u32>, li: u32, lid: vec3<u32>, nk: u32) -> array<vec4<f32>, RM * RN4> {
    let px = staging_pixels(blk, li);
    var acc: array<vec4<f32>, RM * RN4>;
    stage_conv(blk, li, px, 0u, 0u);
    for (var k0 = 0u; k0 < nk; k0 += KT) {
        let cur = (k0 / KT) % NBUF;
        workgroupBarrier();
        if (stage_ahead(k0, nk)) {
            stage_conv(blk, li, px, k0 + KT, 1u - cur);
        }
        accumulate(lid, &acc, cur);
        if (stage_after(k0, nk)) {
            stage_conv(blk, li, px, k0 + KT, 0u);
        }
    }
    return acc;
}

fn stage_conv_masked(blk: vec2<u32>, li: u32, px: Pix, k0: u32, buf: u32) {
    stage_weights(blk, li, k0, buf);
    stage_inputs_masked(li, k0, px, buf);
}

fn k_loop_conv_masked(blk: vec2<u32>, li: u32, lid: vec3<u32>, nk: u32) -> array<vec4<f32>, RM * RN4> {
    let px = staging_pixels(blk, li);
    var acc: array<vec4<f32>, RM * RN4>;
    stage_conv_masked(blk, li, px, 0u, 0u);
    for (var k0 = 0u; k0 < nk; k0 += KT) {
        let cur = (k0 / KT) % NBUF;
        workgroupBarrier();
        if (stage_ahead(k0, nk)) {
            stage_conv_masked(blk, li, px, k0 + KT, 1u - cur);
        }
        accumulate(lid, &acc, cur);
        if (stage_after(k0, nk)) {
            stage_conv_masked(blk, li, px, k0 + KT, 0u);
        }
    }
    return acc;
}

// bases: where batch b's A and B start.
fn stage_batched(blk: vec2<u32>, li: u32, bases: vec2<u32>, k0: u32, buf: u32) {
    stage_a(bases.x, blk, li, k0, buf);
    stage_b(bases.y, blk, li, k0, buf);
}

fn k_loop_batched(blk: vec2<u32>, li: u32, lid: vec3<u32>, bases: vec2<u32>, nk: u32) -> array<vec4<f32>, RM * RN4> {
    var acc: array<vec4<f32>, RM * RN4>;
    stage_batched(blk, li, bases, 0u, 0u);
    for (var k0 = 0u; k0 < nk; k0 += KT) {
        let cur = (k0 / KT) % NBUF;
        workgroupBarrier();
        if (stage_ahead(k0, nk)) {
            stage_batched(blk, li, bases, k0 + KT, 1u - cur);
        }
        accumulate(lid, &acc, cur);
        if (stage_after(k0, nk)) {
            stage_batched(blk, li, bases, k0 + KT, 0u);
        }
    }
    return acc;
}

@compute @workgroup_size(WX, WY, 1)
fn conv3x3_gemm_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
                        @builtin(local_invocation_index) li: u32) {
    let blk = block(wid);
    let acc = k_loop_conv(blk, li, lid, P.cin * 9u);
    var bias: array<f32, RM>;
    for (var i = 0u; i < RM; i++) {
        let co = channel(blk, lid, i);
        if (co < P.cout) {
            bias[i] = B[co];
        }
    }
    store(blk, lid, acc, bias, 0u);
}

@compute @workgroup_size(WX, WY, 1)
fn conv3x3_gemm_backward_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
                               @builtin(local_invocation_index) li: u32) {
    let blk = block(wid);
    let acc = k_loop_conv(blk, li, lid, P.cin * 9u);
    store(blk, lid, acc, array<f32, RM>(), 0u);
}

@compute @workgroup_size(WX, WY, 1)
fn conv3x3_gemm_backward_input_masked(@builtin(workgroup_id) wid: vec3<u32>,
                                      @builtin(local_invocation_id) lid: vec3<u32>,
                                      @builtin(local_invocation_index) li: u32) {
    let blk = block(wid);
    let acc = k_loop_conv_masked(blk, li, lid, P.cin * 9u);
    store(blk, lid, acc, array<f32, RM>(), 0u);
}

// C[b] = A[b] B[b] for every batch b (the Winograd points of conv3x3_wino_gemm.wgsl): A = Wt
// (batches, cout, cin), B = X (batches, cin, h w), C = Y (batches, cout, h w); wid.z = b * (channel
// blocks) + block.
@compute @workgroup_size(WX, WY, 1)
fn conv3x3_gemm_batched(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
                        @builtin(local_invocation_index) li: u32) {
    let blocks = (P.cout + TM - 1u) / TM;
    let b = wid.z / blocks;
    let n = P.h * P.w;
    let blk = vec2<u32>((wid.z % blocks) * TM, (wid.y * P.gx + wid.x) * TN);
    let acc = k_loop_batched(blk, li, lid, vec2<u32>(b * P.cout * P.cin, b * P.cin * n), P.cin);
    store(blk, lid, acc, array<f32, RM>(), b * P.cout * n);
}
