//! `--temporal-weight`: the previous frame's output warped into the current frame by optical flow
//! computed on the GPU (gpu::flow), with the mask of the pixels the flow can be trusted on: the
//! target and mask of the temporal loss (Ruder, Dosovitskiy & Brox 2016) and the frame's start.

use crate::error::Result;
use crate::gpu::flow::{flow_warp, Flow, FlowSettings};
use crate::gpu::{Context, Tensor};
use crate::image_io::{resize_exact, Planar};
use std::time::Instant;

/// The previous output in the current frame's coordinates, on the GPU, at one stage's size.
pub(super) struct Warped {
    /// (3, h, w): the previous output sampled at p + w_b(p), w_b the flow current -> previous.
    pub target: Tensor,
    /// (1, h, w): 1 where w_b is consistent with the forward flow and off motion boundaries.
    pub mask: Tensor,
    /// Wall time of the flow (both directions, masks) and the warp, uploads included.
    pub ms: f64,
}

impl Warped {
    /// The previous frame's output `prev_output` warped into `content`'s frame at (w, h), the
    /// flow computed between the content frames `prev_content` and `content` (resized to (w, h)).
    pub(super) fn new(
        ctx: &Context,
        s: &FlowSettings,
        prev_content: &Planar,
        content: &Planar,
        prev_output: &Planar,
        (w, h): (usize, usize),
    ) -> Result<Warped> {
        let t0 = Instant::now();
        let up = |img: &Planar, label: &str| {
            Tensor::from_slice(ctx, [3, h, w], &resize_exact(img, w as u32, h as u32).data, label)
        };
        let prev = up(prev_content, "previous content frame")?;
        let next = up(content, "content frame")?;
        let out = up(prev_output, "previous output")?;
        let flow = Flow::new(ctx, &prev, &next, s)?;
        let target = Tensor::new(ctx, [3, h, w], "warped previous output")?;
        let warp = flow_warp(ctx, &out, &flow.backward, &target);
        ctx.scoped("computing optical flow", || {
            let mut enc = ctx.device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                flow.record(&mut pass);
                warp.record(&mut pass);
            }
            ctx.queue.submit([enc.finish()]);
        })?;
        ctx.wait()?;
        Ok(Warped { target, mask: flow.mask_backward.clone(), ms: t0.elapsed().as_secs_f64() * 1000.0 })
    }

    /// The share of pixels the mask trusts (reads it back).
    pub(super) fn trusted(&self, ctx: &Context) -> Result<f64> {
        let m = self.mask.read(ctx)?;
        Ok(m.iter().filter(|&&v| v > 0.5).count() as f64 / m.len().max(1) as f64)
    }
}
