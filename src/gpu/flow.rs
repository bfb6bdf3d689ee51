//! Dense optical flow on the GPU (`shaders/flow.wgsl`): coarse-to-fine Horn-Schunck with warping,
//! forward and backward, and the forward-backward consistency mask of Ruder et al. 2016; CPU
//! twins in `reference::flow`.
//!
//! A flow is a (2, h, w) tensor, plane 0 = u (x displacement in pixels), plane 1 = v; the forward
//! flow w_f maps pixel p of `prev` to p + w_f(p) in `next` (prev(p) ~ next(p + w_f(p))), the
//! backward flow w_b maps `next` to `prev`. So `prev` warped into `next`'s frame is
//! `flow_warp(prev, backward)`.

use super::kernel::uniform;
use super::{Context, Op, Tensor};
use crate::error::{Error, Result};
use std::collections::HashMap;

const FILE: &str = "flow.wgsl";

uniform! {
    /// `shaders/flow.wgsl`'s `Params`: output size (w, h), source size (sw, sh) of a resampling,
    /// channels c of a warp, alpha^2 of the Horn-Schunck step, flow scales (sx, sy) of an upsample.
    pub struct FlowParams { w: u32, h: u32, sw: u32, sh: u32, c: u32, alpha2: f32, sx: f32, sy: f32 }
}

/// The solver's knobs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FlowSettings {
    /// Horn-Schunck smoothness weight alpha, for luma in \[0,1\]: larger is smoother.
    pub alpha: f64,
    /// Linearisations (warps) per pyramid level.
    pub warps: u32,
    /// Jacobi iterations per warp.
    pub iterations: u32,
    /// The coarsest level's shorter side is at least this (pixels): a level is halved while its
    /// shorter side is >= 2 * min_size.
    pub min_size: usize,
}

impl Default for FlowSettings {
    /// alpha 0.2, 3 warps of 50 iterations, coarsest side >= 8: on smooth textures of 48x64
    /// this recovers translations up to ~4 px and a 3 degree rotation to < 0.2 px (tests/flow.rs).
    fn default() -> Self {
        FlowSettings { alpha: 0.2, warps: 3, iterations: 50, min_size: 8 }
    }
}

impl FlowSettings {
    /// alpha^2, the constant in the step's denominator.
    pub fn alpha2(&self) -> f64 {
        self.alpha * self.alpha
    }

    /// A one-line error for settings the solver cannot use.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidArgument(m));
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return bad(format!("flow smoothness (--flow-smoothness) must be a positive number, got {}", self.alpha));
        }
        if self.warps == 0 || self.iterations == 0 {
            return bad(format!(
                "flow warps and iterations (--flow-warps, --flow-iterations) must be at least 1, got {} and {}",
                self.warps, self.iterations
            ));
        }
        if self.min_size < 2 {
            return bad(format!("flow coarsest size must be at least 2 pixels, got {}", self.min_size));
        }
        Ok(())
    }
}

/// The (h, w) of every pyramid level, finest first: halved (rounding up) while the shorter side
/// is >= 2 * `min_size`.
pub fn pyramid(h: usize, w: usize, min_size: usize) -> Vec<(usize, usize)> {
    let mut v = vec![(h, w)];
    while let Some(&(lh, lw)) = v.last() {
        if lh.min(lw) < 2 * min_size.max(1) {
            break;
        }
        v.push((lh.div_ceil(2), lw.div_ceil(2)));
    }
    v
}

fn hw(t: &Tensor) -> (usize, usize) {
    (t.shape[1], t.shape[2])
}

/// 16x16 workgroups over the output (w, h).
fn groups(p: &FlowParams) -> (u32, u32, u32) {
    (p.w.div_ceil(16), p.h.div_ceil(16), 1)
}

fn params(h: usize, w: usize) -> FlowParams {
    FlowParams { w: w as u32, h: h as u32, ..Default::default() }
}

/// y (1, h, w) = luma of x (3, h, w) RGB in \[0,1\].
pub fn flow_luma(ctx: &Context, x: &Tensor, y: &Tensor) -> Op {
    let (h, w) = hw(y);
    assert_eq!(x.shape, [3, h, w]);
    assert_eq!(y.shape[0], 1);
    let p = params(h, w);
    ctx.op(ctx.dispatch(FILE, "flow_luma", &p, &[("X", x), ("Y", y)], groups(&p)))
}

/// y (1, ceil(sh/2), ceil(sw/2)) = 2x2 means of x (1, sh, sw).
pub fn flow_downsample(ctx: &Context, x: &Tensor, y: &Tensor) -> Op {
    let ((sh, sw), (h, w)) = (hw(x), hw(y));
    assert_eq!((x.shape[0], y.shape[0], h, w), (1, 1, sh.div_ceil(2), sw.div_ceil(2)));
    let p = FlowParams { sw: sw as u32, sh: sh as u32, ..params(h, w) };
    ctx.op(ctx.dispatch(FILE, "flow_downsample", &p, &[("X", x), ("Y", y)], groups(&p)))
}

/// y (c, h, w) = x (c, h, w) sampled bilinearly at p + f(p), f (2, h, w).
pub fn flow_warp(ctx: &Context, x: &Tensor, f: &Tensor, y: &Tensor) -> Op {
    let (h, w) = hw(x);
    assert_eq!(f.shape, [2, h, w]);
    assert_eq!(y.shape, x.shape);
    let p = FlowParams { c: x.shape[0] as u32, ..params(h, w) };
    ctx.op(ctx.dispatch(FILE, "flow_warp", &p, &[("X", x), ("F", f), ("Y", y)], groups(&p)))
}

/// g (3, h, w) = (Ix, Iy, It) of image a (1, h, w) and b (1, h, w) warped by f (2, h, w).
pub fn flow_gradients(ctx: &Context, a: &Tensor, bw: &Tensor, f: &Tensor, g: &Tensor) -> Op {
    let (h, w) = hw(a);
    assert_eq!((a.shape, bw.shape, f.shape, g.shape), ([1, h, w], [1, h, w], [2, h, w], [3, h, w]));
    let p = params(h, w);
    ctx.op(ctx.dispatch(FILE, "flow_gradients", &p, &[("A", a), ("B", bw), ("F", f), ("Y", g)], groups(&p)))
}

/// y (2, h, w) = one Jacobi step from flow f, linearised at f0, with gradients g (3, h, w).
pub fn flow_hs_step(ctx: &Context, f: &Tensor, f0: &Tensor, g: &Tensor, y: &Tensor, alpha2: f64) -> Op {
    let (h, w) = hw(f);
    assert_eq!((f.shape, f0.shape, g.shape, y.shape), ([2, h, w], [2, h, w], [3, h, w], [2, h, w]));
    let p = FlowParams { alpha2: alpha2 as f32, ..params(h, w) };
    ctx.op(ctx.dispatch(FILE, "flow_hs_step", &p, &[("F", f), ("F0", f0), ("G", g), ("Y", y)], groups(&p)))
}

/// y (2, h, w) = the flow x (2, sh, sw) resampled bilinearly, u scaled by w/sw, v by h/sh.
pub fn flow_upsample(ctx: &Context, x: &Tensor, y: &Tensor) -> Op {
    let ((sh, sw), (h, w)) = (hw(x), hw(y));
    assert_eq!((x.shape[0], y.shape[0]), (2, 2));
    let p = FlowParams {
        sw: sw as u32,
        sh: sh as u32,
        sx: (w as f64 / sw as f64) as f32,
        sy: (h as f64 / sh as f64) as f32,
        ..params(h, w)
    };
    ctx.op(ctx.dispatch(FILE, "flow_upsample", &p, &[("X", x), ("Y", y)], groups(&p)))
}

/// y (2, h, w) = 0.
pub fn flow_zero(ctx: &Context, y: &Tensor) -> Op {
    let (h, w) = hw(y);
    assert_eq!(y.shape[0], 2);
    let p = params(h, w);
    ctx.op(ctx.dispatch(FILE, "flow_zero", &p, &[("Y", y)], groups(&p)))
}

/// m (1, h, w) = 1 where flow f (A -> B) agrees with fb (B -> A) and is off motion boundaries,
/// else 0 (shaders/flow.wgsl's header has the thresholds).
pub fn flow_consistency(ctx: &Context, f: &Tensor, fb: &Tensor, m: &Tensor) -> Op {
    let (h, w) = hw(f);
    assert_eq!((f.shape, fb.shape, m.shape), ([2, h, w], [2, h, w], [1, h, w]));
    let p = params(h, w);
    ctx.op(ctx.dispatch(FILE, "flow_consistency", &p, &[("F", f), ("B", fb), ("Y", m)], groups(&p)))
}

/// Forward and backward flow between two (3, h, w) RGB images in \[0,1\] and their consistency
/// masks, every op built once: [`Flow::record`] it whenever the images' contents change.
pub struct Flow {
    /// The settings it was built with.
    pub settings: FlowSettings,
    /// prev -> next, (2, h, w).
    pub forward: Tensor,
    /// next -> prev, (2, h, w).
    pub backward: Tensor,
    /// (1, h, w) in prev's frame: 1 where `forward` is trusted.
    pub mask_forward: Tensor,
    /// (1, h, w) in next's frame: 1 where `backward` is trusted (where `prev` warped by
    /// `backward` shows what `next` shows).
    pub mask_backward: Tensor,
    ops: Vec<Op>,
    schedule: Vec<usize>,
}

/// Builds the op list with each distinct (kernel, bindings) op created once.
struct Builder<'a> {
    ctx: &'a Context,
    ops: Vec<Op>,
    index: HashMap<String, usize>,
    schedule: Vec<usize>,
}

impl Builder<'_> {
    fn push(&mut self, key: String, make: impl FnOnce(&Context) -> Op) {
        let i = match self.index.get(&key) {
            Some(&i) => i,
            None => {
                self.ops.push(make(self.ctx));
                self.index.insert(key, self.ops.len() - 1);
                self.ops.len() - 1
            }
        };
        self.schedule.push(i);
    }
}

/// Per-level scratch one direction's solve needs: three flows it rotates through (the
/// linearisation point and the two Jacobi ping-pong buffers).
struct Level {
    flows: [Tensor; 3],
}

impl Flow {
    /// Ops computing both flows and both masks of `prev` and `next` (3, h, w), with scratch.
    pub fn new(ctx: &Context, prev: &Tensor, next: &Tensor, s: &FlowSettings) -> Result<Flow> {
        s.validate()?;
        let (h, w) = hw(prev);
        if prev.shape != [3, h, w] || next.shape != prev.shape {
            return Err(Error::InvalidArgument(format!(
                "optical flow needs two RGB images of one size, got {:?} and {:?}",
                prev.shape, next.shape
            )));
        }
        let sizes = pyramid(h, w, s.min_size);
        let mut b = Builder { ctx, ops: vec![], index: HashMap::new(), schedule: vec![] };
        let pyr = |img: &Tensor, name: &str, b: &mut Builder<'_>| -> Result<Vec<Tensor>> {
            let mut v: Vec<Tensor> = vec![];
            for (l, &(lh, lw)) in sizes.iter().enumerate() {
                let t = Tensor::new(ctx, [1, lh, lw], &format!("flow {name} luma level {l}"))?;
                let (src, dst) = (v.last().cloned(), t.clone());
                match src {
                    None => b.push(format!("luma {name}"), |c| flow_luma(c, img, &dst)),
                    Some(s) => b.push(format!("down {name} {l}"), |c| flow_downsample(c, &s, &dst)),
                }
                v.push(t);
            }
            Ok(v)
        };
        let pa = pyr(prev, "prev", &mut b)?;
        let pb = pyr(next, "next", &mut b)?;
        // Scratch shared by the two directions (they run one after the other).
        let mut warped = vec![];
        let mut grads = vec![];
        for (l, &(lh, lw)) in sizes.iter().enumerate() {
            warped.push(Tensor::new(ctx, [1, lh, lw], &format!("flow warped level {l}"))?);
            grads.push(Tensor::new(ctx, [3, lh, lw], &format!("flow gradients level {l}"))?);
        }
        let solve = |dir: &str, a: &[Tensor], bp: &[Tensor], b: &mut Builder<'_>| -> Result<Tensor> {
            let mut levels = vec![];
            for (l, &(lh, lw)) in sizes.iter().enumerate() {
                let t = |k: usize| Tensor::new(ctx, [2, lh, lw], &format!("flow {dir} level {l} buffer {k}"));
                levels.push(Level { flows: [t(0)?, t(1)?, t(2)?] });
            }
            let mut cur = 0;
            for l in (0..sizes.len()).rev() {
                let fl = &levels[l].flows;
                if l + 1 == sizes.len() {
                    b.push(format!("{dir} zero {l}"), |c| flow_zero(c, &fl[0]));
                } else {
                    let src = levels[l + 1].flows[cur].clone();
                    b.push(format!("{dir} up {l} {cur}"), |c| flow_upsample(c, &src, &fl[0]));
                }
                cur = 0;
                for _ in 0..s.warps {
                    let p = cur;
                    let (bw, g) = (&warped[l], &grads[l]);
                    b.push(format!("{dir} warp {l} {p}"), |c| flow_warp(c, &bp[l], &fl[p], bw));
                    b.push(format!("{dir} grad {l} {p}"), |c| flow_gradients(c, &a[l], bw, &fl[p], g));
                    let (q, r) = ((p + 1) % 3, (p + 2) % 3);
                    let (mut src, mut dst) = (p, q);
                    for _ in 0..s.iterations {
                        b.push(format!("{dir} hs {l} {src} {p} {dst}"), |c| {
                            flow_hs_step(c, &fl[src], &fl[p], g, &fl[dst], s.alpha2())
                        });
                        src = dst;
                        dst = if dst == q { r } else { q };
                    }
                    cur = src;
                }
            }
            Ok(levels.swap_remove(0).flows[cur].clone())
        };
        let forward = solve("forward", &pa, &pb, &mut b)?;
        let backward = solve("backward", &pb, &pa, &mut b)?;
        let mask_forward = Tensor::new(ctx, [1, h, w], "flow mask forward")?;
        let mask_backward = Tensor::new(ctx, [1, h, w], "flow mask backward")?;
        b.push("mask forward".into(), |c| flow_consistency(c, &forward, &backward, &mask_forward));
        b.push("mask backward".into(), |c| flow_consistency(c, &backward, &forward, &mask_backward));
        Ok(Flow { settings: *s, forward, backward, mask_forward, mask_backward, ops: b.ops, schedule: b.schedule })
    }

    /// Records the whole computation (both flows, both masks) into `pass`.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        for &i in &self.schedule {
            self.ops[i].record(pass);
        }
    }

    /// Runs it now and waits.
    pub fn run(&self, ctx: &Context) -> Result<()> {
        ctx.scoped("computing optical flow", || {
            let mut enc = ctx.device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                self.record(&mut pass);
            }
            ctx.queue.submit([enc.finish()]);
        })?;
        ctx.wait()
    }

    /// Dispatches one [`Flow::record`] makes.
    pub fn dispatches(&self) -> usize {
        self.schedule.iter().map(|&i| self.ops[i].dispatches.len()).sum()
    }
}

/// The forward and backward flow (and masks) of `prev` -> `next`, computed now: [`Flow::new`]
/// then [`Flow::run`]. Build a [`Flow`] once instead when the same sizes recur.
pub fn flow(ctx: &Context, prev: &Tensor, next: &Tensor, s: &FlowSettings) -> Result<Flow> {
    let f = Flow::new(ctx, prev, next, s)?;
    f.run(ctx)?;
    Ok(f)
}
