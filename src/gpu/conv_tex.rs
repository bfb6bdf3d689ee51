//! conv3x3's texture variants (`Tex`, `Wino`, `Wino4`, for CPU Vulkan drivers): what they need
//! from an adapter, their kernel shapes and plans, and the pack-then-conv dispatch.

use super::conv_gen::{entry as generated_entry, kernel_source, TexConvParams};
use super::kernel::{uniform, Bindings, Source};
use super::{relu::Mask, Context, KernelOverrides, Op, Tensor, Variant};

const PACK_FILE: &str = "conv3x3_tex_pack.wgsl";
const PACK4_FILE: &str = "conv3x3_tex_pack4.wgsl";
const WEIGHTS_FILE: &str = "conv3x3_tex_weights.wgsl";

uniform! {
    /// `shaders/conv3x3_tex_pack.wgsl`'s `Params`.
    pub struct TexPackParams { c: u32, h: u32, w: u32, _p0: u32 }
}

uniform! {
    /// `shaders/conv3x3_tex_pack4.wgsl`'s `Params`.
    pub struct TexPack4Params { c: u32, h: u32, w: u32, _p0: u32, gx: u32, c4: u32 }
}

uniform! {
    /// `shaders/conv3x3_tex_weights.wgsl`'s `Params`.
    pub struct TexWeightsParams { cout: u32, cin: u32, cout_pad: u32, cin4: u32, bias_row: u32 }
}

/// What the texture variant needs from an adapter (see [`TexCaps::of`]).
#[derive(Clone, Debug, PartialEq)]
pub struct TexCaps {
    /// The adapter's type (the texture variants are the default on CPU adapters).
    pub device_type: wgpu::DeviceType,
    /// The subgroup size when the device has `Features::SUBGROUP` and one fixed subgroup size
    /// the kernel supports (4..=64, a power of two); `None` otherwise.
    pub subgroup_size: Option<u32>,
    /// The adapter's largest 2-D texture side.
    pub max_texture_dimension_2d: u32,
    /// The adapter's most texture array layers.
    pub max_texture_array_layers: u32,
}

impl TexCaps {
    /// The capabilities of `ctx`'s adapter.
    pub fn of(ctx: &Context) -> TexCaps {
        let (lo, hi) = (ctx.info.subgroup_min_size, ctx.info.subgroup_max_size);
        let subgroup_size = (ctx.features.contains(wgpu::Features::SUBGROUP)
            && lo == hi
            && hi.is_power_of_two()
            && (4..=WG).contains(&hi))
        .then_some(hi);
        TexCaps {
            device_type: ctx.info.device_type,
            subgroup_size,
            max_texture_dimension_2d: ctx.limits.max_texture_dimension_2d,
            max_texture_array_layers: ctx.limits.max_texture_array_layers,
        }
    }
}

/// Why the texture variant cannot run a `cin -> cout` conv at `h x w` on an adapter with `caps`,
/// or `None` when it can. The packed input is a (w + 2) x (h + 2) texture with ceil(cin / 4)
/// layers; the packed weights are cout (rounded up to the channel block) x (9 ceil(cin / 4) + 1).
pub fn tex_unsupported(caps: &TexCaps, cin: usize, cout: usize, h: usize, w: usize) -> Option<String> {
    let Some(sg) = caps.subgroup_size else {
        return Some("the adapter has no fixed-size subgroups".into());
    };
    if cin == 0 || cout == 0 || h == 0 || w == 0 {
        return Some("empty tensor".into());
    }
    let plan = TexPlan::new(sg, cout, h, w);
    let dim = caps.max_texture_dimension_2d as usize;
    let cin4 = cin.div_ceil(4);
    if w + 2 > dim || h + 2 > dim {
        return Some(format!("{h}x{w} + border exceeds the {dim}-texel texture limit"));
    }
    if cin4 > caps.max_texture_array_layers as usize {
        return Some(format!(
            "{cin} channels need {cin4} texture layers, over the limit of {}",
            caps.max_texture_array_layers
        ));
    }
    if plan.cout_pad(cout) > dim || cin4 * 9 + 1 > dim {
        return Some(format!("the {cout}x{cin} weights do not fit a {dim}-texel texture"));
    }
    None
}

/// Why the Winograd texture variant `v` (`Wino` or `Wino4`) cannot run where [`tex_unsupported`]
/// says `Tex` can, or `None` when it can: its weights take (m + 2)^2 rows per 4 input channels.
pub fn wino_unsupported(caps: &TexCaps, v: Variant, cin: usize, cout: usize, h: usize, w: usize) -> Option<String> {
    wino_unsupported_with(caps, &KernelOverrides::default(), v, cin, cout, h, w)
}

/// [`wino_unsupported`] with the Winograd tuning of `o`.
pub(crate) fn wino_unsupported_with(
    caps: &TexCaps,
    o: &KernelOverrides,
    v: Variant,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
) -> Option<String> {
    if let Some(why) = tex_unsupported(caps, cin, cout, h, w) {
        return Some(why);
    }
    let plan = tex_plan_with(caps, o, v, cout, h, w);
    let dim = caps.max_texture_dimension_2d as usize;
    if plan.cout_pad(cout) > dim || cin.div_ceil(4) * plan.cfg.weight_rows() + 1 > dim {
        return Some(format!("the {cout}x{cin} Winograd weights do not fit a {dim}-texel texture"));
    }
    None
}

/// The plan of a texture variant (`Tex`, `Wino`, `Wino4`) for `cout` outputs at `h x w`.
pub fn tex_plan(caps: &TexCaps, v: Variant, cout: usize, h: usize, w: usize) -> TexPlan {
    tex_plan_with(caps, &KernelOverrides::default(), v, cout, h, w)
}

/// [`tex_plan`] with the Winograd tuning of `o`.
pub(crate) fn tex_plan_with(
    caps: &TexCaps,
    o: &KernelOverrides,
    v: Variant,
    cout: usize,
    h: usize,
    w: usize,
) -> TexPlan {
    let sg = caps.subgroup_size.unwrap_or(8);
    let cfg = match v {
        Variant::Wino => TexConfig::wino_tuned(sg, 2, cout, h, w, o.wino_tune),
        Variant::Wino4 => TexConfig::wino_tuned(sg, 4, cout, h, w, o.wino4_tune),
        _ => TexConfig::for_shape(sg, cout, h, w),
    };
    TexPlan::for_config(cfg, cout, h, w)
}

/// Invocations per workgroup of the generated kernel.
pub(crate) const WG: u32 = 64;

/// Shape of the generated texture kernel: each invocation computes `co` output channels at `py`
/// vertically adjacent pixels (`wino` = m > 0: at `py / m` vertically adjacent m x m Winograd
/// tiles, so m columns x `py` rows); `sg` is the subgroup size the weights are broadcast over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TexConfig {
    /// Output channels per invocation.
    pub co: u32,
    /// Output rows per invocation.
    pub py: u32,
    /// Subgroup size.
    pub sg: u32,
    /// Winograd output tile side m (2 or 4), or 0 for the direct kernel.
    pub wino: u32,
}

impl TexConfig {
    /// The configuration used for `cout` output channels at `h x w`, tuned on lavapipe (Zen 4,
    /// 2 cores) with benches/conv.rs: 32 x 4 beats 16 x 4, 16 x 8 and 8 x 8 by 5-10% from 64
    /// channels up; 8 x 8 suits the 3-channel output of conv1_1's backward. (`acc + dot(v, w)`
    /// beat explicit fma chains by 2x.)
    pub fn for_shape(sg: u32, cout: usize, _h: usize, _w: usize) -> TexConfig {
        let (co, py) = match cout {
            0..=8 => (8, 8),
            9..=16 => (16, 4),
            _ => (32, 4),
        };
        TexConfig { co: co.max(sg).div_ceil(sg) * sg, py, sg, wino: 0 }
    }

    /// The Winograd F(m x m, 3x3) configuration (m = 2 or 4), tuned on lavapipe (Zen 4, 2 cores)
    /// with benches/conv.rs at 64-256 px (its `STYLIZE_WINO_TUNE`, `STYLIZE_WINO4_TUNE`): for
    /// F(2x2) 32 channels x 2 tiles beat 16 x 2 by 10-20% and 8 x 2, 16 x 1, 32 x 1, 8 x 4 by
    /// more; for F(4x4) 16 x 4 tiles (4 x 16 pixels) reach 100-142 GFLOP/s of direct-conv work
    /// from 32x32 up but leave too few workgroups below, where 16 x 2 is best (100 at 16x16;
    /// 32 x 1, 16 x 1, 8 x 2, 8 x 4 and 16 x 3 lose). See [`wino_source`](super::conv_gen::wino_source).
    pub fn wino_for_shape(sg: u32, m: u32, cout: usize, h: usize, w: usize) -> TexConfig {
        TexConfig::wino_tuned(sg, m, cout, h, w, None)
    }

    /// [`TexConfig::wino_for_shape`] with (channels, tiles) forced by `tune` when given.
    pub fn wino_tuned(sg: u32, m: u32, _cout: usize, h: usize, w: usize, tune: Option<(u32, u32)>) -> TexConfig {
        let (co, tiles) = wino_tuning(m, h.min(w), tune);
        TexConfig { co: co.max(sg).div_ceil(sg) * sg, py: m * tiles, sg, wino: m }
    }

    /// Output columns per invocation.
    fn px(&self) -> u32 {
        self.wino.max(1)
    }

    /// Rows of the packed weights texture per 4 input channels (taps or Winograd points).
    pub(crate) fn weight_rows(&self) -> usize {
        match self.wino {
            0 => 9,
            m => ((m + 2) * (m + 2)) as usize,
        }
    }

    /// The pipeline-cache key of the generated kernel (its source is a function of this).
    pub fn key(&self) -> String {
        format!("conv3x3_tex_wino{}_co{}_py{}_sg{}", self.wino, self.co, self.py, self.sg)
    }
}

/// (channels, tiles) per invocation of the Winograd F(m x m) kernel for images whose shorter
/// side is `side`, unless `tune` (the context's `wino_tune` / `wino4_tune` override, for tuning
/// with benches/conv.rs) says otherwise.
fn wino_tuning(m: u32, side: usize, tune: Option<(u32, u32)>) -> (u32, u32) {
    tune.filter(|&(co, tiles)| co > 0 && tiles > 0).unwrap_or(match (m, side) {
        (4, 32..) => (16, 4),
        (4, _) => (16, 2),
        _ => (32, 2),
    })
}

/// How a texture-kernel dispatch covers a `cout x h x w` output: a workgroup of 64 invocations
/// is `tw` x `th` x `tz` of them; each (tw x th) slab computes a tile of tw x (th * py) pixels for
/// one block of `co` output channels, and the workgroup's `tz` slabs take consecutive channel
/// blocks (so small images still fill a workgroup). tw * th is a multiple of the subgroup size,
/// so a subgroup never mixes channel blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TexPlan {
    /// The kernel's configuration.
    pub cfg: TexConfig,
    /// Invocations per workgroup along x.
    pub tw: u32,
    /// Invocations per workgroup along y.
    pub th: u32,
    /// Channel blocks per workgroup.
    pub tz: u32,
}

impl TexPlan {
    /// The configuration for `cout` output channels at `h x w`, and the (tw, th, tz) that
    /// computes the fewest values past the image edge and past cout (ties: wider tiles).
    pub fn new(sg: u32, cout: usize, h: usize, w: usize) -> TexPlan {
        TexPlan::for_config(TexConfig::for_shape(sg, cout, h, w), cout, h, w)
    }

    /// As [`TexPlan::new`] for a given configuration.
    pub fn for_config(cfg: TexConfig, cout: usize, h: usize, w: usize) -> TexPlan {
        let sg = cfg.sg;
        let mut best = (u64::MAX, TexPlan { cfg, tw: WG, th: 1, tz: 1 });
        for tw in (0..=6).rev().map(|k| 1u32 << k) {
            for th in (0..=6).map(|k| 1u32 << k) {
                let lanes = tw * th;
                if lanes > WG || lanes % sg != 0 {
                    continue;
                }
                let tz = WG / lanes;
                let rows = (th * cfg.py) as u64;
                let cols = (tw * cfg.px()) as u64;
                let chans = (tz * cfg.co) as u64;
                let cost = (w as u64).div_ceil(cols)
                    * cols
                    * ((h as u64).div_ceil(rows) * rows)
                    * ((cout as u64).div_ceil(chans) * chans);
                if cost < best.0 {
                    best = (cost, TexPlan { cfg, tw, th, tz });
                }
            }
        }
        best.1
    }

    /// Output channels rounded up to the workgroup's channel blocks (the packed weights' width).
    pub fn cout_pad(&self, cout: usize) -> usize {
        let b = (self.tz * self.cfg.co) as usize;
        cout.div_ceil(b) * b
    }

    fn groups(&self, cout: usize, h: usize, w: usize) -> (u32, u32, u32) {
        (
            (w as u32).div_ceil(self.tw * self.cfg.px()),
            (h as u32).div_ceil(self.th * self.cfg.py),
            self.cout_pad(cout) as u32 / (self.tz * self.cfg.co),
        )
    }
}

/// Every configuration [`TexConfig::for_shape`] can return for subgroup size `sg` (so the tests
/// can validate each generated source).
pub fn tex_configs(sg: u32) -> Vec<TexConfig> {
    let mut v: Vec<TexConfig> = [1usize, 16, 64].iter().map(|&c| TexConfig::for_shape(sg, c, 64, 64)).collect();
    v.dedup();
    v.push(TexConfig::wino_for_shape(sg, 2, 64, 64, 64));
    v.push(TexConfig::wino_for_shape(sg, 4, 64, 64, 64));
    v.push(TexConfig::wino_for_shape(sg, 4, 64, 16, 16));
    v
}

/// An rgba32float texture both written as storage and read by textureLoad, and its view (2-D
/// array or 2-D); `shared_key`: take it from the context's scratch textures under that key.
fn tex_texture(
    ctx: &Context,
    label: &str,
    w: u32,
    h: u32,
    layers: u32,
    array: bool,
    shared_key: Option<&str>,
) -> wgpu::TextureView {
    let desc = wgpu::TextureDescriptor {
        label: Some(label),
        size: wgpu::Extent3d { width: w, height: h, depth_or_array_layers: layers },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::Rgba32Float,
        usage: wgpu::TextureUsages::STORAGE_BINDING | wgpu::TextureUsages::TEXTURE_BINDING,
        view_formats: &[],
    };
    let t = match shared_key {
        Some(k) => ctx.scratch_texture(k, &desc),
        None => ctx.device.create_texture(&desc),
    };
    t.create_view(&wgpu::TextureViewDescriptor {
        label: Some(label),
        dimension: Some(if array { wgpu::TextureViewDimension::D2Array } else { wgpu::TextureViewDimension::D2 }),
        ..Default::default()
    })
}

/// The texture variant: pack `x` (times its `mask` bits if given) into a texture, then the conv.
/// `w` is (cout, cin, 9) as in the forward (for the backward: the transposed weights).
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv3x3_tex(
    ctx: &Context,
    plan: &TexPlan,
    x: &Tensor,
    mask: Option<&Mask>,
    w: &Tensor,
    b: Option<&Tensor>,
    y: &Tensor,
    relu: bool,
) -> Op {
    let [cin, h, wd] = x.shape;
    let cout = y.shape[0];
    let cin4 = cin.div_ceil(4) as u32;
    let cfg = &plan.cfg;
    let cout_pad = plan.cout_pad(cout) as u32;
    let (h32, w32) = (h as u32, wd as u32);

    // Weights, packed once now (the queue runs this before any later submission).
    let wrows = cin4 * cfg.weight_rows() as u32 + 1;
    let wview = tex_texture(ctx, "conv3x3 packed weights", cout_pad, wrows, 1, false, None);
    {
        let entry = match cfg.wino {
            0 => "conv3x3_tex_pack_weights",
            2 => "conv3x3_wino_pack_weights",
            _ => "conv3x3_wino4_pack_weights",
        };
        let p = TexWeightsParams { cout: cout as u32, cin: cin as u32, cout_pad, cin4, bias_row: wrows - 1 };
        let mut ds = vec![ctx.dispatch(
            WEIGHTS_FILE,
            entry,
            &p,
            &[("Wt", w), ("Wp", &wview)],
            (cout_pad.div_ceil(8), (wrows - 1).div_ceil(8), 1),
        )];
        // Without a bias the bias row stays zero, as created.
        if let Some(b) = b {
            let binds: &Bindings<'_> = &[("B", b), ("Wp", &wview)];
            ds.push(ctx.dispatch(WEIGHTS_FILE, "conv3x3_tex_pack_bias", &p, binds, (cout_pad.div_ceil(64), 1, 1)));
        }
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            for d in &ds {
                d.record(&mut pass);
            }
        }
        ctx.queue.submit([enc.finish()]);
    }

    // Input packing, recorded with the conv. The packed input lives only from this op's pack
    // dispatch to its conv dispatch, so every op of the same input shape shares one texture.
    let key = format!("conv3x3_tex input {}x{}x{cin4}", w32 + 2, h32 + 2);
    let xview = tex_texture(ctx, "conv3x3 packed input", w32 + 2, h32 + 2, cin4, true, Some(&key));
    let mut binds: Vec<(&str, &dyn super::Bindable)> = vec![("X", x), ("Xp", &xview)];
    if let Some(m) = mask {
        binds.push(("M", &m.words));
    }
    let pack = if (h * wd) % 4 == 0 {
        // 4 pixels per load; the border stays zero from creation.
        let entry = if mask.is_some() { "conv3x3_tex_pack_input4_masked" } else { "conv3x3_tex_pack_input4" };
        let (gx, gy) = ctx.grid((h * wd / 4 * cin4 as usize).div_ceil(64) as u32);
        let p = TexPack4Params { c: cin as u32, h: h32, w: w32, gx, c4: cin4, ..Default::default() };
        ctx.dispatch(PACK4_FILE, entry, &p, &binds, (gx, gy, 1))
    } else {
        let entry = if mask.is_some() { "conv3x3_tex_pack_input_masked" } else { "conv3x3_tex_pack_input" };
        let p = TexPackParams { c: cin as u32, h: h32, w: w32, ..Default::default() };
        ctx.dispatch(PACK_FILE, entry, &p, &binds, ((w32 + 2).div_ceil(8), (h32 + 2).div_ceil(8), cin4))
    };

    let conv = {
        let p = TexConvParams {
            cin4,
            cout: cout as u32,
            h: h32,
            w: w32,
            relu: relu as u32,
            tw: plan.tw,
            th: plan.th,
            tz: plan.tz,
        };
        let (key, src) = (cfg.key(), || kernel_source(cfg));
        let binds: &Bindings<'_> = &[("Xp", &xview), ("Wp", &wview), ("Y", y)];
        ctx.dispatch_source(Source::Generated(&key, &src), generated_entry(cfg), &p, binds, plan.groups(cout, h, wd))
    };
    // The bind groups keep the textures alive (the input one is also the context's).
    Op {
        dispatches: vec![pack, conv],
        scratch: vec![],
        textures: vec![wview.texture().clone(), xview.texture().clone()],
    }
}
