//! Whole-pipeline reference: the input transform and a whole Gatys step (losses and image
//! gradient), from the device-independent [`crate::model`] only.

use crate::model::{Affine, ConvLayer, LossSettings, Pool, Tap};

/// y\[c\] = x\[src\[c\]\] * a\[c\] + b\[c\] on a (3, h, w) image.
pub fn preprocess_forward(x: &[f64], t: &Affine) -> Vec<f64> {
    let plane = x.len() / 3;
    let mut y = vec![0.0; x.len()];
    for c in 0..3 {
        for p in 0..plane {
            y[c * plane + p] = x[t.src[c] as usize * plane + p] * t.a[c] as f64 + t.b[c] as f64;
        }
    }
    y
}

/// dx from dy of [`preprocess_forward`].
pub fn preprocess_backward(dy: &[f64], t: &Affine) -> Vec<f64> {
    let plane = dy.len() / 3;
    let mut dx = vec![0.0; dy.len()];
    for c in 0..3 {
        for p in 0..plane {
            dx[t.src[c] as usize * plane + p] += dy[c * plane + p] * t.a[c] as f64;
        }
    }
    dx
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

/// The network forward pass on pixels x (3, h, w) in \[0,1\], truncated after `n` convs.
pub fn forward(net: &[ConvLayer], s: &LossSettings, x: &[f64], h: usize, w: usize, n: usize) -> RefForward {
    let taps: Vec<Tap> = s.content_layers.iter().chain(&s.style_layers).copied().collect();
    let mut cur = preprocess_forward(x, &s.preprocess.affine());
    let (mut ch, mut hh, mut ww) = (3, h, w);
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

/// Content activations and style Gram matrices of an image.
pub fn targets(net: &[ConvLayer], s: &LossSettings, x: &[f64], h: usize, w: usize) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let f = forward(net, s, x, h, w, s.convs_needed());
    let content = s.content_layers.iter().map(|&t| f.tap(t).0.to_vec()).collect();
    let style = s
        .style_layers
        .iter()
        .map(|&t| {
            let (a, [c, hh, ww]) = f.tap(t);
            gram_forward(a, c, hh * ww)
        })
        .collect();
    (content, style)
}

/// Loss terms (content per layer, style per layer, tv; each times its weight) and dLoss/dx,
/// written as plainly as possible: the oracle of `runner::Graph`.
pub fn evaluate(
    net: &[ConvLayer],
    s: &LossSettings,
    content_targets: &[Vec<f64>],
    style_targets: &[Vec<f64>],
    x: &[f64],
    h: usize,
    w: usize,
) -> (Vec<f64>, Vec<f64>, f64, Vec<f64>) {
    let n = s.convs_needed();
    let f = forward(net, s, x, h, w, n);
    let cw = s.content_weight as f64 / s.content_layers.len().max(1) as f64;
    let mut lc = vec![];
    let mut ls = vec![];
    // Gradient w.r.t. each tapped activation.
    let mut tap_grads: Vec<(Tap, Vec<f64>)> = vec![];
    for (k, &t) in s.content_layers.iter().enumerate() {
        let (a, _) = f.tap(t);
        lc.push(cw * mse_forward(a, &content_targets[k]));
        tap_grads.push((t, mse_backward(a, &content_targets[k], cw)));
    }
    for (k, &t) in s.style_layers.iter().enumerate() {
        let (a, [c, hh, ww]) = f.tap(t);
        let g = gram_forward(a, c, hh * ww);
        let sw = s.style_weight as f64 * s.style_layer_weights[k] as f64;
        ls.push(sw * mse_forward(&g, &style_targets[k]));
        let dg = mse_backward(&g, &style_targets[k], sw);
        tap_grads.push((t, gram_backward(a, &dg, c, hh * ww)));
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
    let mut dx = preprocess_backward(&g.expect("gradient"), &s.preprocess.affine());
    let tv = s.tv_weight as f64 * tv_forward(x, 3, h, w);
    tv_backward(x, 3, h, w, s.tv_weight as f64).iter().zip(dx.iter_mut()).for_each(|(a, b)| *b += a);
    (lc, ls, tv, dx)
}
