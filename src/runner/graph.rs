//! [`Graph`]: one stage's whole optimisation state (image, losses, gradient, optimiser), its
//! forward, losses and backward recorded once and replayed each iteration in one command buffer.

use super::{backward, Forward, Losses, Net, Targets};
use crate::error::{Error, Result};
use crate::gpu::adam::{Adam, AdamConfig};
use crate::gpu::lbfgs::{Lbfgs, LbfgsConfig};
use crate::gpu::meancov::{self, MeanCovScratch, MeanCovTarget};
use crate::gpu::{gram, reduce, Context, Op, Tensor};
use crate::model::{LossSettings, StyleLoss};
use crate::regional::Regions;

/// The whole optimisation state at one image size: image, graph, losses, gradient, optimiser.
pub struct Graph {
    /// The image being optimised: (3, h, w) RGB in \[0,1\].
    pub x: Tensor,
    /// dLoss/dx after a backward pass.
    pub grad: Tensor,
    /// weight * loss per slot (see [`Losses`]).
    pub losses: Tensor,
    /// Adam's state and update (used unless L-BFGS is set).
    pub adam: Adam,
    /// When set, L-BFGS replaces Adam (see [`Graph::set_lbfgs`]).
    pub lbfgs: Option<Lbfgs>,
    /// Optimiser iterations recorded so far (L-BFGS needs the count).
    iterations: std::cell::Cell<u64>,
    forward: Forward,
    /// Losses and backward, recorded after the forward.
    backward_ops: Vec<Op>,
    /// Scratch kept alive for the ops that bind it.
    _scratch: Vec<Tensor>,
    /// The temporal loss's slot, once [`Graph::add_temporal`] added it.
    temporal_loss: Option<Tensor>,
    n_content: usize,
    n_style: usize,
}

impl Graph {
    /// The graph at (h, w) for `targets`, starting from `init` ((3, h, w), RGB in [0, 1]).
    pub fn new(
        ctx: &Context,
        net: &Net,
        s: &LossSettings,
        targets: &Targets,
        init: &[f32],
        h: usize,
        w: usize,
        adam_cfg: AdamConfig,
    ) -> Result<Graph> {
        Graph::new_with(ctx, net, s, targets, init, h, w, adam_cfg, false)
    }

    /// [`Graph::new`], and with `normalize_gradients` jcjohnson/neural-style's
    /// `-normalize_gradients`: each content and style term's gradient at its tap is divided by
    /// its L1 norm (+ 1e-8) and times the term's weight before the terms are summed (TV is not
    /// normalised; the losses read back stay the plain weighted ones). Each such term then
    /// writes its weight-free gradient into the free gradient buffer and
    /// [`reduce::add_l1_normalized`] adds it, normalised, to the layer's gradient: three more
    /// small dispatches per term, no readback, no extra memory. Off, every term accumulates
    /// straight into the layer's gradient as before. Oracle: `reference::step::evaluate_with`.
    pub fn new_with(
        ctx: &Context,
        net: &Net,
        s: &LossSettings,
        targets: &Targets,
        init: &[f32],
        h: usize,
        w: usize,
        adam_cfg: AdamConfig,
        normalize_gradients: bool,
    ) -> Result<Graph> {
        Graph::new_inner(ctx, net, s, targets, None, init, h, w, adam_cfg, normalize_gradients)
    }

    /// The graph with `regions` masking its terms (None: [`Graph::new_with`]'s).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new_inner(
        ctx: &Context,
        net: &Net,
        s: &LossSettings,
        targets: &Targets,
        regions: Option<&Regions>,
        init: &[f32],
        h: usize,
        w: usize,
        adam_cfg: AdamConfig,
        normalize_gradients: bool,
    ) -> Result<Graph> {
        s.validate()?;
        let regional = regions.and_then(|r| r.styles.as_ref());
        let content_mask = regions.and_then(|r| r.content.as_ref());
        let n = s.convs_needed();
        let x = Tensor::from_slice(ctx, [3, h, w], init, "image")?;
        let grad = Tensor::new(ctx, [3, h, w], "image gradient")?;
        let (nc, ns) = (s.content_layers.len(), s.style_layers.len());
        let losses = Tensor::new(ctx, [nc + ns + 1, 1, 1], "losses")?;
        let fwd = Forward::new(ctx, net, s, &x, net.edge.margin(s), n, true)?;
        let mut ops = vec![];
        let mut scratch = vec![];

        // Loss values (cheap; read back only when asked). Each content layer's weight is split
        // evenly so the total does not depend on how many layers are chosen.
        let cw = s.content_weight / nc.max(1) as f32;
        let mut grams = vec![];
        let meancov = s.style_loss == StyleLoss::MeanCov;
        for (k, t) in targets.style.iter().enumerate().filter(|_| regional.is_none()) {
            let c = s.style_layers[k].channels(s.model);
            if t.len() != s.style_loss.target_len(c) {
                return Err(Error::InvalidArgument(format!(
                    "style target {k} has {} values where the {} style loss at {c} channels needs {}",
                    t.len(),
                    s.style_loss.name(),
                    s.style_loss.target_len(c)
                )));
            }
        }
        // The mean-covariance loss's targets: mu_t, R = C_t^{1/2} and tr C_t, once, on the host.
        let mc_targets = if meancov { MeanCovTarget::all(ctx, s, &targets.style)? } else { vec![] };
        // The MSE terms are computed with their gradients, in the backward (add_taps).
        for &t in s.style_layers.iter().filter(|_| !meancov && regional.is_none()) {
            let a = fwd.tap(t);
            let c = a.shape[0];
            let g = Tensor::new(ctx, [c, c, 1], "gram")?;
            ops.push(gram::gram_forward(ctx, a, &g));
            grams.push(g);
        }
        ops.push(reduce::tv_forward(ctx, &x, &losses, nc + ns, s.tv_weight));

        let max_c = s.style_layers.iter().map(|t| t.channels(s.model)).max().unwrap_or(1);
        let dgram = Tensor::new(ctx, [if meancov { 1 } else { max_c * max_c }, 1, 1], "gram gradient")?;
        let mc_scratch = if meancov { Some(MeanCovScratch::new(ctx, max_c)?) } else { None };

        // Each loss term and its gradient in one pass (mse_forward_backward). Normalised, the
        // gradient is taken weight-free into `free` (a view with the tap's shape) and added
        // normalised and weighted.
        let mut content = |ops: &mut Vec<Op>, k: usize, g: &Tensor, have: bool, free: &Tensor| {
            let a = fwd.tap(s.content_layers[k]);
            let t = &targets.content[k];
            if let Some(m) = content_mask {
                m.record(ctx, ops, k, a, t, &losses, cw, normalize_gradients, g, have, free);
            } else if normalize_gradients {
                let d = Tensor { buf: free.buf.clone(), shape: a.shape };
                ops.push(reduce::mse_forward_backward_split(ctx, a, t, &losses, k, cw, 1.0, &d, false));
                ops.push(reduce::add_l1_normalized(ctx, &d, cw, g, have));
            } else {
                ops.push(reduce::mse_forward_backward(ctx, a, t, &losses, k, cw, g, have));
            }
        };
        let mut style = |ops: &mut Vec<Op>, k: usize, g: &Tensor, have: bool, free: &Tensor| {
            let a = fwd.tap(s.style_layers[k]);
            let c = a.shape[0];
            let sw = s.style_weight * s.style_layer_weights[k];
            if let Some(r) = regional {
                r.record(ctx, ops, k, a, &losses, nc + k, sw, normalize_gradients, g, have, free);
                return;
            }
            let gw = if normalize_gradients { 1.0 } else { sw };
            if let Some(mc) = &mc_scratch {
                let t = &mc_targets[k];
                let slot = nc + k;
                if normalize_gradients {
                    let d = Tensor { buf: free.buf.clone(), shape: a.shape };
                    ops.extend(meancov::meancov_forward_backward(ctx, a, t, mc, &losses, slot, sw, 1.0, &d, false));
                    ops.push(reduce::add_l1_normalized(ctx, &d, sw, g, have));
                } else {
                    ops.extend(meancov::meancov_forward_backward(ctx, a, t, mc, &losses, slot, sw, sw, g, have));
                }
                return;
            }
            let dg = Tensor { buf: dgram.buf.clone(), shape: [c, c, 1] };
            let t = &targets.style[k];
            ops.push(reduce::mse_forward_backward_split(ctx, &grams[k], t, &losses, nc + k, sw, gw, &dg, false));
            if normalize_gradients {
                let d = Tensor { buf: free.buf.clone(), shape: a.shape };
                ops.push(gram::gram_backward(ctx, a, &dg, &d, false));
                ops.push(reduce::add_l1_normalized(ctx, &d, sw, g, have));
            } else {
                ops.push(gram::gram_backward(ctx, a, &dg, g, have));
            }
        };
        backward(ctx, net, s, &fwd, &grad, &mut ops, &mut content, &mut style)?;
        ops.push(reduce::tv_backward(ctx, &x, &grad, s.tv_weight, true));
        scratch.push(dgram);
        scratch.extend(grams);
        scratch.extend(mc_scratch.iter().flat_map(|m| m.tensors().cloned()));
        scratch.extend(mc_targets.into_iter().flat_map(|t| [t.root, t.mean]));
        scratch.extend(regional.iter().flat_map(|r| r.tensors().cloned()));
        scratch.extend(content_mask.iter().flat_map(|r| r.tensors().cloned()));

        let adam = Adam::new(ctx, &x, &grad, adam_cfg)?;
        Ok(Graph {
            x,
            grad,
            losses,
            adam,
            lbfgs: None,
            iterations: Default::default(),
            forward: fwd,
            backward_ops: ops,
            _scratch: scratch,
            temporal_loss: None,
            n_content: nc,
            n_style: ns,
        })
    }

    fn record(&self, pass: &mut wgpu::ComputePass<'_>, optimise: bool) {
        for op in &self.forward.ops {
            op.record(pass);
        }
        for op in &self.backward_ops {
            op.record(pass);
        }
        if optimise {
            match &self.lbfgs {
                Some(l) => {
                    let k = self.iterations.get() + 1;
                    self.iterations.set(k);
                    l.record(pass, k);
                }
                None => self.adam.op.record(pass),
            }
        }
    }

    /// Adds the short-term temporal loss of video frames (Ruder et al. 2016) and its gradient to
    /// every iteration: weight * mean over x's elements of mask² (x - target)², target the
    /// previous frame's output warped into this frame (3, h, w), mask (1, h, w) 1 where the flow
    /// is trusted (gpu::flow). Its value is read with [`Graph::read_temporal_loss`] and is part of
    /// [`Graph::read_losses`].
    pub fn add_temporal(&mut self, ctx: &Context, target: &Tensor, mask: &Tensor, weight: f32) -> Result<()> {
        let out = Tensor::new(ctx, [1, 1, 1], "temporal loss")?;
        let op = crate::gpu::temporal::temporal_loss(ctx, &self.x, target, mask, &out, 0, weight, &self.grad, true)?;
        self.backward_ops.push(op);
        self._scratch.extend([target.clone(), mask.clone()]);
        self.temporal_loss = Some(out);
        Ok(())
    }

    /// The weighted temporal loss of the last forward pass (None without [`Graph::add_temporal`]).
    pub fn read_temporal_loss(&self, ctx: &Context) -> Result<Option<f32>> {
        self.temporal_loss.as_ref().map(|t| Ok(t.read(ctx)?[0])).transpose()
    }

    /// Optimise with L-BFGS (torch.optim.LBFGS's update without line search, as
    /// jcjohnson/neural-style) instead of Adam, from the next step on. Pixels are not clamped
    /// during L-BFGS (its curvature pairs assume unconstrained steps); the output is.
    pub fn set_lbfgs(&mut self, ctx: &Context, cfg: LbfgsConfig) -> Result<()> {
        self.lbfgs = Some(Lbfgs::new(ctx, &self.x, &self.grad, cfg)?);
        self.iterations.set(0);
        Ok(())
    }

    /// Optimiser iterations recorded so far (L-BFGS's iteration number k, which picks the ring
    /// slots; Adam keeps its own count on the GPU).
    pub fn iterations(&self) -> u64 {
        self.iterations.get()
    }

    /// Sets the iteration count (resuming from a checkpoint, with L-BFGS's buffers restored).
    pub fn set_iterations(&self, k: u64) {
        self.iterations.set(k);
    }

    /// Losses and gradient at the current image, without changing it.
    pub fn evaluate(&self, ctx: &Context) -> Result<()> {
        self.submit(ctx, 1, false)?;
        ctx.wait()
    }

    /// `iters` optimiser iterations, one command buffer each, no readback.
    pub fn step(&self, ctx: &Context, iters: u32) -> Result<()> {
        self.submit(ctx, iters, true)
    }

    /// One optimiser iteration that first copies the current image into `save_to` (in the same
    /// command buffer: no readback).
    pub fn step_copying(&self, ctx: &Context, save_to: Option<&Tensor>) -> Result<()> {
        ctx.scoped("running an iteration", || {
            let mut enc = ctx.device.create_command_encoder(&Default::default());
            if let Some(t) = save_to {
                enc.copy_buffer_to_buffer(&self.x.buf, 0, &t.buf, 0, self.x.bytes());
            }
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                self.record(&mut pass, true);
            }
            ctx.queue.submit([enc.finish()]);
        })?;
        ctx.check_lost()
    }

    fn submit(&self, ctx: &Context, iters: u32, optimise: bool) -> Result<()> {
        ctx.scoped("running an iteration", || {
            for _ in 0..iters {
                let mut enc = ctx.device.create_command_encoder(&Default::default());
                {
                    let mut pass = enc.begin_compute_pass(&Default::default());
                    self.record(&mut pass, optimise);
                }
                ctx.queue.submit([enc.finish()]);
            }
        })?;
        ctx.check_lost()
    }

    /// Reads the loss terms of the last forward pass (waits for the GPU).
    pub fn read_losses(&self, ctx: &Context) -> Result<Losses> {
        let v = self.losses.read(ctx)?;
        let (nc, ns) = (self.n_content, self.n_style);
        let temporal = self.read_temporal_loss(ctx)?;
        Ok(Losses { content: v[..nc].to_vec(), style: v[nc..nc + ns].to_vec(), tv: v[nc + ns], temporal })
    }

    /// The current image, (3, h, w) RGB.
    pub fn read_image(&self, ctx: &Context) -> Result<Vec<f32>> {
        self.x.read(ctx)
    }

    /// Bytes of the GPU buffers this graph holds: image, gradient, losses, Adam state,
    /// activations and masks kept for the backward, the two activation/gradient buffers, Gram
    /// matrices and kernel scratch buffers, each counted once; not the network weights or the
    /// targets, which their owners hold, nor textures ([`Graph::texture_bytes`]). What
    /// `tiled::graph_bytes` estimates; for `stylize bench`'s memory figures.
    pub fn gpu_bytes(&self) -> u64 {
        let tensors = [&self.x, &self.grad, &self.losses, &self.adam.m, &self.adam.v, &self.adam.state]
            .into_iter()
            .chain(&self._scratch);
        self.forward.gpu_bytes() + tensors.map(|t| t.buf.size()).sum::<u64>() + crate::gpu::op::ops_bytes(self.ops()).0
    }

    /// Bytes of the textures this graph's kernels bind, each counted once: on CPU drivers the
    /// texture kernels' packed inputs (shared by ops of one shape) and repacked weights.
    pub fn texture_bytes(&self) -> u64 {
        crate::gpu::op::ops_bytes(self.ops()).1
    }

    fn ops(&self) -> impl Iterator<Item = &Op> {
        self.forward.ops.iter().chain(&self.backward_ops).chain([&self.adam.op])
    }
}
