// conv3x3_tex_pack4: conv3x3_tex_pack_input (shaders/conv3x3_tex_pack.wgsl) for planes of a
// multiple of 4 pixels (h * w % 4 == 0), reading 4 consecutive pixels of a channel as one vec4
// (on lavapipe each storage-buffer load is a per-lane loop, so 4x fewer loads pay).
//   conv3x3_tex_pack_input4: texel (x + 1, y + 1, c / 4)[c % 4] = x[c][y][x], channels past `c`
//                            zero; conv3x3_tex_pack_input4_masked: times each value's mask bit
//                            (only this entry point binds M). Writes the interior only: the
//                            1-texel border stays as created, zero (WebGPU zero-initialises
//                            textures and no kernel writes it).
// Invocation (q, c4) packs pixels 4q .. 4q + 3 of the plane (row-major, possibly across rows)
// for channels 4 c4 .. 4 c4 + 3: four vec4 loads (a 4x4 transpose) and four texel stores. The
// invocations are numbered c4 * quads + q over a 2-D grid of workgroups, so that small planes
// with many channels still make few workgroups.
// Checked through the conv tests in tests/kernels.rs (Variant::Tex against the CPU reference).

struct Params {
    c: u32, h: u32, w: u32,
    _p0: u32,
    gx: u32,        // workgroups along x of the 2-D grid
    c4: u32,        // ceil(c / 4), the texture layers
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> X: array<vec4<f32>>;  // x: (c, h, w), 4 pixels per element
@group(0) @binding(2) var<storage, read> M: array<u32>;  // m: (c, h, w) bits, 32 per word (relu_mask_pack)
@group(0) @binding(3) var Xp: texture_storage_2d_array<rgba32float, write>; // (w + 2, h + 2) x ceil(c / 4)

// Invocation n's (layer, quad), or quads * c4 (past the work) in .x when it has none.
fn work(wid: vec3<u32>, li: u32) -> vec2<u32> {
    let quads = P.h * P.w / 4u;
    let n = (wid.y * P.gx + wid.x) * 64u + li;
    if (n >= quads * P.c4) {
        return vec2<u32>(P.c4, 0u);
    }
    let layer = n / quads;
    return vec2<u32>(layer, n - layer * quads);
}

// Pixels 4q .. 4q + 3 of channel c (zero past c).
fn quad(c: u32, q: u32) -> vec4<f32> {
    if (c >= P.c) {
        return vec4<f32>(0.0);
    }
    return X[c * (P.h * P.w / 4u) + q];
}

// Their mask bits: pixels 4i .. 4i + 3 are the 4 bits at 4 (i % 8) of word i / 8.
fn quad_mask(c: u32, q: u32) -> vec4<bool> {
    if (c >= P.c) {
        return vec4<bool>(true);
    }
    let i = c * (P.h * P.w / 4u) + q;
    let nib = (M[i >> 3u] >> ((i & 7u) * 4u)) & 15u;
    return (vec4<u32>(nib) & vec4<u32>(1u, 2u, 4u, 8u)) != vec4<u32>(0u);
}

// The 4x4 transpose: pixel 4q + j of channels 4 layer .. + 3 into one texel each.
fn store_quads(layer: u32, q: u32, v: array<vec4<f32>, 4>) {
    for (var j = 0u; j < 4u; j++) {
        let p = q * 4u + j;
        let y = p / P.w;
        let x = p - y * P.w;
        textureStore(Xp, vec2<u32>(x + 1u, y + 1u), layer, vec4<f32>(v[0][j], v[1][j], v[2][j], v[3][j]));
    }
}

@compute @workgroup_size(64, 1, 1)
fn conv3x3_tex_pack_input4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let lq = work(wid, li);
    if (lq.x >= P.c4) {
        return;
    }
    var v: array<vec4<f32>, 4>;
    for (var k = 0u; k < 4u; k++) {
        v[k] = quad(lq.x * 4u + k, lq.y);
    }
    store_quads(lq.x, lq.y, v);
}

@compute @workgroup_size(64, 1, 1)
fn conv3x3_tex_pack_input4_masked(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let lq = work(wid, li);
    if (lq.x >= P.c4) {
        return;
    }
    var v: array<vec4<f32>, 4>;
    for (var k = 0u; k < 4u; k++) {
        let c = lq.x * 4u + k;
        v[k] = select(vec4<f32>(0.0), quad(c, lq.y), quad_mask(c, lq.y));
    }
    store_quads(lq.x, lq.y, v);
}
