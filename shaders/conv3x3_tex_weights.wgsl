// conv3x3_tex_weights: packs the frozen weights and bias of the texture conv3x3 variant
// (gpu::conv, Variant::Tex), run once when the op is built.
//   conv3x3_tex_pack_weights: OIHW weights and the bias -> rgba32float 2-D texture of
//                             (cout_pad, cin4 * 9 + 1) texels: texel (o, (c / 4) * 9 + t)[c % 4] =
//                             w[o][c][t]; row cin4 * 9 holds (b[o], 0, 0, 0); zero past cout/cin.
// Checked through the conv tests in tests/kernels.rs (Variant::Tex against the CPU reference).

struct Params {
    cout: u32, cin: u32,
    cout_pad: u32,  // texture width: output channels rounded up to the kernel's channel block
    cin4: u32,      // ceil(cin / 4)
    has_bias: u32,  // 0 leaves the bias row zero
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> Wt: array<f32>;  // w: (cout, cin, 3, 3)
@group(0) @binding(2) var<storage, read> B: array<f32>;   // b: (cout)
@group(0) @binding(3) var Wp: texture_storage_2d<rgba32float, write>; // (cout_pad, cin4 * 9 + 1)

@compute @workgroup_size(8, 8, 1)
fn conv3x3_tex_pack_weights(@builtin(global_invocation_id) g: vec3<u32>) {
    let o = g.x;
    let row = g.y;
    if (o >= P.cout_pad || row > P.cin4 * 9u) {
        return;
    }
    var v = vec4<f32>(0.0);
    if (o < P.cout) {
        if (row == P.cin4 * 9u) {
            if (P.has_bias != 0u) {
                v.x = B[o];
            }
        } else {
            let c4 = row / 9u;
            let t = row % 9u;
            for (var k = 0u; k < 4u; k++) {
                let c = c4 * 4u + k;
                if (c < P.cin) {
                    v[k] = Wt[(o * P.cin + c) * 9u + t];
                }
            }
        }
    }
    textureStore(Wp, vec2<u32>(o, row), v);
}
