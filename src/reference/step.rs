//! Whole-pipeline reference: the input transform and a whole Gatys step (losses and image
//! gradient), from the device-independent [`crate::model`] only.

use crate::model::{reflect_fold, reflect_pad, Affine, ConvLayer, LossSettings, Pool, StyleLoss, Tap};

/// y\[c\] = x\[src\[c\]\] * a\[c\] + b\[c\] on a (3, h, w) image padded by reflection by r pixels
/// on every side: (3, h + 2r, w + 2r) out.
pub fn preprocess_forward(x: &[f64], t: &Affine, h: usize, w: usize, r: usize) -> Vec<f64> {
    let xp = reflect_pad(x, 3, h, w, r);
    let plane = xp.len() / 3;
    let mut y = vec![0.0; xp.len()];
    for c in 0..3 {
        for p in 0..plane {
            y[c * plane + p] = xp[t.src[c] as usize * plane + p] * t.a[c] as f64 + t.b[c] as f64;
        }
    }
    y
}

/// dx (3, h, w) from dy (3, h + 2r, w + 2r) of [`preprocess_forward`].
pub fn preprocess_backward(dy: &[f64], t: &Affine, h: usize, w: usize, r: usize) -> Vec<f64> {
    let plane = dy.len() / 3;
    let mut dxp = vec![0.0; dy.len()];
    for c in 0..3 {
        for p in 0..plane {
            dxp[t.src[c] as usize * plane + p] += dy[c * plane + p] * t.a[c] as f64;
        }
    }
    reflect_fold(&dxp, 3, h, w, r)
}

use super::*;

/// Every activation of one forward pass, in f64.
pub struct RefForward {
    /// (c, h, w) of each activation below.
    pub conv: Vec<(Vec<f64>, [usize; 3])>,
    /// Post-ReLU output of each conv layer.
    pub relu: Vec<Vec<f64>>,
    /// Pool output after each conv layer, where a pool follows it.
    pub pooled: Vec<Option<(Vec<f64>, [usize; 3])>>,
}

impl RefForward {
    /// The activation at tap `t` and its (c, h, w).
    pub fn tap(&self, t: Tap) -> (&[f64], [usize; 3]) {
        match t {
            Tap::Conv(i) => (&self.conv[i].0, self.conv[i].1),
            Tap::Relu(i) => (&self.relu[i], self.conv[i].1),
            Tap::Pool(b) => {
                // The b-th pool computed (every pool up to the deepest tap is).
                let (v, s) = self.pooled.iter().flatten().nth(b).expect("pool");
                (v, *s)
            }
        }
    }
}

fn w64(c: &ConvLayer) -> (Vec<f64>, Vec<f64>) {
    (c.weight.iter().map(|&v| v as f64).collect(), c.bias.iter().map(|&v| v as f64).collect())
}

/// The network forward pass on pixels x (3, h, w) in \[0,1\] padded by reflection by `r` pixels
/// (0: none), truncated after `n` convs; the activations are the padded image's (see [`crop`]).
pub fn forward(net: &[ConvLayer], s: &LossSettings, x: &[f64], h: usize, w: usize, r: usize, n: usize) -> RefForward {
    let taps: Vec<Tap> = s.content_layers.iter().chain(&s.style_layers).copied().collect();
    let mut cur = preprocess_forward(x, &s.preprocess.affine(), h, w, r);
    let (mut ch, mut hh, mut ww) = (3, h + 2 * r, w + 2 * r);
    let mut out = RefForward { conv: vec![], relu: vec![], pooled: vec![] };
    for (i, layer) in net.iter().enumerate().take(n) {
        let (name, cin, cout) = s.model.convs()[i];
        assert_eq!((layer.cin, layer.cout), (cin, cout), "{name} of {}", s.model);
        let (wt, b) = w64(layer);
        let c = conv3x3_forward(&cur, ch, hh, ww, &wt, &b, layer.cout, false);
        let r = relu_forward(&c);
        ch = layer.cout;
        out.conv.push((c, [ch, hh, ww]));
        cur = r.clone();
        out.relu.push(r);
        let (block, last) = s.model.block_of(i);
        if last && (i + 1 < n || taps.contains(&Tap::Pool(block))) {
            let p = match s.pool {
                Pool::Avg => avgpool2x2_forward(&cur, ch, hh, ww),
                Pool::Max => maxpool2x2_forward(&cur, ch, hh, ww),
            };
            hh /= 2;
            ww /= 2;
            cur = p.clone();
            out.pooled.push(Some((p, [ch, hh, ww])));
        } else {
            out.pooled.push(None);
        }
    }
    out
}

/// The activation at tap `t` over the image's positions only: the padded map's window at
/// r >> level of the unpadded image's size there, (c, h >> level, w >> level). With r = 0, the
/// whole map. r must be a multiple of 2^level.
pub fn crop(f: &RefForward, s: &LossSettings, t: Tap, h: usize, w: usize, r: usize) -> (Vec<f64>, [usize; 3]) {
    let (a, [c, ph, pw]) = f.tap(t);
    let l = t.level(s.model);
    assert_eq!(r % (1 << l), 0, "margin {r} not aligned to level {l}");
    let (o, hh, ww) = (r >> l, h >> l, w >> l);
    (crop_forward(a, c, ph, pw, [o, o], [hh, ww]), [c, hh, ww])
}

/// Content activations and style targets of an image (over its positions only, the image
/// padded by reflection by `r` pixels first): Gram matrices, or with [`StyleLoss::MeanCov`] the
/// raw moments of `meancov::meancov_moments`.
pub fn targets(
    net: &[ConvLayer],
    s: &LossSettings,
    x: &[f64],
    h: usize,
    w: usize,
    r: usize,
) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let f = forward(net, s, x, h, w, r, s.convs_needed());
    let content = s.content_layers.iter().map(|&t| crop(&f, s, t, h, w, r).0).collect();
    let style = s
        .style_layers
        .iter()
        .map(|&t| {
            let (a, [c, hh, ww]) = crop(&f, s, t, h, w, r);
            match s.style_loss {
                StyleLoss::Gram => gram_forward(&a, c, hh * ww),
                StyleLoss::MeanCov => super::meancov::meancov_moments(&a, c, hh * ww),
            }
        })
        .collect();
    (content, style)
}

/// Loss terms (content per layer, style per layer, tv; each times its weight) and dLoss/dx,
/// written as plainly as possible: the oracle of `runner::Graph`. With a margin `r`, the network
/// sees the image padded by reflection and the losses its positions only (TV stays on the image).
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    net: &[ConvLayer],
    s: &LossSettings,
    content_targets: &[Vec<f64>],
    style_targets: &[Vec<f64>],
    x: &[f64],
    h: usize,
    w: usize,
    r: usize,
) -> (Vec<f64>, Vec<f64>, f64, Vec<f64>) {
    evaluate_with(net, s, content_targets, style_targets, x, h, w, r, false)
}

/// [`evaluate`], and with `normalize_gradients` jcjohnson/neural-style's `-normalize_gradients`:
/// each content and style term's weight-free gradient at its tap divided by its L1 norm
/// ([`add_l1_normalized`]), then times the term's weight, before the terms are summed; TV
/// untouched. The losses returned are the plain weighted ones either way (the oracle of
/// `runner::Graph::new_with`).
#[allow(clippy::too_many_arguments)]
pub fn evaluate_with(
    net: &[ConvLayer],
    s: &LossSettings,
    content_targets: &[Vec<f64>],
    style_targets: &[Vec<f64>],
    x: &[f64],
    h: usize,
    w: usize,
    r: usize,
    normalize_gradients: bool,
) -> (Vec<f64>, Vec<f64>, f64, Vec<f64>) {
    evaluate_masked(net, s, content_targets, None, StyleTerms::Plain(style_targets), x, h, w, r, normalize_gradients)
}

/// What the style terms of [`evaluate_masked`] compare.
pub enum StyleTerms<'a> {
    /// One target per style tap (a Gram, or mean-cov moments).
    Plain(&'a [Vec<f64>]),
    /// Regional styles (`--style-mask`): per style k, its Gram target per style tap, its mask at
    /// the image's (h, w) in \[0,1\], and its weight b_k. Each (k, tap) is its own term on the
    /// masked Gram ([`super::mask::masked_gram_forward`]) with the mask average-pooled down to
    /// the tap; a tap's loss is the sum over k.
    Regional {
        /// `targets[k][l]`: style k's Gram at style tap l.
        targets: &'a [Vec<Vec<f64>>],
        /// `masks[k]`: h * w values.
        masks: &'a [Vec<f64>],
        /// `weights[k]`: b_k.
        weights: &'a [f64],
    },
}

/// `mask` (h * w values) average-pooled down to tap `t`'s resolution (hh, ww).
fn mask_at(s: &LossSettings, t: Tap, mask: &[f64], (h, w): (usize, usize), (hh, ww): (usize, usize)) -> Vec<f64> {
    let (mut m, mut mh, mut mw) = (mask.to_vec(), h, w);
    for _ in 0..t.level(s.model) {
        m = avgpool2x2_forward(&m, 1, mh, mw);
        (mh, mw) = pool_out(mh, mw);
    }
    assert_eq!((mh, mw), (hh, ww), "mask at {}", t.name(s.model));
    m
}

/// [`evaluate_with`] with masks (the oracle of `runner::Graph::new_regional`): `style` says
/// what the style terms compare, and `content_mask` (h * w values), when given, weights each
/// content term: cw * sum_{c,p} m_p (F - P)^2 / (C * sum_p m_p), m pooled to the tap.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_masked(
    net: &[ConvLayer],
    s: &LossSettings,
    content_targets: &[Vec<f64>],
    content_mask: Option<&[f64]>,
    style: StyleTerms<'_>,
    x: &[f64],
    h: usize,
    w: usize,
    r: usize,
    normalize_gradients: bool,
) -> (Vec<f64>, Vec<f64>, f64, Vec<f64>) {
    // A term's gradient at its tap from its weight-free gradient `g`.
    let weigh = |g: Vec<f64>, weight: f64| {
        if normalize_gradients {
            let mut d = vec![0.0; g.len()];
            add_l1_normalized(&mut d, &g, weight);
            d
        } else {
            g.iter().map(|v| v * weight).collect()
        }
    };
    let n = s.convs_needed();
    let f = forward(net, s, x, h, w, r, n);
    // A tap's gradient over the image's positions, placed back into the padded map.
    let uncrop = |t: Tap, g: Vec<f64>| {
        let (_, [c, ph, pw]) = f.tap(t);
        let l = t.level(s.model);
        crop_backward(&g, c, ph, pw, [r >> l, r >> l], [h >> l, w >> l])
    };
    let cw = s.content_weight as f64 / s.content_layers.len().max(1) as f64;
    let mut lc = vec![];
    let mut ls = vec![];
    // Gradient w.r.t. each tapped activation.
    let mut tap_grads: Vec<(Tap, Vec<f64>)> = vec![];
    for (k, &t) in s.content_layers.iter().enumerate() {
        let (a, [c, hh, ww]) = crop(&f, s, t, h, w, r);
        let tg = &content_targets[k];
        match content_mask {
            Some(m) => {
                let m = mask_at(s, t, m, (h, w), (hh, ww));
                let norm = c as f64 * m.iter().sum::<f64>();
                let n = hh * ww;
                let loss: f64 = (0..c * n).map(|i| m[i % n] * (a[i] - tg[i]).powi(2)).sum::<f64>() / norm;
                let da: Vec<f64> = (0..c * n).map(|i| 2.0 * m[i % n] * (a[i] - tg[i]) / norm).collect();
                lc.push(cw * loss);
                tap_grads.push((t, uncrop(t, weigh(da, cw))));
            }
            None => {
                lc.push(cw * mse_forward(&a, tg));
                tap_grads.push((t, uncrop(t, weigh(mse_backward(&a, tg, 1.0), cw))));
            }
        }
    }
    for (k, &t) in s.style_layers.iter().enumerate() {
        let (a, [c, hh, ww]) = crop(&f, s, t, h, w, r);
        let sw = s.style_weight as f64 * s.style_layer_weights[k] as f64;
        let style_targets = match &style {
            StyleTerms::Plain(t) => *t,
            StyleTerms::Regional { targets, masks, weights } => {
                let n = hh * ww;
                let mut loss = 0.0;
                for (j, m) in masks.iter().enumerate() {
                    let m = mask_at(s, t, m, (h, w), (hh, ww));
                    let wk = sw * weights[j];
                    let g = super::mask::masked_gram_forward(&a, &m, c, n);
                    let dg = mse_backward(&g, &targets[j][k], 1.0);
                    loss += wk * mse_forward(&g, &targets[j][k]);
                    let da = super::mask::masked_gram_backward(&a, &m, &dg, c, n);
                    tap_grads.push((t, uncrop(t, weigh(da, wk))));
                }
                ls.push(loss);
                continue;
            }
        };
        let (loss, da) = match s.style_loss {
            StyleLoss::Gram => {
                let g = gram_forward(&a, c, hh * ww);
                let dg = mse_backward(&g, &style_targets[k], 1.0);
                (mse_forward(&g, &style_targets[k]), gram_backward(&a, &dg, c, hh * ww))
            }
            StyleLoss::MeanCov => {
                let tgt = super::meancov::meancov_target(&style_targets[k], c);
                super::meancov::meancov_forward_backward(&a, c, hh * ww, &tgt)
            }
        };
        ls.push(sw * loss);
        tap_grads.push((t, uncrop(t, weigh(da, sw))));
    }
    let add = |g: &mut Option<Vec<f64>>, t: Tap| {
        for (tt, d) in &tap_grads {
            if *tt == t {
                match g {
                    Some(v) => v.iter_mut().zip(d).for_each(|(a, b)| *a += b),
                    None => *g = Some(d.clone()),
                }
            }
        }
    };
    let mut g: Option<Vec<f64>> = None;
    for i in (0..n).rev() {
        let [cout, hh, ww] = f.conv[i].1;
        if let Some((_, _)) = &f.pooled[i] {
            add(&mut g, Tap::Pool(s.model.block_of(i).0));
            g = g.map(|gp| match s.pool {
                Pool::Avg => avgpool2x2_backward(&gp, cout, hh, ww),
                Pool::Max => maxpool2x2_backward(&f.relu[i], &gp, cout, hh, ww),
            });
        }
        add(&mut g, Tap::Relu(i));
        g = g.map(|ga| relu_backward(&f.relu[i], &ga));
        add(&mut g, Tap::Conv(i));
        let gc = g.take().expect("the deepest layer has a tap");
        g = Some(conv3x3_backward_input(&gc, cout, hh, ww, &w64(&net[i]).0, net[i].cin));
    }
    let mut dx = preprocess_backward(&g.expect("gradient"), &s.preprocess.affine(), h, w, r);
    let tv = s.tv_weight as f64 * tv_forward(x, 3, h, w);
    tv_backward(x, 3, h, w, s.tv_weight as f64).iter().zip(dx.iter_mut()).for_each(|(a, b)| *b += a);
    (lc, ls, tv, dx)
}
