// tile: helpers of exact tiled rendering (src/tiled.rs).
//   mask_rect: y = x inside the rectangle [y0, y1) x [x0, x1) of every (h, w) plane, 0 outside.
//              The rectangle comes from a small storage buffer written once per tile, so one set
//              of ops serves every tile of the same region shape.
//   crop_forward:  y (c, hh, ww) = the window of x (c, h, w) at (oy, ox): the image's positions of
//                  a tap computed on the reflect-padded image (--edge reflect, src/runner.rs).
//   crop_backward: its adjoint: dx (c, h, w) = dy placed at (oy, ox), 0 elsewhere; added to dx
//                  when acc = 1 (the gradient of other terms at the same tap).
// Checked by tests/tiled.rs (against reference::mask_rect, crop_*) and by the tiled-vs-untiled test.

struct Params {
    n: u32, gx: u32, h: u32, w: u32,
    level: u32, oy: u32, ox: u32, acc: u32,
    hh: u32, ww: u32, _p0: u32, _p1: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> R: array<u32>;          // rects: (y0, x0, y1, x1) per level
@group(0) @binding(2) var<storage, read> X: array<f32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;

@compute @workgroup_size(256)
fn mask_rect(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = (wid.y * P.gx + wid.x) * 256u + li;
    if (i >= P.n) { return; }
    let x = i % P.w;
    let y = (i / P.w) % P.h;
    let b = 4u * P.level;
    let inside = y >= R[b] && x >= R[b + 1u] && y < R[b + 2u] && x < R[b + 3u];
    Y[i] = select(0.0, X[i], inside);
}

@compute @workgroup_size(256)
fn crop_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = (wid.y * P.gx + wid.x) * 256u + li;   // over y: n = c * hh * ww
    if (i >= P.n) { return; }
    let k = i / (P.hh * P.ww);
    let y = (i / P.ww) % P.hh;
    let x = i % P.ww;
    Y[i] = X[(k * P.h + P.oy + y) * P.w + P.ox + x];
}

@compute @workgroup_size(256)
fn crop_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = (wid.y * P.gx + wid.x) * 256u + li;   // over dx: n = c * h * w
    if (i >= P.n) { return; }
    let k = i / (P.h * P.w);
    let y = (i / P.w) % P.h;
    let x = i % P.w;
    let inside = y >= P.oy && x >= P.ox && y < P.oy + P.hh && x < P.ox + P.ww;
    var v = 0.0;
    if (inside) {
        v = X[(k * P.hh + y - P.oy) * P.ww + x - P.ox];
    }
    if (P.acc == 1u) {
        v = v + Y[i];
    }
    Y[i] = v;
}
