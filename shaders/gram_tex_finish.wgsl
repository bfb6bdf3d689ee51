// gram_tex_finish: the last step of the texture Gram forward (gpu::gram, Variant::Tex):
//   G[a][b] (+)= scale * sum_z Part[z][a][b]
// where Part (written by the generated gram_tex_forward kernel) is an rgba32float 2-D array
// texture (cp / 4, cp, splits), texel (q, a, z) = partial sums of G[a][4q .. 4q + 3] over the
// positions of split z, both triangles filled. Invocation (a, q) sums one texel over the splits
// and writes up to 4 elements of G (c, c). Invocations numbered over a 2-D grid (gx along x).
// Checked through the gram tests in tests/kernels.rs (Variant::Tex against the CPU reference).

struct Params {
    c: u32,
    c4: u32,         // ceil(c / 4)
    splits: u32,
    count: u32,      // c * c4
    gx: u32,
    scale: f32,
    accumulate: u32, // 1 adds into G instead of overwriting
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var Part: texture_2d_array<f32>;
@group(0) @binding(2) var<storage, read_write> G: array<f32>;

@compute @workgroup_size(256, 1, 1)
fn gram_tex_finish(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = (wid.y * P.gx + wid.x) * 256u + li;
    if (i >= P.count) {
        return;
    }
    let q = i % P.c4;
    let a = i / P.c4;
    var s = vec4<f32>(0.0);
    for (var z = 0u; z < P.splits; z++) {
        s += textureLoad(Part, vec2<u32>(q, a), z, 0);
    }
    for (var k = 0u; k < 4u; k++) {
        let b = q * 4u + k;
        if (b < P.c) {
            let idx = a * P.c + b;
            var v = s[k] * P.scale;
            if (P.accumulate != 0u) {
                v += G[idx];
            }
            G[idx] = v;
        }
    }
}
