// image: the network's input transform and its gradient, from a (3, h, w) image to a
// (3, h + 2r, w + 2r) network input (r = 0: the same size).
//   preprocess_forward:  y[c, i, j] = x[src[c], rf(i - r, h), rf(j - r, w)] * a[c] + b[c]
//     rf reflects without repeating the edge pixel (numpy 'reflect', torch ReflectionPad2d),
//     repeatedly when r >= the side: the margin mirrors the image (--edge reflect).
//     torchvision weights: src = (0,1,2) (RGB), a = 1/std, b = -mean/std, x in [0,1]
//     Caffe weights:       src = (2,1,0) (BGR), a = 255,   b = -mean_bgr
//   preprocess_backward: dx[src[c], y, x] = a[c] * sum of dy[c, i, j] over every padded position
//     (i, j) that mirrors (y, x): a gather per pixel (src is a permutation: no races).
// The optimiser works on x in [0,1] RGB whatever the weights' convention, so learning rates
// mean the same thing for every weights file.
// Checked by tests/kernels.rs against reference::step::preprocess_* (and finite differences).

struct Params {
    h: u32, w: u32, r: u32, gx: u32,
    src: vec4<u32>,
    a: vec4<f32>,
    b: vec4<f32>,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> X: array<f32>;          // forward: x (3, h, w); backward: dy (3, h+2r, w+2r)
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;    // forward: y (3, h+2r, w+2r); backward: dx (3, h, w)

// i in [-r, n + r) reflected into [0, n).
fn rf(i: i32, n: u32) -> u32 {
    if (n == 1u) { return 0u; }
    let p = 2 * i32(n) - 2;
    var m = i % p;
    if (m < 0) { m = m + p; }
    if (m >= i32(n)) { m = p - m; }
    return u32(m);
}

@compute @workgroup_size(256)
fn preprocess_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = (wid.y * P.gx + wid.x) * 256u + li;
    let ph = P.h + 2u * P.r;
    let pw = P.w + 2u * P.r;
    if (i >= 3u * ph * pw) { return; }
    let c = i / (ph * pw);
    let yy = (i / pw) % ph;
    let xx = i % pw;
    let r = i32(P.r);
    let sy = rf(i32(yy) - r, P.h);
    let sx = rf(i32(xx) - r, P.w);
    Y[i] = X[(P.src[c] * P.h + sy) * P.w + sx] * P.a[c] + P.b[c];
}

// The first padded index >= -r mirroring index y of a side n in residue class k (0: y + j p,
// 1: -y + j p, p = 2n - 2), and the step to the next: (first, step); first is past every
// index when the class is empty (k = 1 where it equals class 0; n = 1: every index, class 0).
fn mirrors(k: u32, y: u32, n: u32, r: i32) -> vec2<i32> {
    let none = vec2<i32>(0x3fffffff, 1);
    if (n == 1u) {
        return select(vec2<i32>(-r, 1), none, k == 1u);
    }
    let p = 2 * i32(n) - 2;
    if (k == 1u && (y == 0u || y == n - 1u)) { return none; }
    let base = select(i32(y), -i32(y), k == 1u);
    // Smallest v = base (mod p) with v >= -r.
    var v = (base + r) % p;
    if (v < 0) { v = v + p; }
    return vec2<i32>(v - r, p);
}

// Sum of dy over the padded positions of plane c mirroring pixel (y, x).
fn fold_sum(c: u32, y: u32, x: u32) -> f32 {
    let r = i32(P.r);
    let pw = P.w + 2u * P.r;
    let base = c * (P.h + 2u * P.r) * pw;
    var s = 0.0;
    for (var ky = 0u; ky < 2u; ky++) {
        let my = mirrors(ky, y, P.h, r);
        for (var iy = my.x; iy < i32(P.h) + r; iy += my.y) {
            let row = base + u32(iy + r) * pw;
            for (var kx = 0u; kx < 2u; kx++) {
                let mx = mirrors(kx, x, P.w, r);
                for (var ix = mx.x; ix < i32(P.w) + r; ix += mx.y) {
                    s += X[row + u32(ix + r)];
                }
            }
        }
    }
    return s;
}

@compute @workgroup_size(256)
fn preprocess_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = (wid.y * P.gx + wid.x) * 256u + li;
    let plane = P.h * P.w;
    if (i >= 3u * plane) { return; }
    let c = i / plane;
    let p = i % plane;
    let y = p / P.w;
    let x = p % P.w;
    Y[P.src[c] * plane + p] = fold_sum(c, y, x) * P.a[c];
}
