//! The Gatys graph on the GPU: VGG16 or VGG19 truncated after the deepest tap, content/style/TV losses,
//! the backward pass to the image, and the optimiser step, all recorded once as [`Op`]s and
//! replayed every iteration in one command buffer with no readback.

use crate::error::{Error, Result};
use crate::gpu::adam::{Adam, AdamConfig};
use crate::gpu::lbfgs::Lbfgs;
pub use crate::gpu::lbfgs::LbfgsConfig;
use crate::gpu::meancov::{self, MeanCovScratch, MeanCovTarget};
use crate::gpu::{conv, gram, image, pool, reduce, relu, tile, Context, Op, Tensor};
use crate::model::{ConvLayer, Edge, LossSettings, Pool, StyleLoss, Tap};
use crate::regional::Regions;

/// One conv layer on the GPU.
pub struct NetLayer {
    /// Forward weights, OIHW as (cout, cin, 9).
    pub weight: Tensor,
    /// Bias, (cout, 1, 1).
    pub bias: Tensor,
    /// Backward-input weights: transposed and flipped, (cin, cout, 9).
    pub weight_backward: Tensor,
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
}

/// The frozen network on the GPU, conv1_1 onwards, and what it sees beyond the image's edges.
pub struct Net {
    /// The conv layers in order.
    pub layers: Vec<NetLayer>,
    /// The border handling in front of conv1_1 ([`Edge::Zero`] from [`Net::new`]; the renderer
    /// sets `--edge`). Like a `ReflectionPad2d` prepended to the network: with a margin, every
    /// graph built on this net runs at the padded size and takes its taps at the image's
    /// positions, so targets and losses keep their shapes.
    pub edge: Edge,
}

impl Net {
    /// Uploads `convs` (conv1_1 onwards, of either model): each layer's tensors must match its
    /// channel counts, which must chain from 3 input channels. Which model's table they follow
    /// is checked against the loss settings' model when a graph is built.
    pub fn new(ctx: &Context, convs: &[ConvLayer]) -> Result<Net> {
        let mut layers = vec![];
        let mut prev = 3;
        for c in convs {
            let (name, cin, cout) = (c.name.as_str(), c.cin, c.cout);
            if cin != prev || c.weight.len() != cin * cout * 9 || c.bias.len() != cout {
                return Err(Error::InvalidArgument(format!("weights of {name} have the wrong shape")));
            }
            prev = cout;
            layers.push(NetLayer {
                weight: Tensor::from_slice(ctx, [cout, cin, 9], &c.weight, name)?,
                bias: Tensor::from_slice(ctx, [cout, 1, 1], &c.bias, name)?,
                weight_backward: Tensor::from_slice(
                    ctx,
                    [cin, cout, 9],
                    &conv::transpose_flip(&c.weight, cout, cin),
                    name,
                )?,
                cin,
                cout,
            });
        }
        Ok(Net { layers, edge: Edge::Zero })
    }
}

/// One forward pass at one image size, and what its backward needs, stored compactly: the
/// tapped activations (f32, their own buffers), the ReLU-backward mask of every other conv layer
/// at one bit per element, and the inputs of max pools. Every other activation lives in one of
/// two scratch buffers (each as large as the largest activation) only until the next layers
/// overwrite it; the backward then reuses the same two buffers for its gradients. At 2048 px
/// with the default layers that is ~4.4 GiB instead of ~9.2 GiB with every activation kept.
pub(crate) struct Forward {
    /// Network input (3, h + 2r, w + 2r).
    xin: Tensor,
    /// The reflected margin r (0: the convs' zero padding only).
    margin: usize,
    /// With a margin: each tap's activation over the image's positions (cropped), and one
    /// gradient buffer as large as the largest crop (for a backward).
    crops: Vec<(Tap, Tensor)>,
    crop_grad: Option<Tensor>,
    /// Per conv layer: pre-ReLU output if that is tapped (else None).
    pub(crate) pre: Vec<Option<Tensor>>,
    /// Per conv layer: post-ReLU output. Its own buffer when it is a relu tap or (with a
    /// backward) a max-pool input; else a view of a scratch buffer, overwritten later in the pass
    /// (so only its shape may be used after the forward).
    pub(crate) post: Vec<Tensor>,
    /// Per conv layer without a kept pre-ReLU output, with a backward: the bits post > 0.
    pub(crate) masks: Vec<Option<relu::Mask>>,
    /// Pool output after conv i, when computed (own buffer when a pool tap, else scratch).
    pub(crate) pooled: Vec<Option<Tensor>>,
    /// The forward's ping-pong buffers, then the backward's gradient buffers.
    pub(crate) scratch: [Tensor; 2],
    /// Bytes of every buffer allocated here.
    bytes: u64,
    pub(crate) ops: Vec<Op>,
}

impl Forward {
    /// The forward of `n` conv layers over `x` padded by reflection by `margin` pixels (a
    /// multiple of [`LossSettings::alignment`]; 0: none), its taps at the image's positions;
    /// with `backward`, also what a backward needs.
    pub(crate) fn new(
        ctx: &Context,
        net: &Net,
        s: &LossSettings,
        x: &Tensor,
        margin: usize,
        n: usize,
        backward: bool,
    ) -> Result<Forward> {
        assert!(margin.is_multiple_of(s.alignment()), "margin {margin} not aligned");
        if net.layers.len() < n {
            return Err(Error::InvalidArgument(format!(
                "the chosen layers need {} but the weights hold only {} conv layers",
                s.model.convs()[n - 1].0,
                net.layers.len()
            )));
        }
        for (i, (l, &(name, cin, cout))) in net.layers.iter().zip(s.model.convs()).take(n).enumerate() {
            if (l.cin, l.cout) != (cin, cout) {
                return Err(Error::InvalidArgument(format!(
                    "the weights are not {}'s: conv layer {} has {}->{} channels where {name} has {cin}->{cout}",
                    s.model,
                    i + 1,
                    l.cin,
                    l.cout
                )));
            }
        }
        let [_, ih, iw] = x.shape;
        let (h, w) = (ih + 2 * margin, iw + 2 * margin);
        let taps: Vec<Tap> = s.content_layers.iter().chain(&s.style_layers).copied().collect();
        // The largest activation (and the backward's image-sized gradient) sizes the scratch.
        let mut max_len = 3 * h * w;
        for i in 0..n {
            let (ch, cw) = s.model.conv_size(i, h, w);
            max_len = max_len.max(s.model.convs()[i].2 * ch * cw);
        }
        let scratch = [
            Tensor::new(ctx, [max_len, 1, 1], "activations / gradients A")?,
            Tensor::new(ctx, [max_len, 1, 1], "activations / gradients B")?,
        ];
        let xin = Tensor::new(ctx, [3, h, w], "network input")?;
        let mut bytes = scratch[0].bytes() + scratch[1].bytes() + xin.bytes();
        let mut ops = vec![image::preprocess_forward(ctx, &s.preprocess.affine(), x, &xin)];
        let (mut pre, mut post, mut masks, mut pooled) = (vec![], vec![], vec![], vec![]);
        let mut cur = xin.clone();
        // The scratch buffer holding `cur`, if it is not its own buffer.
        let mut cur_slot: Option<usize> = None;
        // A new activation: its own buffer when `keep`, else the scratch buffer not holding `cur`.
        let alloc = |keep: bool,
                     shape: [usize; 3],
                     label: &str,
                     cur_slot: Option<usize>,
                     bytes: &mut u64|
         -> Result<(Tensor, Option<usize>)> {
            if keep {
                let t = Tensor::new(ctx, shape, label)?;
                *bytes += t.bytes();
                Ok((t, None))
            } else {
                let k = if cur_slot == Some(0) { 1 } else { 0 };
                Ok((Tensor { buf: scratch[k].buf.clone(), shape }, Some(k)))
            }
        };
        for i in 0..n {
            let layer = &net.layers[i];
            let [_, ch, cw] = cur.shape;
            let name = s.model.convs()[i].0;
            let shape = [layer.cout, ch, cw];
            let (block, last) = s.model.block_of(i);
            let want_pool = last && (i + 1 < n || taps.contains(&Tap::Pool(block)));
            let keep_post = taps.contains(&Tap::Relu(i)) || (backward && want_pool && s.pool == Pool::Max);
            if taps.contains(&Tap::Conv(i)) {
                let c = Tensor::new(ctx, shape, name)?;
                bytes += c.bytes();
                ops.push(conv::conv3x3_forward(ctx, &cur, &layer.weight, &layer.bias, &c, false));
                let (y, slot) = alloc(keep_post, shape, name, cur_slot, &mut bytes)?;
                ops.push(relu::relu_forward(ctx, &c, &y));
                pre.push(Some(c));
                masks.push(None);
                (cur, cur_slot) = (y, slot);
            } else {
                let (y, slot) = alloc(keep_post, shape, name, cur_slot, &mut bytes)?;
                ops.push(conv::conv3x3_forward(ctx, &cur, &layer.weight, &layer.bias, &y, true));
                pre.push(None);
                if backward {
                    let m = relu::Mask::new(ctx, shape, "relu mask")?;
                    bytes += m.words.bytes();
                    ops.push(relu::relu_mask_pack(ctx, &y, &m));
                    masks.push(Some(m));
                } else {
                    masks.push(None);
                }
                (cur, cur_slot) = (y, slot);
            }
            post.push(cur.clone());
            if want_pool {
                let [c, hh, ww] = cur.shape;
                if hh < 2 || ww < 2 {
                    return Err(Error::InvalidArgument(format!(
                        "the image is too small for the chosen layers: pool{} needs at least 2x2 \
                         pixels but gets {hh}x{ww}; use a larger image size or shallower layers",
                        block + 1
                    )));
                }
                let (p, slot) =
                    alloc(taps.contains(&Tap::Pool(block)), [c, hh / 2, ww / 2], "pool", cur_slot, &mut bytes)?;
                ops.push(pool::pool_forward(ctx, s.pool, &cur, &p));
                (cur, cur_slot) = (p.clone(), slot);
                pooled.push(Some(p));
            } else {
                pooled.push(None);
            }
        }
        let mut f =
            Forward { xin, margin, crops: vec![], crop_grad: None, pre, post, masks, pooled, scratch, bytes, ops };
        if margin > 0 {
            // Each distinct tap over the image's positions: the window at r >> level of the
            // unpadded image's size there (r is aligned, so (h + 2r) >> l = (h >> l) + 2 (r >> l)).
            let mut largest = 0;
            for t in taps {
                if f.crops.iter().any(|(u, _)| *u == t) {
                    continue;
                }
                let a = f.full_tap(t).clone();
                let l = t.level(s.model);
                if ih >> l == 0 || iw >> l == 0 {
                    return Err(Error::InvalidArgument(format!(
                        "the image is too small for the chosen layers: {} has no positions at {iw}x{ih} \
                         pixels; use a larger image size or shallower layers",
                        t.name(s.model)
                    )));
                }
                let c = Tensor::new(ctx, [a.shape[0], ih >> l, iw >> l], "tap over the image")?;
                f.bytes += c.bytes();
                largest = largest.max(c.len());
                f.ops.push(tile::crop_forward(ctx, &a, [margin >> l, margin >> l], &c));
                f.crops.push((t, c));
            }
            if backward {
                let g = Tensor::new(ctx, [largest, 1, 1], "tap gradient over the image")?;
                f.bytes += g.bytes();
                f.crop_grad = Some(g);
            }
        }
        Ok(f)
    }

    /// A tapped activation over the image's positions (its own buffer, valid after the forward).
    pub(crate) fn tap(&self, t: Tap) -> &Tensor {
        match self.crops.iter().find(|(u, _)| *u == t) {
            Some((_, c)) => c,
            None => self.full_tap(t),
        }
    }

    /// A tapped activation over the whole (padded) input.
    fn full_tap(&self, t: Tap) -> &Tensor {
        match t {
            Tap::Conv(i) => self.pre[i].as_ref().expect("pre-ReLU output kept for a conv tap"),
            Tap::Relu(i) => &self.post[i],
            // The b-th pool computed (every pool up to the deepest tap is).
            Tap::Pool(b) => self.pooled.iter().flatten().nth(b).expect("pool computed for a pool tap"),
        }
    }

    /// Bytes of the GPU buffers this forward allocated.
    pub(crate) fn gpu_bytes(&self) -> u64 {
        self.bytes
    }
}

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

/// Records content term `k`'s gradient (w.r.t. its tapped activation) into the tensor given,
/// accumulating when the flag is set; the same for style terms. The whole-image graph and the
/// tiles supply their own loss kernels; [`backward`] decides where each is injected. The last
/// tensor is workspace the term may overwrite: one of the two gradient buffers, free at that
/// moment and as large as any activation (`--normalize-gradients` puts a term's own gradient
/// there before normalising it, so the option costs no memory).
pub(crate) type TermGradient<'a> = &'a mut dyn FnMut(&mut Vec<Op>, usize, &Tensor, bool, &Tensor);

/// Records the loss gradients of every content and style term tapped at `t` into `g` (written
/// fresh if `have` is false, then accumulated; `have` is set once anything was written), with
/// `free` as the terms' workspace (see [`TermGradient`]).
#[allow(clippy::too_many_arguments)]
fn inject(
    s: &LossSettings,
    t: Tap,
    g: &Tensor,
    have: &mut bool,
    free: &Tensor,
    ops: &mut Vec<Op>,
    content: &mut TermGradient<'_>,
    style: &mut TermGradient<'_>,
) {
    for (k, _) in s.content_layers.iter().enumerate().filter(|(_, &c)| c == t) {
        content(ops, k, g, *have, free);
        *have = true;
    }
    for (k, _) in s.style_layers.iter().enumerate().filter(|(_, &c)| c == t) {
        style(ops, k, g, *have, free);
        *have = true;
    }
}

/// Records the backward pass from the taps down to the pixel image, injecting each loss term's
/// gradient at its tap (see [`TermGradient`]). Writes the pixel gradient into `grad` (fresh).
/// The gradients ping-pong between the forward's two scratch buffers (a gradient is a view of
/// one with the activation's shape): `fwd` must have been built with `backward`.
pub(crate) fn backward(
    ctx: &Context,
    net: &Net,
    s: &LossSettings,
    fwd: &Forward,
    grad: &Tensor,
    ops: &mut Vec<Op>,
    mut content: TermGradient<'_>,
    mut style: TermGradient<'_>,
) -> Result<()> {
    let mut add_taps = |ops: &mut Vec<Op>, t: Tap, g: &Tensor, have: &mut bool| {
        // g is a view of one gradient buffer; the other is free at every tap (its gradient was
        // consumed, or it is next written by the layer's backward).
        let free = &fwd.scratch[if g.buf == fwd.scratch[0].buf { 1 } else { 0 }];
        match &fwd.crop_grad {
            None => inject(s, t, g, have, free, ops, &mut content, &mut style),
            Some(buf) => {
                // The terms' gradient over the image's positions, then placed into the padded map.
                let Some((_, c)) = fwd.crops.iter().find(|(u, _)| *u == t) else { return };
                let gc = Tensor { buf: buf.buf.clone(), shape: c.shape };
                let mut any = false;
                inject(s, t, &gc, &mut any, free, ops, &mut content, &mut style);
                if any {
                    let o = fwd.margin >> t.level(s.model);
                    ops.push(tile::crop_backward(ctx, &gc, [o, o], g, *have));
                    *have = true;
                }
            }
        }
    };
    let n = fwd.post.len();
    let bufs = &fwd.scratch;
    let view = |k: usize, shape: [usize; 3]| Tensor { buf: bufs[k].buf.clone(), shape };
    let mut cur = 0usize; // buffer holding the current gradient
    let mut have = false; // whether it holds anything yet
    for i in (0..n).rev() {
        let layer = &net.layers[i];
        let (block, _) = s.model.block_of(i);
        if let Some(p) = &fwd.pooled[i] {
            let gp = view(cur, p.shape);
            add_taps(ops, Tap::Pool(block), &gp, &mut have);
            if have {
                // Max pools read their kept input; average pools only its shape.
                let ga = view(1 - cur, fwd.post[i].shape);
                ops.push(pool::pool_backward(ctx, s.pool, &fwd.post[i], &gp, &ga));
                cur = 1 - cur;
            }
        }
        let ga = view(cur, fwd.post[i].shape);
        add_taps(ops, Tap::Relu(i), &ga, &mut have);
        let in_shape = [layer.cin, ga.shape[1], ga.shape[2]];
        let gin = view(1 - cur, in_shape);
        match &fwd.pre[i] {
            Some(c) => {
                // Unfused: ReLU backward to the pre-activation (masked by c > 0, the same as
                // relu(c) > 0), its taps, then the conv.
                let gc = view(1 - cur, c.shape);
                if have {
                    ops.push(relu::relu_backward(ctx, c, &ga, &gc));
                }
                add_taps(ops, Tap::Conv(i), &gc, &mut have);
                let gin2 = view(cur, in_shape);
                ops.push(conv::conv3x3_backward_input(ctx, &gc, None, &layer.weight_backward, &gin2));
                // cur stays: the input gradient is back in buffer `cur`.
                continue;
            }
            None => {
                let mask = fwd.masks[i].as_ref().expect("a forward built for a backward keeps ReLU masks");
                ops.push(conv::conv3x3_backward_input(ctx, &ga, Some(mask), &layer.weight_backward, &gin));
                cur = 1 - cur;
            }
        }
    }
    let gxin = view(cur, fwd.xin.shape);
    ops.push(image::preprocess_backward(ctx, &s.preprocess.affine(), &gxin, grad));
    Ok(())
}

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
