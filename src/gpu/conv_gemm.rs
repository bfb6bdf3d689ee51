//! conv3x3's register-blocked implicit-GEMM variant: its tile shapes, their limits and the dispatch.

use super::conv_gen::gemm_source;
use super::kernel::{uniform, Bindings, Source};
use super::Context;

const GEMM_FILE: &str = "conv3x3_gemm.wgsl";

uniform! {
    /// `shaders/conv3x3_gemm.wgsl`'s `Params`.
    pub struct GemmParams { cin: u32, cout: u32, h: u32, w: u32, relu: u32, gx: u32, _p0: u32, _p1: u32 }
}

/// The shape of one GEMM conv kernel (`shaders/conv3x3_gemm.wgsl`'s five tile constants): each
/// of `wx` x `wy` invocations accumulates `rm` output channels x `rn` pixels, over K-chunks of
/// `kt` staged in workgroup memory; a workgroup owns `rm * wy` channels x `rn * wx` pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GemmTile {
    /// Output channels per invocation (4 or 8).
    pub rm: u32,
    /// Pixels per invocation (4 or 8).
    pub rn: u32,
    /// Invocations along pixels.
    pub wx: u32,
    /// Invocations along channels.
    pub wy: u32,
    /// K (input channel x tap) per staged chunk.
    pub kt: u32,
    /// Written out by the generator with every register-block index a constant (no loop over
    /// the block, no array indexed by a variable): a driver that does not unroll WGSL's loops
    /// otherwise keeps the accumulators in memory. Suffix `u` in names.
    pub unroll: bool,
    /// Two staging buffers: the next K-chunk is staged while this one is accumulated, one
    /// barrier per chunk instead of two (twice the workgroup memory). Suffix `d` in names.
    pub double: bool,
}

impl GemmTile {
    /// The file as written: 4 x 4 per invocation, 16 x 16 invocations, 64 x 64 tiles, K-chunks
    /// of 16 (the conv2d_mm design of TensorFlow.js / ONNX Runtime Web, scaled to 256
    /// invocations).
    pub const DEFAULT: GemmTile = GemmTile::new(4, 4, 16, 16, 16, false);

    /// 4 x 4 blocks in 32 x 32 tiles of 8 x 8 invocations (TensorFlow.js's shape): 4x the
    /// workgroups of the default, for small layers.
    pub const SMALL: GemmTile = GemmTile::new(4, 4, 8, 8, 16, false);

    /// The default tile unrolled ([`GemmTile::unroll`]): what untuned GPUs run
    /// ([`super::conv::gpu_default`]).
    pub const DEFAULT_UNROLLED: GemmTile = GemmTile::new(4, 4, 16, 16, 16, true);

    /// [`GemmTile::SMALL`] unrolled.
    pub const SMALL_UNROLLED: GemmTile = GemmTile::new(4, 4, 8, 8, 16, true);

    /// The tiles the autotuner times (those the adapter's limits allow), all unrolled: the
    /// default; 32 x 32 tiles of 8 x 8 invocations (TensorFlow.js's shape, more workgroups for
    /// small layers); 8 x 4 and 4 x 8 blocks (128 x 64 and 64 x 128 tiles); 8 x 8 blocks with
    /// 128 x 128 tiles (the classic SGEMM shape: 16 FMAs per vec4 load, 64 per global load) and with
    /// 64 x 64 tiles of 64 invocations. The same tiles as the template's loops ([`GemmTile::ALL`])
    /// ran 2-8x slower on an H200 (benches/README.md), so the tuner no longer spends time on them.
    pub const CANDIDATES: [GemmTile; 6] = [
        GemmTile::DEFAULT_UNROLLED,
        GemmTile::SMALL_UNROLLED,
        GemmTile::new(8, 4, 16, 16, 16, true),
        GemmTile::new(4, 8, 16, 16, 16, true),
        GemmTile::new(8, 8, 16, 16, 8, true),
        GemmTile::new(8, 8, 8, 8, 16, true),
    ];

    /// For fewer than 16 output channels (conv1_1's backward: 3), where every other tile leaves
    /// most of its channel rows empty: 4 channels x 256 pixels per workgroup of 64 x 1
    /// invocations, unrolled. A tuner candidate for those shapes only (the H200 ran them at 1.8%
    /// of peak on the 32 x 32 tile).
    pub const NARROW: GemmTile = GemmTile::new(4, 4, 64, 1, 8, true);

    /// Every tile: [`GemmTile::CANDIDATES`]'s shapes as the template's loops (the default first:
    /// the file as written), unrolled, and unrolled with double-buffered staging (not yet timed on
    /// a GPU, so not yet a candidate), then [`GemmTile::NARROW`]. For the design study, tests and
    /// `--conv` overrides.
    pub const ALL: [GemmTile; 19] = {
        let mut all = [GemmTile::NARROW; 19];
        let mut i = 0;
        while i < 6 {
            all[i] = GemmTile { unroll: false, ..GemmTile::CANDIDATES[i] };
            all[i + 6] = GemmTile::CANDIDATES[i];
            all[i + 12] = GemmTile { double: true, ..GemmTile::CANDIDATES[i] };
            i += 1;
        }
        all
    };

    /// A tile from its five constants and whether it is unrolled (single-buffered).
    pub const fn new(rm: u32, rn: u32, wx: u32, wy: u32, kt: u32, unroll: bool) -> GemmTile {
        GemmTile { rm, rn, wx, wy, kt, unroll, double: false }
    }

    /// `gemm` for [`GemmTile::DEFAULT`], else `gemm:r{rm}x{rn}w{wx}x{wy}k{kt}`, `u` appended
    /// when unrolled, then `d` when double-buffered.
    pub fn name(&self) -> String {
        if *self == GemmTile::DEFAULT {
            "gemm".into()
        } else {
            format!("gemm:r{}x{}w{}x{}k{}{}", self.rm, self.rn, self.wx, self.wy, self.kt, self.suffix(""))
        }
    }

    /// The pipeline-cache key and snapshot name of its generated source.
    pub fn key(&self) -> String {
        format!("conv3x3_gemm_r{}x{}_w{}x{}_k{}{}", self.rm, self.rn, self.wx, self.wy, self.kt, self.suffix("_"))
    }

    /// `u` if unrolled, then `d` if double-buffered, each after `sep`.
    fn suffix(&self, sep: &str) -> String {
        let flag = |on: bool, c: char| if on { format!("{sep}{c}") } else { String::new() };
        flag(self.unroll, 'u') + &flag(self.double, 'd')
    }

    /// Reads [`GemmTile::name`]'s forms (any case); None for anything else or a tile the kernel
    /// cannot be built with ([`GemmTile::valid`]).
    pub fn parse(s: &str) -> Option<GemmTile> {
        let s = s.trim().to_ascii_lowercase();
        if s == "gemm" {
            return Some(GemmTile::DEFAULT);
        }
        let rest = s.strip_prefix("gemm:r")?;
        let (rm, rest) = rest.split_once('x')?;
        let (rn, rest) = rest.split_once('w')?;
        let (wx, rest) = rest.split_once('x')?;
        let (wy, kt) = rest.split_once('k')?;
        let (kt, double) = kt.strip_suffix('d').map_or((kt, false), |k| (k, true));
        let (kt, unroll) = kt.strip_suffix('u').map_or((kt, false), |k| (k, true));
        let n = |t: &str| t.parse::<u32>().ok();
        let t = GemmTile { rm: n(rm)?, rn: n(rn)?, wx: n(wx)?, wy: n(wy)?, kt: n(kt)?, unroll, double };
        t.valid().then_some(t)
    }

    /// Whether the template can be built with it: blocks of 4 or 8, 1..=1024 invocations, a
    /// K-chunk of 4..=64 that every invocation's staging loop covers evenly enough, and
    /// invocations a multiple of the pixel groups (`rn * wx / 4`), so that an invocation stages
    /// the same pixels throughout.
    pub fn valid(&self) -> bool {
        let block = |r: u32| r == 4 || r == 8;
        block(self.rm)
            && block(self.rn)
            && (1..=64).contains(&self.wx)
            && (1..=64).contains(&self.wy)
            && (1..=1024).contains(&self.invocations())
            && (4..=64).contains(&self.kt)
            // Each invocation stages the same pixels in every round (`staging_pixels`).
            && (4 * self.wy).is_multiple_of(self.rn)
    }

    /// Invocations per workgroup.
    pub fn invocations(&self) -> u32 {
        self.wx * self.wy
    }

    /// (output channels, pixels) per workgroup.
    pub fn tile(&self) -> (u32, u32) {
        (self.rm * self.wy, self.rn * self.wx)
    }

    /// Workgroup memory in bytes: one K-chunk of weights and of gathered inputs (two if
    /// double-buffered).
    pub fn workgroup_bytes(&self) -> u32 {
        let (tm, tn) = self.tile();
        4 * self.kt * (tm + tn) * if self.double { 2 } else { 1 }
    }

    /// FMAs per vec4 workgroup-memory load in the inner loop: rm * rn per (rm + rn) / 4 loads.
    pub fn fmas_per_workgroup_load(&self) -> f64 {
        (self.rm * self.rn) as f64 / ((self.rm + self.rn) / 4) as f64
    }

    /// FMAs per scalar global (storage buffer) load: each chunk loads kt * (tm + tn) values
    /// for kt * tm * tn FMAs.
    pub fn fmas_per_global_load(&self) -> f64 {
        let (tm, tn) = self.tile();
        (tm * tn) as f64 / (tm + tn) as f64
    }

    /// Estimated 32-bit registers per invocation: the accumulators, one chunk row of operands
    /// (rm + rn), and about 24 for indices and addresses.
    pub fn registers(&self) -> u32 {
        self.rm * self.rn + self.rm + self.rn + 24
    }

    /// Why `ctx`-like limits cannot run it, or None.
    pub fn unsupported(&self, limits: &wgpu::Limits) -> Option<String> {
        if self.invocations() > limits.max_compute_invocations_per_workgroup
            || self.wx > limits.max_compute_workgroup_size_x
            || self.wy > limits.max_compute_workgroup_size_y
        {
            return Some(format!("{} needs {}x{} invocations per workgroup", self.name(), self.wx, self.wy));
        }
        if self.workgroup_bytes() > limits.max_compute_workgroup_storage_size {
            return Some(format!("{} needs {} bytes of workgroup memory", self.name(), self.workgroup_bytes()));
        }
        None
    }
}

/// A dispatch of the GEMM kernel of tile `t`: `shaders/conv3x3_gemm.wgsl` itself for the default,
/// else the source [`gemm_source`] generates (built once per context).
pub(crate) fn dispatch_gemm(
    ctx: &Context,
    t: GemmTile,
    entry: &'static str,
    p: &GemmParams,
    binds: &Bindings<'_>,
    g: (u32, u32, u32),
) -> super::op::Dispatch {
    if t == GemmTile::DEFAULT {
        return ctx.dispatch(GEMM_FILE, entry, p, binds, g);
    }
    let key = t.key();
    let gen = || gemm_source(&t);
    ctx.dispatch_source(Source::Generated(&key, &gen), entry, p, binds, g)
}

/// `t`, or the default tile where the adapter's limits do not allow `t`.
pub(crate) fn gemm_tile_for(ctx: &Context, t: GemmTile) -> GemmTile {
    if t.unsupported(&ctx.limits).is_some() {
        GemmTile::DEFAULT
    } else {
        t
    }
}

/// `shaders/conv3x3_gemm.wgsl`'s uniform and workgroup grid for a `cin -> cout` conv at h x w
/// with tile `t`: the pixel blocks spread over x and y, the channel blocks over z.
pub(crate) fn gemm_params(
    ctx: &Context,
    t: GemmTile,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    relu: bool,
) -> (GemmParams, (u32, u32, u32)) {
    let (tm, tn) = t.tile();
    let (gx, gy) = ctx.grid(((h * w) as u32).div_ceil(tn));
    let p = GemmParams {
        cin: cin as u32,
        cout: cout as u32,
        h: h as u32,
        w: w as u32,
        relu: relu as u32,
        gx,
        ..Default::default()
    };
    (p, (gx, gy, (cout as u32).div_ceil(tm)))
}
