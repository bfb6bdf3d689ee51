// pool: 2x2, stride-2 pooling on (c, h, w) -> (c, h/2, w/2) (floor: an odd last row/column is
// dropped, as PyTorch does; its gradient is zero).
//   avgpool2x2_forward / avgpool2x2_backward (spreads g/4)
//   maxpool2x2_forward / maxpool2x2_backward (routes g to the window's FIRST maximum, recomputed
//   from the forward input, so ties - all-zero windows after ReLU - match PyTorch)
// One invocation per output element (forward) or per 2x2 block of the input (backward: it writes
// that block of dx, no write races; blocks of a dropped odd row/column get zeros). A block per
// invocation reads dy (and, for max, the window) once instead of once per dx element.
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

// Block (k, bi, bj) of the backward grid, c x ceil(h/2) x ceil(w/2), for invocation e; false
// past the end.
fn block_of(e: u32, b: ptr<function, vec3<u32>>) -> bool {
    let bh = (P.h + 1u) / 2u; let bw = (P.w + 1u) / 2u;
    if (e >= P.c * bh * bw) { return false; }
    *b = vec3<u32>(e / (bh * bw), (e / bw) % bh, e % bw);
    return true;
}

// Writes v[t] to dx at offset t (row-major) of block b, where inside the image.
fn store_block(b: vec3<u32>, v: vec4<f32>) {
    let y = 2u * b.y; let x = 2u * b.z;
    let base = (b.x * P.h + y) * P.w + x;
    Out[base] = v.x;
    if (x + 1u < P.w) { Out[base + 1u] = v.y; }
    if (y + 1u < P.h) {
        Out[base + P.w] = v.z;
        if (x + 1u < P.w) { Out[base + P.w + 1u] = v.w; }
    }
}

@compute @workgroup_size(256)
fn avgpool2x2_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let oh = P.h / 2u; let ow = P.w / 2u;
    var b: vec3<u32>;
    if (!block_of(flat(wid, li), &b)) { return; }
    var v = vec4<f32>(0.0);
    if (b.y < oh && b.z < ow) {
        v = vec4<f32>(G[(b.x * oh + b.y) * ow + b.z] * 0.25);
    }
    store_block(b, v);
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
    var b: vec3<u32>;
    if (!block_of(flat(wid, li), &b)) { return; }
    var v = vec4<f32>(0.0);
    if (b.y < oh && b.z < ow) {
        v[argmax(b.x, b.y, b.z)] = G[(b.x * oh + b.y) * ow + b.z];
    }
    store_block(b, v);
}
