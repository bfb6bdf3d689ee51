//! The WGSL sources, embedded in the binary so it runs from anywhere, and the list of the
//! sources generated at run time.

use crate::gpu::kernel::{Uniform, UniformLayout};

/// (file name, source) of every shader in `shaders/`.
pub const ALL: &[(&str, &str)] = &[
    ("adam.wgsl", include_str!("../shaders/adam.wgsl")),
    ("conv3x3.wgsl", include_str!("../shaders/conv3x3.wgsl")),
    ("conv3x3_gemm.wgsl", include_str!("../shaders/conv3x3_gemm.wgsl")),
    ("conv3x3_tex_pack.wgsl", include_str!("../shaders/conv3x3_tex_pack.wgsl")),
    ("conv3x3_tex_pack4.wgsl", include_str!("../shaders/conv3x3_tex_pack4.wgsl")),
    ("conv3x3_tex_weights.wgsl", include_str!("../shaders/conv3x3_tex_weights.wgsl")),
    ("conv3x3_wino_gemm.wgsl", include_str!("../shaders/conv3x3_wino_gemm.wgsl")),
    ("ema.wgsl", include_str!("../shaders/ema.wgsl")),
    ("flow.wgsl", include_str!("../shaders/flow.wgsl")),
    ("gram.wgsl", include_str!("../shaders/gram.wgsl")),
    ("gram_gemm.wgsl", include_str!("../shaders/gram_gemm.wgsl")),
    ("gram_tex_finish.wgsl", include_str!("../shaders/gram_tex_finish.wgsl")),
    ("gram_tex_pack.wgsl", include_str!("../shaders/gram_tex_pack.wgsl")),
    ("gram_tex_pack4.wgsl", include_str!("../shaders/gram_tex_pack4.wgsl")),
    ("image.wgsl", include_str!("../shaders/image.wgsl")),
    ("lbfgs.wgsl", include_str!("../shaders/lbfgs.wgsl")),
    ("mask.wgsl", include_str!("../shaders/mask.wgsl")),
    ("meancov.wgsl", include_str!("../shaders/meancov.wgsl")),
    ("peak.wgsl", include_str!("../shaders/peak.wgsl")),
    ("pool.wgsl", include_str!("../shaders/pool.wgsl")),
    ("reduce.wgsl", include_str!("../shaders/reduce.wgsl")),
    ("relu.wgsl", include_str!("../shaders/relu.wgsl")),
    ("temporal.wgsl", include_str!("../shaders/temporal.wgsl")),
    ("tile.wgsl", include_str!("../shaders/tile.wgsl")),
];

/// The source of `shaders/<file>`; panics on a name not in [`ALL`].
pub fn source(file: &str) -> &'static str {
    ALL.iter()
        .find(|(f, _)| *f == file)
        .map(|(_, s)| *s)
        .unwrap_or_else(|| panic!("no shader named {file} is embedded (add it to shaders::ALL)"))
}

/// The Rust uniform struct of each file in [`ALL`] that declares one (tests/shaders.rs checks each
/// against the WGSL struct, field by field).
pub fn uniforms() -> Vec<(&'static str, UniformLayout)> {
    use crate::gpu::*;
    vec![
        ("adam.wgsl", adam::AdamParams::LAYOUT),
        ("conv3x3.wgsl", conv::ConvParams::LAYOUT),
        ("conv3x3_gemm.wgsl", conv::GemmParams::LAYOUT),
        ("conv3x3_tex_pack.wgsl", conv::TexPackParams::LAYOUT),
        ("conv3x3_tex_pack4.wgsl", conv::TexPack4Params::LAYOUT),
        ("conv3x3_tex_weights.wgsl", conv::TexWeightsParams::LAYOUT),
        ("conv3x3_wino_gemm.wgsl", conv_wino_gemm::WinoGemmParams::LAYOUT),
        ("ema.wgsl", ema::EmaParams::LAYOUT),
        ("flow.wgsl", flow::FlowParams::LAYOUT),
        ("gram.wgsl", gram::GramParams::LAYOUT),
        ("gram_gemm.wgsl", gram::GramGemmParams::LAYOUT),
        ("gram_tex_finish.wgsl", gram::GramTexFinishParams::LAYOUT),
        ("gram_tex_pack.wgsl", gram::GramTexPackParams::LAYOUT),
        ("gram_tex_pack4.wgsl", gram::GramTexPackParams::LAYOUT),
        ("image.wgsl", image::ImageParams::LAYOUT),
        ("lbfgs.wgsl", lbfgs::LbfgsParams::LAYOUT),
        ("mask.wgsl", mask::MaskParams::LAYOUT),
        ("meancov.wgsl", meancov::MeanCovParams::LAYOUT),
        ("peak.wgsl", peak::PeakParams::LAYOUT),
        ("pool.wgsl", pool::PoolParams::LAYOUT),
        ("reduce.wgsl", reduce::ReduceParams::LAYOUT),
        ("relu.wgsl", relu::ReluParams::LAYOUT),
        ("temporal.wgsl", temporal::TemporalParams::LAYOUT),
        ("tile.wgsl", tile::TileParams::LAYOUT),
    ]
}

/// One WGSL source generated at run time: its pipeline-cache key, entry point, text and uniform.
pub struct Generated {
    /// The cache key, also the snapshot's file name (`shaders/generated/<key>.wgsl`).
    pub key: String,
    /// The entry point.
    pub entry: &'static str,
    /// The WGSL.
    pub source: String,
    /// The Rust struct of its uniform block.
    pub uniform: UniformLayout,
    /// The subgroup size it is specialised for (0: none).
    pub subgroup: u32,
}

/// Every generated source the wrappers can select (with the default tuning): the texture conv
/// kernels, the texture Gram kernels and the GEMM conv tiles.
pub fn generated() -> Vec<Generated> {
    use crate::gpu::{conv_gen, gram_gen};
    let conv = conv_gen::variants().into_iter().map(|(key, entry, source, subgroup)| Generated {
        key,
        entry,
        source,
        uniform: conv_gen::TexConvParams::LAYOUT,
        subgroup,
    });
    let gram = gram_gen::variants().into_iter().map(|(key, entry, source, subgroup)| Generated {
        uniform: if entry == "gram_tex_forward" {
            gram_gen::GramTexForwardParams::LAYOUT
        } else {
            gram_gen::GramTexBackwardParams::LAYOUT
        },
        key,
        entry,
        source,
        subgroup,
    });
    // The GEMM tiles do not use subgroups: listed under 0.
    let gemm = conv_gen::gemm_variants().into_iter().map(|(key, source)| Generated {
        key,
        entry: "conv3x3_gemm_forward",
        source,
        uniform: crate::gpu::conv::GemmParams::LAYOUT,
        subgroup: 0,
    });
    conv.chain(gram).chain(gemm).collect()
}
