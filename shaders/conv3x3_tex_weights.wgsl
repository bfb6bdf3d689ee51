// conv3x3_tex_weights: packs the frozen weights and bias of the texture conv3x3 variants
// (gpu::conv, Variant::Tex and Variant::Wino), run once when the op is built.
//   conv3x3_tex_pack_weights: OIHW weights and the bias -> rgba32float 2-D texture of
//                             (cout_pad, cin4 * 9 + 1) texels: texel (o, (c / 4) * 9 + t)[c % 4] =
//                             w[o][c][t]; row cin4 * 9 holds (b[o], 0, 0, 0); zero past cout/cin.
// Checked through the conv tests in tests/kernels.rs (Variant::Tex, Variant::Wino against the CPU
// reference).

struct Params {
    cout: u32, cin: u32,
    cout_pad: u32,  // texture width: output channels rounded up to the kernel's channel block
    cin4: u32,      // ceil(cin / 4)
    has_bias: u32,  // 0 leaves the bias row zero
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> Wt: array<f32>;  // w: (cout, cin, 3, 3)
@group(0) @binding(2) var<storage, read> B: array<f32>;   // b: (cout)
@group(0) @binding(3) var Wp: texture_storage_2d<rgba32float, write>; // (cout_pad, cin4 * 9 + 1), Winograd cin4 * 16 + 1

// Texel (o, row) of a packed weights texture with `per` rows per 4 input channels (9 taps, or
// 16 Winograd points) and the bias row last.
fn pack_weights(g: vec3<u32>, per: u32) {
    let o = g.x;
    let row = g.y;
    if (o >= P.cout_pad || row > P.cin4 * per) {
        return;
    }
    var v = vec4<f32>(0.0);
    if (o < P.cout) {
        if (row == P.cin4 * per) {
            if (P.has_bias != 0u) {
                v.x = B[o];
            }
        } else {
            let c4 = row / per;
            let t = row % per;
            for (var k = 0u; k < 4u; k++) {
                let c = c4 * 4u + k;
                if (c < P.cin) {
                    if (per == 16u) {
                        v[k] = wino_u(o, c, t);
                    } else {
                        v[k] = Wt[(o * P.cin + c) * 9u + t];
                    }
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

// conv3x3_wino_pack_weights: the Winograd F(2x2, 3x3) variant's weights (gpu::conv,
// Variant::Wino): U = G g G^T per (output, input) channel, G = [1 0 0; 1/2 1/2 1/2;
// 1/2 -1/2 1/2; 0 0 1], into a (cout_pad, cin4 * 16 + 1) texture: texel (o, (c / 4) * 16 + xi)
// [c % 4] = U[o][c][xi] (xi = 4 i + j: row i, column j of U); row cin4 * 16 holds (b[o], 0, 0, 0).
fn wino_u(o: u32, c: u32, xi: u32) -> f32 {
    let i = xi / 4u;
    let j = xi % 4u;
    // Row i of G g (3 values), then column j of (G g) G^T.
    var r: array<f32, 3>;
    for (var k = 0u; k < 3u; k++) {
        let g0 = Wt[(o * P.cin + c) * 9u + k];
        let g1 = Wt[(o * P.cin + c) * 9u + 3u + k];
        let g2 = Wt[(o * P.cin + c) * 9u + 6u + k];
        switch i {
            case 0u: { r[k] = g0; }
            case 1u: { r[k] = 0.5 * (g0 + g1 + g2); }
            case 2u: { r[k] = 0.5 * (g0 - g1 + g2); }
            default: { r[k] = g2; }
        }
    }
    switch j {
        case 0u: { return r[0]; }
        case 1u: { return 0.5 * (r[0] + r[1] + r[2]); }
        case 2u: { return 0.5 * (r[0] - r[1] + r[2]); }
        default: { return r[2]; }
    }
}

@compute @workgroup_size(8, 8, 1)
fn conv3x3_wino_pack_weights(@builtin(global_invocation_id) g: vec3<u32>) {
    pack_weights(g, 16u);
}
