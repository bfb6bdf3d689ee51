// tile: helpers of exact tiled rendering (src/tiled.rs).
//   mask_rect: y = x inside the rectangle [y0, y1) x [x0, x1) of every (h, w) plane, 0 outside.
//              The rectangle comes from a small storage buffer written once per tile, so one set
//              of ops serves every tile of the same region shape.
// Checked by tests/tiled.rs (against reference::mask_rect) and by the tiled-vs-untiled test.

struct Params { n: u32, gx: u32, h: u32, w: u32, level: u32, _p0: u32, _p1: u32, _p2: u32 }

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
