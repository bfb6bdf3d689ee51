// flow: dense optical flow, coarse to fine, Horn-Schunck with warping (Horn & Schunck 1981; the
// warping scheme of Brox et al. 2004 with the quadratic penalty), plus the forward-backward
// consistency mask of Ruder, Dosovitskiy & Brox 2016. A flow is a (2, h, w) tensor: plane 0 is u
// (x displacement, pixels), plane 1 is v (y displacement); it maps pixel p of image A to p + w(p)
// in image B, i.e. A(p) ~ B(p + w(p)).
//   flow_luma:        y = 0.299 r + 0.587 g + 0.114 b of a (3, h, w) image in [0,1]
//   flow_downsample:  y (h, w) = mean of the 2x2 block of x (sh, sw) at (2i, 2j), clamped to x;
//                     h = ceil(sh / 2), w = ceil(sw / 2)
//   flow_warp:        y[c, p] = x[c](p + F(p)), bilinear, the sample point clamped into the image
//   flow_gradients:   G = (Ix, Iy, It) at the linearisation point F: Ix, Iy the mean of A's and
//                     Bw's central differences (clamped ends), It = Bw - A; all three 0 where
//                     p + F(p) leaves the image (no data there: smoothness fills it in)
//   flow_hs_step:     one Jacobi step on the total flow F with the data term linearised at F0:
//                     r = (Ix (ubar - u0) + Iy (vbar - v0) + It) / (alpha2 + Ix^2 + Iy^2),
//                     Y = (ubar - Ix r, vbar - Iy r), ubar/vbar the mean of the 4 neighbours
//                     (clamped: the Neumann boundary)
//   flow_upsample:    Y (2, h, w) = X (2, sh, sw) sampled bilinearly at ((j + .5) sw/w - .5,
//                     (i + .5) sh/h - .5), u times sx = w / sw, v times sy = h / sh
//   flow_zero:        Y = 0 (2, h, w): the coarsest level's start
//   flow_consistency: M = 1 where flow F (A -> B) is trusted, 0 where
//                     occluded: |F(p) + Fb(q)|^2 > 0.01 (|F(p)|^2 + |Fb(q)|^2) + 0.5, q = p + F(p),
//                               Fb (B -> A) sampled bilinearly at q (Ruder et al. eq. 6), or q
//                               outside the image (the point left the frame);
//                     a motion boundary: |grad u|^2 + |grad v|^2 > 0.01 |F(p)|^2 + 0.002
//                               (Ruder et al.; central differences, clamped ends)
// Every kernel: one invocation per pixel, 16x16 workgroups over (w, h). Images are single planes
// (h, w) row-major unless stated. CPU twins: reference::flow, same names; checked by tests/flow.rs.

struct Params { w: u32, h: u32, sw: u32, sh: u32, c: u32, alpha2: f32, sx: f32, sy: f32 }

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> X: array<f32>;        // the input image / coarse flow
@group(0) @binding(2) var<storage, read> A: array<f32>;        // image A (h, w)
@group(0) @binding(3) var<storage, read> B: array<f32>;        // warped image B (h, w); consistency: flow B -> A (2, h, w)
@group(0) @binding(4) var<storage, read> F: array<f32>;        // a flow (2, h, w)
@group(0) @binding(5) var<storage, read> F0: array<f32>;       // the linearisation point (2, h, w)
@group(0) @binding(6) var<storage, read> G: array<f32>;        // (Ix, Iy, It) (3, h, w)
@group(0) @binding(7) var<storage, read_write> Y: array<f32>;  // the output

// Where a bilinear sample of an (h, w) plane at (x, y), clamped into the image, reads: the four
// offsets (top-left, top-right, bottom-left, bottom-right) and the weights fx, fy.
struct Bilinear { i00: u32, i01: u32, i10: u32, i11: u32, fx: f32, fy: f32 }

fn bilinear(w: u32, h: u32, x: f32, y: f32) -> Bilinear {
    let cx = clamp(x, 0.0, f32(w - 1u));
    let cy = clamp(y, 0.0, f32(h - 1u));
    let x0 = u32(floor(cx));
    let y0 = u32(floor(cy));
    let x1 = min(x0 + 1u, w - 1u);
    let y1 = min(y0 + 1u, h - 1u);
    return Bilinear(y0 * w + x0, y0 * w + x1, y1 * w + x0, y1 * w + x1, cx - f32(x0), cy - f32(y0));
}

fn mix4(b: Bilinear, v00: f32, v01: f32, v10: f32, v11: f32) -> f32 {
    let top = v00 * (1.0 - b.fx) + v01 * b.fx;
    let bot = v10 * (1.0 - b.fx) + v11 * b.fx;
    return top * (1.0 - b.fy) + bot * b.fy;
}

// Bilinear sample of plane `base` (h, w) of X at (x, y), clamped into the image.
fn sample_x(base: u32, w: u32, h: u32, x: f32, y: f32) -> f32 {
    let b = bilinear(w, h, x, y);
    return mix4(b, X[base + b.i00], X[base + b.i01], X[base + b.i10], X[base + b.i11]);
}

// The same sample of plane `base` of B (flow_consistency's other flow).
fn sample_b(base: u32, w: u32, h: u32, x: f32, y: f32) -> f32 {
    let b = bilinear(w, h, x, y);
    return mix4(b, B[base + b.i00], B[base + b.i01], B[base + b.i10], B[base + b.i11]);
}

fn inside(x: f32, y: f32) -> bool {
    return x >= 0.0 && y >= 0.0 && x <= f32(P.w - 1u) && y <= f32(P.h - 1u);
}

@compute @workgroup_size(16, 16)
fn flow_luma(@builtin(global_invocation_id) g: vec3<u32>) {
    if (g.x >= P.w || g.y >= P.h) { return; }
    let n = P.w * P.h;
    let i = g.y * P.w + g.x;
    Y[i] = 0.299 * X[i] + 0.587 * X[n + i] + 0.114 * X[2u * n + i];
}

@compute @workgroup_size(16, 16)
fn flow_downsample(@builtin(global_invocation_id) g: vec3<u32>) {
    if (g.x >= P.w || g.y >= P.h) { return; }
    let x0 = min(2u * g.x, P.sw - 1u);
    let x1 = min(2u * g.x + 1u, P.sw - 1u);
    let y0 = min(2u * g.y, P.sh - 1u);
    let y1 = min(2u * g.y + 1u, P.sh - 1u);
    let s = X[y0 * P.sw + x0] + X[y0 * P.sw + x1] + X[y1 * P.sw + x0] + X[y1 * P.sw + x1];
    Y[g.y * P.w + g.x] = 0.25 * s;
}

@compute @workgroup_size(16, 16)
fn flow_warp(@builtin(global_invocation_id) g: vec3<u32>) {
    if (g.x >= P.w || g.y >= P.h) { return; }
    let n = P.w * P.h;
    let i = g.y * P.w + g.x;
    let x = f32(g.x) + F[i];
    let y = f32(g.y) + F[n + i];
    for (var c = 0u; c < P.c; c++) {
        Y[c * n + i] = sample_x(c * n, P.w, P.h, x, y);
    }
}

// Central difference of plane A (which = 0) or B (which = 1) along x (dir = 0) or y (dir = 1).
fn diff_ab(which: u32, dir: u32, px: u32, py: u32) -> f32 {
    var lo = vec2<u32>(px, py);
    var hi = vec2<u32>(px, py);
    if (dir == 0u) {
        lo.x = select(px - 1u, 0u, px == 0u);
        hi.x = min(px + 1u, P.w - 1u);
    } else {
        lo.y = select(py - 1u, 0u, py == 0u);
        hi.y = min(py + 1u, P.h - 1u);
    }
    if (which == 0u) {
        return 0.5 * (A[hi.y * P.w + hi.x] - A[lo.y * P.w + lo.x]);
    }
    return 0.5 * (B[hi.y * P.w + hi.x] - B[lo.y * P.w + lo.x]);
}

@compute @workgroup_size(16, 16)
fn flow_gradients(@builtin(global_invocation_id) g: vec3<u32>) {
    if (g.x >= P.w || g.y >= P.h) { return; }
    let n = P.w * P.h;
    let i = g.y * P.w + g.x;
    var ix = 0.0;
    var iy = 0.0;
    var it = 0.0;
    if (inside(f32(g.x) + F[i], f32(g.y) + F[n + i])) {
        ix = 0.5 * (diff_ab(0u, 0u, g.x, g.y) + diff_ab(1u, 0u, g.x, g.y));
        iy = 0.5 * (diff_ab(0u, 1u, g.x, g.y) + diff_ab(1u, 1u, g.x, g.y));
        it = B[i] - A[i];
    }
    Y[i] = ix;
    Y[n + i] = iy;
    Y[2u * n + i] = it;
}

@compute @workgroup_size(16, 16)
fn flow_hs_step(@builtin(global_invocation_id) g: vec3<u32>) {
    if (g.x >= P.w || g.y >= P.h) { return; }
    let n = P.w * P.h;
    let i = g.y * P.w + g.x;
    let l = g.y * P.w + select(g.x - 1u, 0u, g.x == 0u);
    let r = g.y * P.w + min(g.x + 1u, P.w - 1u);
    let t = select(g.y - 1u, 0u, g.y == 0u) * P.w + g.x;
    let b = min(g.y + 1u, P.h - 1u) * P.w + g.x;
    let ub = 0.25 * (F[l] + F[r] + F[t] + F[b]);
    let vb = 0.25 * (F[n + l] + F[n + r] + F[n + t] + F[n + b]);
    let ix = G[i];
    let iy = G[n + i];
    let q = (ix * (ub - F0[i]) + iy * (vb - F0[n + i]) + G[2u * n + i]) / (P.alpha2 + ix * ix + iy * iy);
    Y[i] = ub - ix * q;
    Y[n + i] = vb - iy * q;
}

@compute @workgroup_size(16, 16)
fn flow_upsample(@builtin(global_invocation_id) g: vec3<u32>) {
    if (g.x >= P.w || g.y >= P.h) { return; }
    let n = P.w * P.h;
    let i = g.y * P.w + g.x;
    let x = (f32(g.x) + 0.5) * f32(P.sw) / f32(P.w) - 0.5;
    let y = (f32(g.y) + 0.5) * f32(P.sh) / f32(P.h) - 0.5;
    Y[i] = sample_x(0u, P.sw, P.sh, x, y) * P.sx;
    Y[n + i] = sample_x(P.sw * P.sh, P.sw, P.sh, x, y) * P.sy;
}

@compute @workgroup_size(16, 16)
fn flow_zero(@builtin(global_invocation_id) g: vec3<u32>) {
    if (g.x >= P.w || g.y >= P.h) { return; }
    let i = g.y * P.w + g.x;
    Y[i] = 0.0;
    Y[P.w * P.h + i] = 0.0;
}

// Central difference of plane `base` of F along x (dir = 0) or y (dir = 1), clamped ends.
fn diff_f(base: u32, dir: u32, px: u32, py: u32) -> f32 {
    if (dir == 0u) {
        let lo = select(px - 1u, 0u, px == 0u);
        let hi = min(px + 1u, P.w - 1u);
        return 0.5 * (F[base + py * P.w + hi] - F[base + py * P.w + lo]);
    }
    let lo = select(py - 1u, 0u, py == 0u);
    let hi = min(py + 1u, P.h - 1u);
    return 0.5 * (F[base + hi * P.w + px] - F[base + lo * P.w + px]);
}

@compute @workgroup_size(16, 16)
fn flow_consistency(@builtin(global_invocation_id) g: vec3<u32>) {
    if (g.x >= P.w || g.y >= P.h) { return; }
    let n = P.w * P.h;
    let i = g.y * P.w + g.x;
    let u = F[i];
    let v = F[n + i];
    let qx = f32(g.x) + u;
    let qy = f32(g.y) + v;
    let ub = sample_b(0u, P.w, P.h, qx, qy);
    let vb = sample_b(n, P.w, P.h, qx, qy);
    let su = u + ub;
    let sv = v + vb;
    let occluded = su * su + sv * sv > 0.01 * (u * u + v * v + ub * ub + vb * vb) + 0.5;
    let ux = diff_f(0u, 0u, g.x, g.y);
    let uy = diff_f(0u, 1u, g.x, g.y);
    let vx = diff_f(n, 0u, g.x, g.y);
    let vy = diff_f(n, 1u, g.x, g.y);
    let boundary = ux * ux + uy * uy + vx * vx + vy * vy > 0.01 * (u * u + v * v) + 0.002;
    Y[i] = select(1.0, 0.0, occluded || boundary || !inside(qx, qy));
}
