//! End to end: milliseconds per [`Graph::step`] at a size (the largest that fits when asked),
//! and the GPU memory a render holds (graph built, nothing run).

use super::kernels::{rand_tensor, Rng};
use super::report::mib;
use super::{E2eRow, Memory};
use crate::error::{Error, Result};
use crate::gpu::adam::AdamConfig;
use crate::gpu::Context;
use crate::model::{LossSettings, Model, Pool, Preprocess, Tap};
use crate::runner::{Graph, Net, Targets};
use std::time::Instant;

/// The renderer's defaults for `model` (README "Defaults", torchvision convention).
pub(super) fn default_settings(model: Model) -> LossSettings {
    let style: Vec<Tap> = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
        .iter()
        .map(|n| Tap::parse(model, n).expect("valid layer name"))
        .collect();
    let (cw, sw, tw) = crate::render::default_weights_for(Preprocess::Torch);
    LossSettings {
        model,
        content_layers: vec![Tap::parse(model, "relu4_2").expect("valid layer name")],
        style_layer_weights: vec![1.0; style.len()],
        style_layers: style,
        content_weight: cw,
        style_weight: sw,
        style_loss: Default::default(),
        tv_weight: tw,
        pool: Pool::Avg,
        preprocess: Preprocess::Torch,
    }
}

/// (channels, height, width) of a tap's activation in `m` for an h x w input.
fn tap_shape(m: Model, t: Tap, h: usize, w: usize) -> [usize; 3] {
    match t {
        Tap::Conv(i) | Tap::Relu(i) => {
            let (a, b) = m.conv_size(i, h, w);
            [t.channels(m), a, b]
        }
        Tap::Pool(b) => [t.channels(m), (h >> b) / 2, (w >> b) / 2],
    }
}

/// Net bytes: weights, biases and backward weights.
fn net_bytes(net: &Net) -> u64 {
    net.layers.iter().map(|l| l.weight.buf.size() + l.bias.buf.size() + l.weight_backward.buf.size()).sum()
}

/// The graph at h x w with random image and targets (the values do not change the work: no
/// kernel branches on data except max pooling's argmax), with `net.edge`'s margin around the
/// image as a render has it.
pub(super) fn build_graph(ctx: &Context, net: &Net, s: &LossSettings, h: usize, w: usize) -> Result<(Graph, Memory)> {
    let r = net.edge.margin(s);
    crate::render::check_fits(ctx, w + 2 * r, h + 2 * r)?;
    let mut rng = Rng::new(0xE2E ^ (h * 65_537 + w) as u64);
    let mut targets = Targets { content: vec![], style: vec![] };
    for &t in &s.content_layers {
        targets.content.push(rand_tensor(ctx, &mut rng, tap_shape(s.model, t, h, w), 0.0, 1.0, "content target")?);
    }
    for &t in &s.style_layers {
        let c = t.channels(s.model);
        targets.style.push(rand_tensor(ctx, &mut rng, [c, c, 1], 0.0, 1e-2, "style target")?);
    }
    let init = rng.vec(3 * h * w, 0.0, 1.0);
    let adam = AdamConfig { lr: 0.02, clamp: Some((0.0, 1.0)), ..Default::default() };
    let graph = Graph::new(ctx, net, s, &targets, &init, h, w, adam)?;
    let target_bytes = targets.content.iter().chain(&targets.style).map(|t| t.buf.size()).sum();
    let mem = Memory {
        graph_bytes: graph.gpu_bytes(),
        texture_bytes: graph.texture_bytes(),
        net_bytes: net_bytes(net),
        target_bytes,
    };
    // The graph binds the targets' buffers (wgpu keeps them alive), so they may be dropped here.
    Ok((graph, mem))
}

/// The largest square image whose biggest activation (the image plus `margin` on every side)
/// fits one buffer binding.
fn largest_side(ctx: &Context, margin: usize) -> usize {
    let limit = ctx.limits.max_storage_buffer_binding_size.min(ctx.limits.max_buffer_size);
    (((limit / (64 * 4)) as f64).sqrt().floor() as usize).saturating_sub(2 * margin)
}

pub(super) fn e2e_row(
    ctx: &Context,
    net: &Net,
    s: &LossSettings,
    size: u32,
    iterations: u32,
    budget_s: f64,
    progress: &dyn Fn(&str),
) -> Result<E2eRow> {
    let largest = size == 0;
    let mut side = if largest { largest_side(ctx, net.edge.margin(s)) } else { size as usize };
    // The largest that fits: shrink by 10% on an allocation failure (device memory, not only the
    // binding limit, decides).
    let (graph, memory) = loop {
        match build_graph(ctx, net, s, side, side) {
            Ok(g) => break g,
            Err(e @ (Error::TooLarge(_) | Error::Gpu(_))) if largest && side > 64 => {
                progress(&format!("e2e {side}x{side} does not fit ({e}); trying smaller"));
                side = side * 9 / 10;
            }
            Err(e) => return Err(e),
        }
    };
    let budget_ms = budget_s.max(0.0) * 1e3;
    let time = |k: u32| -> Result<f64> {
        let t = Instant::now();
        graph.step(ctx, k)?;
        ctx.wait()?;
        Ok(t.elapsed().as_secs_f64() * 1e3)
    };
    let first = time(1)?; // builds pipelines lazily compiled by the driver
    let warm = if first > budget_ms { first } else { time(1)? };
    let max_k = if largest { iterations.min(3) } else { iterations };
    let fit = if warm > 0.0 { (budget_ms / warm).floor() } else { f64::from(max_k) };
    let k = (fit.min(f64::from(max_k)) as u32).max(max_k.min(2)).max(1);
    let ms = time(k)? / f64::from(k);
    let l = graph.read_losses(ctx)?;
    if !l.total().is_finite() {
        return Err(Error::Gpu(format!("e2e {side}x{side}: the loss became {} (a kernel is broken)", l.total())));
    }
    progress(&format!(
        "e2e {side}x{side}: {ms:.1} ms/iteration over {k}, {:.1} MiB of GPU buffers",
        mib(memory.total())
    ));
    Ok(E2eRow { requested: size, width: side, height: side, iterations: k, ms_per_iter: ms, memory })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_shapes() {
        let m = Model::Vgg19;
        assert_eq!(tap_shape(m, Tap::parse(m, "relu4_2").unwrap(), 64, 48), [512, 8, 6]);
        assert_eq!(tap_shape(m, Tap::parse(m, "pool1").unwrap(), 64, 48), [64, 32, 24]);
    }
}
