// conv3x3: 3x3 convolution, stride 1, zero padding 1, batch 1, CHW.
//   conv3x3_forward:        y = conv(x, w) + b, then max(0, .) if relu.
//   conv3x3_backward_input: dx = conv(dy * (m > 0), w~) where w~ is w with in/out swapped and
//                           the 3x3 flipped (prepared once on the host: gpu::conv::transpose_flip),
//                           m the ReLU-backward mask at 1 bit per element (relu_mask_pack).
//   conv3x3_backward_input_masked: conv3x3_backward_input with the mask (binds M; the unmasked
//                           entry points do not, and only the forward binds B).
// All are the same direct convolution; they differ only in the bias and the mask.
// Tiling: a workgroup owns an 8x8 pixel tile and 8 output channels; each invocation one pixel and
// 8 channels. Input channels are staged 8 at a time through workgroup memory with a 1-pixel halo.
// Checked by tests/kernels.rs against reference::conv3x3_forward / conv3x3_backward_input.

struct Params {
    cin: u32, cout: u32, h: u32, w: u32,
    relu: u32,     // 1: apply max(0, .) to the output
    _p0: u32, _p1: u32, _p2: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> X: array<f32>;        // x: (cin, h, w)
@group(0) @binding(2) var<storage, read> Wt: array<f32>;       // w: (cout, cin, 3, 3)
@group(0) @binding(3) var<storage, read> B: array<f32>;        // b: (cout)
@group(0) @binding(4) var<storage, read> M: array<u32>;        // m: (cin, h, w) bits, 32 per word
@group(0) @binding(5) var<storage, read_write> Y: array<f32>;  // y: (cout, h, w)

const T: u32 = 8u;    // pixel tile side
const CO: u32 = 8u;   // output channels per invocation
const CI: u32 = 8u;   // input channels staged per round
const HT: u32 = 10u;  // tile side with halo

var<workgroup> xs: array<f32, 800>; // CI * HT * HT
var<workgroup> ws: array<f32, 576>; // CO * CI * 9

// The entry points share these pieces; only load_x_masked reads M and only the forward's
// store reads B, so that each entry point binds only what it uses.

// Flat index of x[c][iy][ix], or -1 outside the image (zero padding) or past cin.
fn x_index(c: u32, iy: i32, ix: i32) -> i32 {
    if (c >= P.cin || iy < 0 || ix < 0 || iy >= i32(P.h) || ix >= i32(P.w)) {
        return -1;
    }
    return i32((c * P.h + u32(iy)) * P.w + u32(ix));
}

fn load_x(c: u32, iy: i32, ix: i32) -> f32 {
    let i = x_index(c, iy, ix);
    if (i < 0) {
        return 0.0;
    }
    return X[u32(i)];
}

fn load_x_masked(c: u32, iy: i32, ix: i32) -> f32 {
    let i = x_index(c, iy, ix);
    if (i < 0) {
        return 0.0;
    }
    let idx = u32(i);
    return select(0.0, X[idx], ((M[idx >> 5u] >> (idx & 31u)) & 1u) != 0u);
}

// Stages the CO x CI x 9 weights of output channels co0.. and input channels c0.. (zero past
// cout and cin).
fn stage_weights(co0: u32, c0: u32, li: u32) {
    for (var e = li; e < CO * CI * 9u; e += T * T) {
        let k = e / (CI * 9u);
        let c = (e / 9u) % CI;
        let t = e % 9u;
        var v = 0.0;
        if (co0 + k < P.cout && c0 + c < P.cin) {
            v = Wt[((co0 + k) * P.cin + c0 + c) * 9u + t];
        }
        ws[e] = v;
    }
}

// acc[k] += the staged round's contribution to this invocation's pixel, channel co0 + k.
fn accumulate(lid: vec3<u32>, acc: ptr<function, array<f32, 8>>) {
    for (var c = 0u; c < CI; c++) {
        for (var t = 0u; t < 9u; t++) {
            let xv = xs[(c * HT + lid.y + t / 3u) * HT + lid.x + t % 3u];
            for (var k = 0u; k < CO; k++) {
                (*acc)[k] = fma(ws[(k * CI + c) * 9u + t], xv, (*acc)[k]);
            }
        }
    }
}

// Y at the invocation's pixel, channels co0.. (+ bias when given), then max(0, .) if relu.
fn store(wid: vec3<u32>, lid: vec3<u32>, acc: array<f32, 8>, bias: array<f32, 8>) {
    let ox = wid.x * T + lid.x;
    let oy = wid.y * T + lid.y;
    let co0 = wid.z * CO;
    if (ox >= P.w || oy >= P.h) {
        return;
    }
    for (var k = 0u; k < CO; k++) {
        let o = co0 + k;
        if (o < P.cout) {
            var v = acc[k] + bias[k];
            if (P.relu != 0u) {
                v = max(v, 0.0);
            }
            Y[(o * P.h + oy) * P.w + ox] = v;
        }
    }
}

@compute @workgroup_size(8, 8, 1)
fn conv3x3_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
                   @builtin(local_invocation_index) li: u32) {
    let co0 = wid.z * CO;
    let x0 = i32(wid.x * T) - 1;
    let y0 = i32(wid.y * T) - 1;
    var acc: array<f32, 8>;
    for (var c0 = 0u; c0 < P.cin; c0 += CI) {
        // Stage CI input planes of the 10x10 halo tile and the CO x CI x 9 weights.
        for (var e = li; e < CI * HT * HT; e += T * T) {
            let r = e % (HT * HT);
            xs[e] = load_x(c0 + e / (HT * HT), y0 + i32(r / HT), x0 + i32(r % HT));
        }
        stage_weights(co0, c0, li);
        workgroupBarrier();
        accumulate(lid, &acc);
        workgroupBarrier();
    }
    var bias: array<f32, 8>;
    for (var k = 0u; k < CO; k++) {
        if (co0 + k < P.cout) {
            bias[k] = B[co0 + k];
        }
    }
    store(wid, lid, acc, bias);
}

@compute @workgroup_size(8, 8, 1)
fn conv3x3_backward_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
                          @builtin(local_invocation_index) li: u32) {
    let co0 = wid.z * CO;
    let x0 = i32(wid.x * T) - 1;
    let y0 = i32(wid.y * T) - 1;
    var acc: array<f32, 8>;
    for (var c0 = 0u; c0 < P.cin; c0 += CI) {
        for (var e = li; e < CI * HT * HT; e += T * T) {
            let r = e % (HT * HT);
            xs[e] = load_x(c0 + e / (HT * HT), y0 + i32(r / HT), x0 + i32(r % HT));
        }
        stage_weights(co0, c0, li);
        workgroupBarrier();
        accumulate(lid, &acc);
        workgroupBarrier();
    }
    store(wid, lid, acc, array<f32, 8>());
}

@compute @workgroup_size(8, 8, 1)
fn conv3x3_backward_input_masked(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
                                 @builtin(local_invocation_index) li: u32) {
    let co0 = wid.z * CO;
    let x0 = i32(wid.x * T) - 1;
    let y0 = i32(wid.y * T) - 1;
    var acc: array<f32, 8>;
    for (var c0 = 0u; c0 < P.cin; c0 += CI) {
        for (var e = li; e < CI * HT * HT; e += T * T) {
            let r = e % (HT * HT);
            xs[e] = load_x_masked(c0 + e / (HT * HT), y0 + i32(r / HT), x0 + i32(r % HT));
        }
        stage_weights(co0, c0, li);
        workgroupBarrier();
        accumulate(lid, &acc);
        workgroupBarrier();
    }
    store(wid, lid, acc, array<f32, 8>());
}
