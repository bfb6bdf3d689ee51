// gram_tex_pack4: gram_tex_pack_rows / gram_tex_pack_chans (shaders/gram_tex_pack.wgsl) for
// n % 4 == 0, reading 4 consecutive positions of a channel as one vec4 (on lavapipe each
// storage-buffer load is a per-lane loop, so 4x fewer loads pay).
//   gram_tex_pack_rows4:  texel (x, a, z) = F[a][z chunk + 4x .. + 3], zero past n and for a >= c
//                         (n % 4 == 0 and chunk % 4 == 0: a texel is all in or all out).
//   gram_tex_pack_chans4: invocation (q, b4) reads positions 4q .. 4q + 3 of channels
//                         4 b4 .. 4 b4 + 3 (a 4x4 transpose) and writes the four texels
//                         (p % w, b4, p / w), p = 4q + j; channels >= c zero.
// Checked through the gram tests in tests/kernels.rs (Variant::Tex against the CPU reference).

struct Params {
    c: u32, n: u32,
    chunk: u32,   // rows: positions per layer (a multiple of 4); chans: texture width w
    rows: u32,    // texture rows (rows: c rounded up to the tile)
    width: u32,   // texels per texture row (rows: chunk / 4)
    count: u32,   // invocations with work
    gx: u32,      // workgroups along x
    scale: f32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> F: array<vec4<f32>>;  // F (c, n), 4 positions per element
@group(0) @binding(2) var T: texture_storage_2d_array<rgba32float, write>;

@compute @workgroup_size(256, 1, 1)
fn gram_tex_pack_rows4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = (wid.y * P.gx + wid.x) * 256u + li;
    if (i >= P.count) {
        return;
    }
    let x = i % P.width;
    let a = (i / P.width) % P.rows;
    let z = i / (P.width * P.rows);
    let p = z * P.chunk + 4u * x;
    var v = vec4<f32>(0.0);
    if (a < P.c && p < P.n) {
        v = F[(a * P.n + p) / 4u];
    }
    textureStore(T, vec2<u32>(x, a), z, v);
}

@compute @workgroup_size(256, 1, 1)
fn gram_tex_pack_chans4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = (wid.y * P.gx + wid.x) * 256u + li;
    if (i >= P.count) {
        return;
    }
    let quads = P.n / 4u;
    let q = i % quads;
    let b = (i / quads) * 4u;
    var e: array<vec4<f32>, 4>;
    for (var k = 0u; k < 4u; k++) {
        var v = vec4<f32>(0.0);
        if (b + k < P.c) {
            v = F[(b + k) * quads + q];
        }
        e[k] = v;
    }
    for (var j = 0u; j < 4u; j++) {
        let p = q * 4u + j;
        textureStore(T, vec2<u32>(p % P.chunk, b / 4u), p / P.chunk, vec4<f32>(e[0][j], e[1][j], e[2][j], e[3][j]));
    }
}
