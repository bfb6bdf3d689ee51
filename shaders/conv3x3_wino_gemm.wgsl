// conv3x3_wino_gemm: Winograd F(m x m, 3x3) (Lavin & Gray, "Fast Algorithms for Convolutional
// Neural Networks", 2016) for GPUs, on storage buffers, with the products as a batched GEMM on the
// register-blocked core (conv3x3_gemm.wgsl's conv3x3_gemm_batched). For m = 2 (t = 4) or m = 4
// (t = 6), with T = ceil(h / m) ceil(w / m) output tiles and t^2 points xi:
//   conv3x3_wino{2,4}_gemm_weights:  U[xi][co][ci] = (G g G^T)[xi], once per op (g: the 3x3 filter).
//   conv3x3_wino{2,4}_gemm_input:    V[xi][ci][tile] = (B^T d B)[xi], d: the tile's t x t input patch
//                                    (zero outside the image; _masked: times the ReLU mask bits).
//   conv3x3_gemm_batched:            M[xi] = U[xi] V[xi]  (cout x cin times cin x T, per point).
//   conv3x3_wino{2,4}_gemm_output{,_bias}: y = A^T M A (+ bias), max(0, .) if relu, on the tile's
//                                    m x m pixels.
// The GEMM does t^2 cin cout T multiply-adds against 9 m^2 cin cout T for the direct convolution:
// 2.25x fewer for F(2x2), 4x fewer for F(4x4); the transforms are a few loads and stores per
// value. Checked by tests/kernels.rs against reference::conv3x3_forward / _backward_input.

struct Params {
    cin: u32, cout: u32, h: u32, w: u32,
    tx: u32,    // tiles across (ceil(w / m))
    tiles: u32, // T = tx * ceil(h / m)
    relu: u32,  // 1: apply max(0, .) to the output
    gx: u32,    // workgroups along x (invocation index = (wid.y * gx + wid.x) * 64 + lid.x)
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> X: array<f32>;        // x: (cin, h, w)
@group(0) @binding(2) var<storage, read> M: array<u32>;        // mask bits of x, 32 per word
@group(0) @binding(3) var<storage, read> Wt: array<f32>;       // w: (cout, cin, 3, 3)
@group(0) @binding(4) var<storage, read> B: array<f32>;        // b: (cout)
@group(0) @binding(5) var<storage, read> Mt: array<f32>;       // M: (t^2, cout, T)
@group(0) @binding(6) var<storage, read_write> U: array<f32>;  // U: (t^2, cout, cin)
@group(0) @binding(7) var<storage, read_write> V: array<f32>;  // V: (t^2, cin, T)
@group(0) @binding(8) var<storage, read_write> Y: array<f32>;  // y: (cout, h, w)

// G (t x 3), B^T (t x t) and A^T (m x t), row-major, for t = 4 and t = 6.
var<private> G4: array<f32, 12> = array<f32, 12>(
    1.0, 0.0, 0.0,
    0.5, 0.5, 0.5,
    0.5, -0.5, 0.5,
    0.0, 0.0, 1.0);
var<private> BT4: array<f32, 16> = array<f32, 16>(
    1.0, 0.0, -1.0, 0.0,
    0.0, 1.0, 1.0, 0.0,
    0.0, -1.0, 1.0, 0.0,
    0.0, 1.0, 0.0, -1.0);
var<private> AT4: array<f32, 8> = array<f32, 8>(
    1.0, 1.0, 1.0, 0.0,
    0.0, 1.0, -1.0, -1.0);
var<private> G6: array<f32, 18> = array<f32, 18>(
    0.25, 0.0, 0.0,
    -1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0,
    -1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0,
    1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0,
    1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0,
    0.0, 0.0, 1.0);
var<private> BT6: array<f32, 36> = array<f32, 36>(
    4.0, 0.0, -5.0, 0.0, 1.0, 0.0,
    0.0, -4.0, -4.0, 1.0, 1.0, 0.0,
    0.0, 4.0, -4.0, -1.0, 1.0, 0.0,
    0.0, -2.0, -1.0, 2.0, 1.0, 0.0,
    0.0, 2.0, -1.0, -2.0, 1.0, 0.0,
    0.0, 4.0, 0.0, -5.0, 0.0, 1.0);
var<private> AT6: array<f32, 24> = array<f32, 24>(
    1.0, 1.0, 1.0, 1.0, 1.0, 0.0,
    0.0, 1.0, -1.0, 2.0, -2.0, 0.0,
    0.0, 1.0, 1.0, 4.0, 4.0, 0.0,
    0.0, 1.0, -1.0, 8.0, -8.0, 1.0);

fn g_at(t: u32, i: u32, r: u32) -> f32 {
    if (t == 4u) {
        return G4[i * 3u + r];
    }
    return G6[i * 3u + r];
}

fn bt_at(t: u32, i: u32, j: u32) -> f32 {
    if (t == 4u) {
        return BT4[i * 4u + j];
    }
    return BT6[i * 6u + j];
}

fn at_at(t: u32, i: u32, j: u32) -> f32 {
    if (t == 4u) {
        return AT4[i * 4u + j];
    }
    return AT6[i * 6u + j];
}

// This invocation's index in a 1-D launch of 64-wide workgroups spread over x and y.
fn flat(wid: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.y * P.gx + wid.x) * 64u + lid.x;
}

// U for the filter of (co, ci) = index i: t^2 values of G g G^T.
fn weights(i: u32, t: u32) {
    if (i >= P.cout * P.cin) {
        return;
    }
    var g: array<f32, 9>;
    for (var k = 0u; k < 9u; k++) {
        g[k] = Wt[i * 9u + k];
    }
    // Gg = G g (t x 3), then U = Gg G^T.
    var gg: array<f32, 18>;
    for (var a = 0u; a < t; a++) {
        for (var c = 0u; c < 3u; c++) {
            gg[a * 3u + c] = g_at(t, a, 0u) * g[c] + g_at(t, a, 1u) * g[3u + c] + g_at(t, a, 2u) * g[6u + c];
        }
    }
    let n = P.cout * P.cin;
    for (var a = 0u; a < t; a++) {
        for (var b = 0u; b < t; b++) {
            let u = gg[a * 3u] * g_at(t, b, 0u) + gg[a * 3u + 1u] * g_at(t, b, 1u) + gg[a * 3u + 2u] * g_at(t, b, 2u);
            U[(a * t + b) * n + i] = u;
        }
    }
}

// The entry points share these pieces; only the masked input transform reads M and only the
// output transform with bias reads B, so that each entry point binds only what it uses.

// x[ci][iy][ix], zero outside the image (flat index, or -1).
fn x_index(ci: u32, iy: i32, ix: i32) -> i32 {
    if (iy < 0 || ix < 0 || iy >= i32(P.h) || ix >= i32(P.w)) {
        return -1;
    }
    return i32((ci * P.h + u32(iy)) * P.w + u32(ix));
}

// (ci, first row, first column) of the t x t input patch of (ci, tile) = index i.
fn patch_origin(i: u32, t: u32) -> vec3<i32> {
    let m = t - 2u;
    let tile = i % P.tiles;
    return vec3<i32>(i32(i / P.tiles), i32((tile / P.tx) * m) - 1, i32((tile % P.tx) * m) - 1);
}

fn load_patch(i: u32, t: u32) -> array<f32, 36> {
    let o = patch_origin(i, t);
    var d: array<f32, 36>;
    for (var r = 0u; r < t; r++) {
        for (var c = 0u; c < t; c++) {
            let idx = x_index(u32(o.x), o.y + i32(r), o.z + i32(c));
            if (idx >= 0) {
                d[r * t + c] = X[u32(idx)];
            }
        }
    }
    return d;
}

fn load_patch_masked(i: u32, t: u32) -> array<f32, 36> {
    let o = patch_origin(i, t);
    var d: array<f32, 36>;
    for (var r = 0u; r < t; r++) {
        for (var c = 0u; c < t; c++) {
            let idx = x_index(u32(o.x), o.y + i32(r), o.z + i32(c));
            if (idx >= 0) {
                let k = u32(idx);
                d[r * t + c] = select(0.0, X[k], ((M[k >> 5u] >> (k & 31u)) & 1u) != 0u);
            }
        }
    }
    return d;
}

// V for (ci, tile) = index i from its patch d: B^T d B.
fn input(i: u32, t: u32, d: array<f32, 36>) {
    // e = B^T d, then V = e B (B[j][b] = B^T[b][j]).
    var e: array<f32, 36>;
    for (var a = 0u; a < t; a++) {
        for (var c = 0u; c < t; c++) {
            var s = 0.0;
            for (var j = 0u; j < t; j++) {
                s += bt_at(t, a, j) * d[j * t + c];
            }
            e[a * t + c] = s;
        }
    }
    let n = P.cin * P.tiles;
    for (var a = 0u; a < t; a++) {
        for (var b = 0u; b < t; b++) {
            var s = 0.0;
            for (var j = 0u; j < t; j++) {
                s += e[a * t + j] * bt_at(t, b, j);
            }
            V[(a * t + b) * n + i] = s;
        }
    }
}

// y for (co, tile) = index i (< cout T): A^T M A + bias on the tile's pixels inside the image.
fn output(i: u32, t: u32, bias: f32) {
    let m = t - 2u;
    let co = i / P.tiles;
    let tile = i % P.tiles;
    let n = P.cout * P.tiles;
    var mm: array<f32, 36>;
    for (var k = 0u; k < t * t; k++) {
        mm[k] = Mt[k * n + i];
    }
    // e = A^T M (m x t), then y = e A.
    var e: array<f32, 24>;
    for (var a = 0u; a < m; a++) {
        for (var c = 0u; c < t; c++) {
            var s = 0.0;
            for (var j = 0u; j < t; j++) {
                s += at_at(t, a, j) * mm[j * t + c];
            }
            e[a * t + c] = s;
        }
    }
    let y0 = (tile / P.tx) * m;
    let x0 = (tile % P.tx) * m;
    for (var a = 0u; a < m; a++) {
        for (var b = 0u; b < m; b++) {
            let oy = y0 + a;
            let ox = x0 + b;
            if (oy < P.h && ox < P.w) {
                var s = bias;
                for (var j = 0u; j < t; j++) {
                    s += e[a * t + j] * at_at(t, b, j);
                }
                if (P.relu != 0u) {
                    s = max(s, 0.0);
                }
                Y[(co * P.h + oy) * P.w + ox] = s;
            }
        }
    }
}

@compute @workgroup_size(64, 1, 1)
fn conv3x3_wino2_gemm_weights(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    weights(flat(wid, lid), 4u);
}

@compute @workgroup_size(64, 1, 1)
fn conv3x3_wino4_gemm_weights(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    weights(flat(wid, lid), 6u);
}

@compute @workgroup_size(64, 1, 1)
fn conv3x3_wino2_gemm_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat(wid, lid);
    if (i < P.cin * P.tiles) {
        input(i, 4u, load_patch(i, 4u));
    }
}

@compute @workgroup_size(64, 1, 1)
fn conv3x3_wino4_gemm_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat(wid, lid);
    if (i < P.cin * P.tiles) {
        input(i, 6u, load_patch(i, 6u));
    }
}

@compute @workgroup_size(64, 1, 1)
fn conv3x3_wino2_gemm_input_masked(@builtin(workgroup_id) wid: vec3<u32>,
                                   @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat(wid, lid);
    if (i < P.cin * P.tiles) {
        input(i, 4u, load_patch_masked(i, 4u));
    }
}

@compute @workgroup_size(64, 1, 1)
fn conv3x3_wino4_gemm_input_masked(@builtin(workgroup_id) wid: vec3<u32>,
                                   @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat(wid, lid);
    if (i < P.cin * P.tiles) {
        input(i, 6u, load_patch_masked(i, 6u));
    }
}

@compute @workgroup_size(64, 1, 1)
fn conv3x3_wino2_gemm_output(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat(wid, lid);
    if (i < P.cout * P.tiles) {
        output(i, 4u, 0.0);
    }
}

@compute @workgroup_size(64, 1, 1)
fn conv3x3_wino2_gemm_output_bias(@builtin(workgroup_id) wid: vec3<u32>,
                                  @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat(wid, lid);
    if (i < P.cout * P.tiles) {
        output(i, 4u, B[i / P.tiles]);
    }
}

@compute @workgroup_size(64, 1, 1)
fn conv3x3_wino4_gemm_output(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat(wid, lid);
    if (i < P.cout * P.tiles) {
        output(i, 6u, 0.0);
    }
}

@compute @workgroup_size(64, 1, 1)
fn conv3x3_wino4_gemm_output_bias(@builtin(workgroup_id) wid: vec3<u32>,
                                  @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat(wid, lid);
    if (i < P.cout * P.tiles) {
        output(i, 6u, B[i / P.tiles]);
    }
}
