//! The GPU kernel designs by construction: for every storage-buffer variant (and the published
//! designs they follow) the work per invocation and per load, counted from the WGSL, so a
//! reviewer without a GPU can compare them. `stylize bench` prints them above the measured rows;
//! benches/README.md quotes them.

use crate::gpu::conv::GemmTile;

/// One kernel design.
#[derive(Clone, Debug, PartialEq)]
pub struct DesignRow {
    /// Kernel family and variant name as `--kernel`/`STYLIZE_CONV` spell it, e.g. `conv3x3 gemm`.
    pub kernel: String,
    /// Invocations per workgroup, `x x y`.
    pub workgroup: String,
    /// Outputs each invocation accumulates, e.g. `4 ch x 4 px`.
    pub outputs: String,
    /// Outputs per workgroup, e.g. `64 ch x 64 px`.
    pub tile: String,
    /// FMAs per workgroup-memory load in the inner loop (None: not published).
    pub fmas_per_wg_load: Option<f64>,
    /// What one such load brings: `vec4` or `scalar`.
    pub wg_load: &'static str,
    /// FMAs per storage-buffer (global) scalar load, per workgroup.
    pub fmas_per_global_load: f64,
    /// Workgroup memory, bytes (None: not published).
    pub wg_bytes: Option<u32>,
    /// Accumulators per invocation.
    pub accumulators: u32,
    /// Estimated 32-bit registers per invocation (accumulators, one step's operands, ~24 for
    /// indices); None where not derived.
    pub registers: Option<u32>,
    /// Direct-convolution multiply-adds each of its FMAs stands for: 1, or 2.25 / 4 for the
    /// products of Winograd F(2x2) / F(4x4) (whose transforms add loads and stores not counted
    /// here).
    pub conv_fmas_per_fma: f64,
    /// Where it comes from.
    pub source: String,
}

/// Every storage-buffer design: conv3x3 `tiled`, each GEMM tile ([`GemmTile::ALL`]), the Gram
/// kernels, and the published designs the GEMM core follows.
pub fn designs() -> Vec<DesignRow> {
    let mut rows = vec![DesignRow {
        kernel: "conv3x3 tiled".into(),
        workgroup: "8x8".into(),
        outputs: "8 ch x 1 px".into(),
        tile: "8 ch x 64 px".into(),
        // 8 input channels x 9 taps x 8 output channels = 576 FMAs per round, each reading one
        // staged weight plus 72 staged inputs: 648 scalar loads.
        fmas_per_wg_load: Some(576.0 / 648.0),
        wg_load: "scalar",
        // Per round: 8 x 64 x 72 = 36,864 FMAs from 800 inputs (10x10 halo tile x 8) + 576 weights.
        fmas_per_global_load: 36864.0 / 1376.0,
        wg_bytes: Some(4 * (800 + 576)),
        accumulators: 8,
        registers: Some(8 + 2 + 24),
        conv_fmas_per_fma: 1.0,
        source: "shaders/conv3x3.wgsl".into(),
    }];
    for t in GemmTile::ALL {
        let (tm, tn) = t.tile();
        rows.push(DesignRow {
            kernel: format!("conv3x3 {}", t.name()),
            workgroup: format!("{}x{}", t.wx, t.wy),
            outputs: format!("{} ch x {} px", t.rm, t.rn),
            tile: format!("{tm} ch x {tn} px, K {}", t.kt),
            fmas_per_wg_load: Some(t.fmas_per_workgroup_load()),
            wg_load: "vec4",
            fmas_per_global_load: t.fmas_per_global_load(),
            wg_bytes: Some(t.workgroup_bytes()),
            accumulators: t.rm * t.rn,
            registers: Some(t.registers()),
            conv_fmas_per_fma: 1.0,
            source: if t == GemmTile::DEFAULT {
                "shaders/conv3x3_gemm.wgsl".into()
            } else {
                format!("shaders/generated/{}.wgsl", t.key())
            },
        });
    }
    // Winograd on buffers: the products run on any tile (here the default and the largest); the
    // transforms are streaming kernels (shaders/conv3x3_wino_gemm.wgsl).
    for (m, gain) in [(2, 2.25), (4, 4.0)] {
        for t in [GemmTile::DEFAULT, GemmTile::CANDIDATES[4]] {
            let v = crate::gpu::Variant::GemmWino(m, t);
            let (tm, tn) = t.tile();
            rows.push(DesignRow {
                kernel: format!("conv3x3 {v}"),
                workgroup: format!("{}x{}", t.wx, t.wy),
                outputs: format!("{} ch x {} tl", t.rm, t.rn),
                tile: format!("{tm} ch x {tn} tiles, K {}", t.kt),
                fmas_per_wg_load: Some(t.fmas_per_workgroup_load()),
                wg_load: "vec4",
                fmas_per_global_load: t.fmas_per_global_load(),
                wg_bytes: Some(t.workgroup_bytes()),
                accumulators: t.rm * t.rn,
                registers: Some(t.registers()),
                conv_fmas_per_fma: gain,
                source: "shaders/conv3x3_wino_gemm.wgsl + conv3x3_gemm_batched".into(),
            });
        }
    }
    rows.push(DesignRow {
        kernel: "gram tiled".into(),
        workgroup: "16x16".into(),
        outputs: "1 entry".into(),
        tile: "16 x 16 entries".into(),
        // 16 positions: 16 FMAs from 32 staged scalars.
        fmas_per_wg_load: Some(0.5),
        wg_load: "scalar",
        fmas_per_global_load: 4096.0 / 512.0,
        wg_bytes: Some(2176),
        accumulators: 1,
        registers: Some(1 + 2 + 24),
        conv_fmas_per_fma: 1.0,
        source: "shaders/gram.wgsl".into(),
    });
    rows.push(DesignRow {
        kernel: "gram gemm".into(),
        workgroup: "16x16".into(),
        outputs: "4 x 4 entries".into(),
        tile: "64 x 64 entries, K 16".into(),
        fmas_per_wg_load: Some(8.0),
        wg_load: "vec4",
        fmas_per_global_load: 65536.0 / 2048.0,
        wg_bytes: Some(8192),
        accumulators: 16,
        registers: Some(16 + 8 + 24),
        conv_fmas_per_fma: 1.0,
        source: "shaders/gram_gemm.wgsl".into(),
    });
    // TensorFlow.js / ONNX Runtime Web conv2d_mm (read, not copied): 8x8 invocations of 4x4
    // outputs from vec4 loads, 32x32 output tiles; ONNX Runtime gates an 8x16-invocation, 4x2
    // output variant to NVIDIA.
    rows.push(DesignRow {
        kernel: "conv2d_mm (TF.js, ORT Web)".into(),
        workgroup: "8x8".into(),
        outputs: "4 x 4".into(),
        tile: "32 x 32".into(),
        fmas_per_wg_load: Some(8.0),
        wg_load: "vec4",
        fmas_per_global_load: 32.0 * 32.0 / 64.0,
        wg_bytes: None,
        accumulators: 16,
        registers: None,
        conv_fmas_per_fma: 1.0,
        source: "published".into(),
    });
    rows.push(DesignRow {
        kernel: "conv2d_mm NVIDIA (ORT Web)".into(),
        workgroup: "8x16".into(),
        outputs: "4 x 2".into(),
        tile: "32 x 32".into(),
        fmas_per_wg_load: None,
        wg_load: "",
        fmas_per_global_load: 32.0 * 32.0 / 64.0,
        wg_bytes: None,
        accumulators: 8,
        registers: None,
        conv_fmas_per_fma: 1.0,
        source: "published".into(),
    });
    rows
}

/// The designs as a table.
pub fn designs_table(rows: &[DesignRow]) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:<38} {:<6} {:<14} {:<26} {:>13} {:>15} {:>9} {:>5} {:>5} {:>9}  source",
        "design",
        "wg",
        "per invocation",
        "per workgroup",
        "FMA/wg load",
        "FMA/global load",
        "wg bytes",
        "acc",
        "regs",
        "conv/FMA"
    );
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    for r in rows {
        let _ = writeln!(
            o,
            "{:<38} {:<6} {:<14} {:<26} {:>13} {:>15.1} {:>9} {:>5} {:>5} {:>9.2}  {}",
            r.kernel,
            r.workgroup,
            r.outputs,
            r.tile,
            opt(r.fmas_per_wg_load.map(|f| format!("{f:.2} {}", r.wg_load))),
            r.fmas_per_global_load,
            opt(r.wg_bytes.map(|b| b.to_string())),
            r.accumulators,
            opt(r.registers.map(|b| b.to_string())),
            r.conv_fmas_per_fma,
            r.source
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_gemm_tile_is_listed_and_outworks_tiled_per_load() {
        let rows = designs();
        let tiled = rows.iter().find(|r| r.kernel == "conv3x3 tiled").unwrap();
        for t in GemmTile::ALL {
            let r = rows.iter().find(|r| r.kernel == format!("conv3x3 {}", t.name())).expect("listed");
            assert!(r.fmas_per_wg_load.unwrap() >= 8.0 * tiled.fmas_per_wg_load.unwrap());
        }
        let text = designs_table(&rows);
        assert_eq!(text.lines().count(), rows.len() + 1);
        assert!(text.contains("conv3x3 gemm:r8x8w16x16k8") && text.contains("16.00 vec4"), "{text}");
    }
}
