// pool: 2x2, stride-2 pooling on (c, h, w) -> (c, h/2, w/2) (floor: an odd last row/column is
// dropped, as PyTorch does; its gradient is zero).
//   avgpool2x2_forward / avgpool2x2_backward (spreads g/4)
//   maxpool2x2_forward / maxpool2x2_backward (routes g to the window's FIRST maximum, recomputed
//   from the forward input, so ties - all-zero windows after ReLU - match PyTorch)
// One invocation per output element (forward) or per input element (backward: no write races).
// Checked by tests/kernels.rs against reference::avgpool2x2_* / maxpool2x2_*.

struct Params { c: u32, h: u32, w: u32, gx: u32 }

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> X: array<f32>;        // forward input x: (c, h, w)
@group(0) @binding(2) var<storage, read> G: array<f32>;        // backward: dy: (c, h/2, w/2)
@group(0) @binding(3) var<storage, read_write> Out: array<f32>;

fn flat(wid: vec3<u32>, li: u32) -> u32 {
    return (wid.y * P.gx + wid.x) * 256u + li;
}

// Offset (0..3, row-major) of the first maximum of window (k, i, j).
fn argmax(k: u32, i: u32, j: u32) -> u32 {
    let base = (k * P.h + 2u * i) * P.w + 2u * j;
    var best = 0u;
    var bv = X[base];
    if (X[base + 1u] > bv) { bv = X[base + 1u]; best = 1u; }
    if (X[base + P.w] > bv) { bv = X[base + P.w]; best = 2u; }
    if (X[base + P.w + 1u] > bv) { best = 3u; }
    return best;
}

@compute @workgroup_size(256)
fn avgpool2x2_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let oh = P.h / 2u; let ow = P.w / 2u;
    let o = flat(wid, li);
    if (o >= P.c * oh * ow) { return; }
    let k = o / (oh * ow); let i = (o / ow) % oh; let j = o % ow;
    let base = (k * P.h + 2u * i) * P.w + 2u * j;
    Out[o] = (X[base] + X[base + 1u] + X[base + P.w] + X[base + P.w + 1u]) * 0.25;
}

@compute @workgroup_size(256)
fn avgpool2x2_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let oh = P.h / 2u; let ow = P.w / 2u;
    let e = flat(wid, li);
    if (e >= P.c * P.h * P.w) { return; }
    let k = e / (P.h * P.w); let y = (e / P.w) % P.h; let x = e % P.w;
    var v = 0.0;
    if (y / 2u < oh && x / 2u < ow) {
        v = G[(k * oh + y / 2u) * ow + x / 2u] * 0.25;
    }
    Out[e] = v;
}

@compute @workgroup_size(256)
fn maxpool2x2_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let oh = P.h / 2u; let ow = P.w / 2u;
    let o = flat(wid, li);
    if (o >= P.c * oh * ow) { return; }
    let k = o / (oh * ow); let i = (o / ow) % oh; let j = o % ow;
    let t = argmax(k, i, j);
    Out[o] = X[(k * P.h + 2u * i + t / 2u) * P.w + 2u * j + t % 2u];
}

@compute @workgroup_size(256)
fn maxpool2x2_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let oh = P.h / 2u; let ow = P.w / 2u;
    let e = flat(wid, li);
    if (e >= P.c * P.h * P.w) { return; }
    let k = e / (P.h * P.w); let y = (e / P.w) % P.h; let x = e % P.w;
    var v = 0.0;
    if (y / 2u < oh && x / 2u < ow) {
        let t = argmax(k, y / 2u, x / 2u);
        if (t == (y % 2u) * 2u + x % 2u) {
            v = G[(k * oh + y / 2u) * ow + x / 2u];
        }
    }
    Out[e] = v;
}
