// conv3x3_tex_weights: packs the frozen weights and bias of the texture conv3x3 variants
// (gpu::conv, Variant::Tex, Wino and Wino4), run once when the op is built.
//   conv3x3_tex_pack_weights: OIHW weights and the bias -> rgba32float 2-D texture of
//                             (cout_pad, cin4 * 9 + 1) texels: texel (o, (c / 4) * 9 + t)[c % 4] =
//                             w[o][c][t]; zero past cout/cin. Row cin4 * 9 is the bias row.
//   conv3x3_wino_pack_weights, conv3x3_wino4_pack_weights: the Winograd variants' weights
//                             (Wino: F(2x2, 3x3), tiles of t = 4; Wino4: F(4x4, 3x3), t = 6):
//                             U = G g G^T per (output, input) channel, into a (cout_pad,
//                             cin4 * t^2 + 1) texture: texel (o, (c / 4) * t^2 + xi)[c % 4] =
//                             U[o][c][xi] (xi = t i + j: row i, column j of U); bias row last.
//   conv3x3_tex_pack_bias:    the bias row: texel (o, bias_row) = (b[o], 0, 0, 0). Without a bias
//                             it is not run and the row stays zero as created (WebGPU
//                             zero-initialises textures), so the weights entry points never bind B.
//                             G as in Lavin & Gray, "Fast Algorithms for Convolutional Neural
//                             Networks" (2016).
// Checked through the conv tests in tests/kernels.rs (every variant against the CPU reference).

struct Params {
    cout: u32, cin: u32,
    cout_pad: u32,  // texture width: output channels rounded up to the kernel's channel block
    cin4: u32,      // ceil(cin / 4)
    bias_row: u32,  // cin4 * rows per 4 channels: the last row
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> Wt: array<f32>;  // w: (cout, cin, 3, 3)
@group(0) @binding(2) var<storage, read> B: array<f32>;   // b: (cout)
@group(0) @binding(3) var Wp: texture_storage_2d<rgba32float, write>; // (cout_pad, cin4 * rows + 1)

var<private> G2: array<f32, 12> = array<f32, 12>(
    1.0, 0.0, 0.0,
    0.5, 0.5, 0.5,
    0.5, -0.5, 0.5,
    0.0, 0.0, 1.0);
var<private> G4: array<f32, 18> = array<f32, 18>(
    0.25, 0.0, 0.0,
    -1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0,
    -1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0,
    1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0,
    1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0,
    0.0, 0.0, 1.0);

// Row i, column r of G for tiles of t (4 or 6).
fn g_at(t: u32, i: u32, r: u32) -> f32 {
    if (t == 4u) {
        return G2[i * 3u + r];
    }
    return G4[i * 3u + r];
}

// Point xi of U = G g G^T for output channel o, input channel c, tiles of t.
fn wino_u(o: u32, c: u32, xi: u32, t: u32) -> f32 {
    let i = xi / t;
    let j = xi % t;
    var u = 0.0;
    for (var r = 0u; r < 3u; r++) {
        for (var k = 0u; k < 3u; k++) {
            u += g_at(t, i, r) * Wt[(o * P.cin + c) * 9u + r * 3u + k] * g_at(t, j, k);
        }
    }
    return u;
}

// Texel (o, row) of a packed weights texture with `per` rows per 4 input channels (9 taps, or
// 16 / 36 Winograd points); the bias row last is conv3x3_tex_pack_bias's.
fn pack_weights(g: vec3<u32>, per: u32) {
    let o = g.x;
    let row = g.y;
    if (o >= P.cout_pad || row >= P.cin4 * per) {
        return;
    }
    var v = vec4<f32>(0.0);
    if (o < P.cout) {
        let c4 = row / per;
        let t = row % per;
        for (var k = 0u; k < 4u; k++) {
            let c = c4 * 4u + k;
            if (c < P.cin) {
                if (per == 16u) {
                    v[k] = wino_u(o, c, t, 4u);
                } else if (per == 36u) {
                    v[k] = wino_u(o, c, t, 6u);
                } else {
                    v[k] = Wt[(o * P.cin + c) * 9u + t];
                }
            }
        }
    }
    textureStore(Wp, vec2<u32>(o, row), v);
}

@compute @workgroup_size(8, 8, 1)
fn conv3x3_tex_pack_weights(@builtin(global_invocation_id) g: vec3<u32>) {
    pack_weights(g, 9u);
}

@compute @workgroup_size(8, 8, 1)
fn conv3x3_wino_pack_weights(@builtin(global_invocation_id) g: vec3<u32>) {
    pack_weights(g, 16u);
}

@compute @workgroup_size(8, 8, 1)
fn conv3x3_wino4_pack_weights(@builtin(global_invocation_id) g: vec3<u32>) {
    pack_weights(g, 36u);
}

@compute @workgroup_size(64, 1, 1)
fn conv3x3_tex_pack_bias(@builtin(global_invocation_id) g: vec3<u32>) {
    let o = g.x;
    if (o >= P.cout_pad) {
        return;
    }
    var v = vec4<f32>(0.0);
    if (o < P.cout) {
        v.x = B[o];
    }
    textureStore(Wp, vec2<u32>(o, P.bias_row), v);
}
