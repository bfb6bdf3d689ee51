//! The network on the GPU: its conv layers, the forward pass keeping what the backward needs
//! (tapped activations, ReLU mask bits, max-pool inputs), and the backward to the image.

use crate::error::{Error, Result};
use crate::gpu::{conv, image, pool, relu, tile, Context, Op, Tensor};
use crate::model::{ConvLayer, Edge, LossSettings, Pool, Tap};

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
