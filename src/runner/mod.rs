//! The Gatys graph on the GPU: VGG16 or VGG19 truncated after the deepest tap, content/style/TV losses,
//! the backward pass to the image, and the optimiser step, all recorded once as [`Op`]s and
//! replayed every iteration in one command buffer with no readback.
//!
//! `net`: the network's layers, the forward pass that keeps what the backward needs, and the
//! backward to the image; `graph`: [`Graph`], the whole optimisation state of one stage; here:
//! the loss slots ([`Losses`]) and the targets ([`Targets`], [`compute_targets`]).

mod graph;
mod net;

pub use graph::Graph;
pub(crate) use net::{backward, Forward};
pub use net::{Net, NetLayer};

use crate::error::Result;
pub use crate::gpu::lbfgs::LbfgsConfig;
use crate::gpu::meancov;
use crate::gpu::{gram, Context, Op, Tensor};
use crate::model::{LossSettings, StyleLoss};

/// Loss slots in the losses buffer: content taps, then style taps, then TV (and the temporal
/// loss, in its own buffer).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Losses {
    /// Weighted content loss per content tap.
    pub content: Vec<f32>,
    /// Weighted style loss per style tap.
    pub style: Vec<f32>,
    /// Weighted total-variation loss.
    pub tv: f32,
    /// Weighted temporal loss of a video frame ([`Graph::add_temporal`]); None without one.
    pub temporal: Option<f32>,
}

impl Losses {
    /// Sum of the content terms.
    pub fn content_total(&self) -> f32 {
        self.content.iter().sum()
    }
    /// Sum of the style terms.
    pub fn style_total(&self) -> f32 {
        self.style.iter().sum()
    }
    /// Every term summed.
    pub fn total(&self) -> f32 {
        self.content_total() + self.style_total() + self.tv + self.temporal.unwrap_or(0.0)
    }
}

/// Content and style targets, computed once.
pub struct Targets {
    /// Activation of the content image at each content tap.
    pub content: Vec<Tensor>,
    /// The style image's statistic at each style tap: its Gram matrix (c, c, 1), or with
    /// `--style-loss mean-cov` its raw moments [S; mu] (c * c + c, 1, 1).
    pub style: Vec<Tensor>,
}

/// Runs a forward pass of `pixels` ((3, h, w), RGB in \[0,1\]) and returns the activations at
/// `content` taps and the style targets ([`Targets::style`]) at `style` taps.
pub fn compute_targets(
    ctx: &Context,
    net: &Net,
    s: &LossSettings,
    pixels: &[f32],
    h: usize,
    w: usize,
    content: bool,
    style: bool,
) -> Result<Targets> {
    let x = Tensor::from_slice(ctx, [3, h, w], pixels, "target image")?;
    let n = s.convs_needed();
    let mut f = Forward::new(ctx, net, s, &x, net.edge.margin(s), n, false)?;
    let mut ops: Vec<Op> = std::mem::take(&mut f.ops);
    let mut out = Targets { content: vec![], style: vec![] };
    let mut copies = vec![];
    if content {
        for &t in &s.content_layers {
            let a = f.tap(t);
            let dst = Tensor::new(ctx, a.shape, "content target")?;
            copies.push((a.buf.clone(), dst.buf.clone(), 0, a.bytes()));
            out.content.push(dst);
        }
    }
    if style {
        for &t in &s.style_layers {
            let a = f.tap(t);
            let c = a.shape[0];
            let shape = match s.style_loss {
                StyleLoss::Gram => [c, c, 1],
                StyleLoss::MeanCov => [c * c + c, 1, 1],
            };
            let g = Tensor::new(ctx, shape, "style target")?;
            match s.style_loss {
                StyleLoss::Gram => ops.push(gram::gram_forward(ctx, a, &g)),
                StyleLoss::MeanCov => {
                    // [S; mu]: computed apart, then copied into place.
                    let (sm, mu) = (Tensor::new(ctx, [c, c, 1], "moments")?, Tensor::new(ctx, [c, 1, 1], "mean")?);
                    ops.extend(meancov::meancov_moments(ctx, a, &sm, &mu));
                    copies.push((sm.buf.clone(), g.buf.clone(), 0, sm.bytes()));
                    copies.push((mu.buf.clone(), g.buf.clone(), sm.bytes(), mu.bytes()));
                }
            }
            out.style.push(g);
        }
    }
    ctx.scoped("computing the targets", || {
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            for op in &ops {
                op.record(&mut pass);
            }
        }
        for (src, dst, at, bytes) in &copies {
            enc.copy_buffer_to_buffer(src, 0, dst, *at, *bytes);
        }
        ctx.queue.submit([enc.finish()]);
    })?;
    ctx.wait()?;
    Ok(out)
}
