//! What the network and the losses are, independent of any device: the VGG layer table and taps,
//! the input convention, one conv layer's parameters, the pooling kind and the loss settings.
//! The GPU graph ([`crate::runner`], [`crate::tiled`]) and the f64 reference ([`crate::reference`])
//! both import this module; the reference imports nothing from the GPU side.

mod preprocess;
pub mod vgg;

pub use preprocess::{Affine, Preprocess};
pub use vgg::{Model, ModelEvidence, Tap, VGG16_CONVS, VGG19_CONVS};

use crate::error::{Error, Result};

/// One 3x3 conv layer's parameters as stored in a weights file.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvLayer {
    /// The layer's name in the VGG table, e.g. `conv1_1`.
    pub name: String,
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// OIHW: cout * cin * 3 * 3 values.
    pub weight: Vec<f32>,
    /// cout values.
    pub bias: Vec<f32>,
}

impl ConvLayer {
    /// Layer `index` of `model`'s table (name and channel counts from [`Model::convs`]) with the
    /// given parameters; panics if their lengths do not match the table (a programming error).
    pub fn new(model: Model, index: usize, weight: Vec<f32>, bias: Vec<f32>) -> ConvLayer {
        let (name, cin, cout) = model.convs()[index];
        assert_eq!(weight.len(), cout * cin * 9, "{name}: weight length");
        assert_eq!(bias.len(), cout, "{name}: bias length");
        ConvLayer { name: name.to_string(), cin, cout, weight, bias }
    }
}

/// The 2x2 stride-2 pooling after each block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pool {
    /// Window means (Gatys et al. recommend it for synthesis).
    Avg,
    /// Window maxima (VGG as trained).
    Max,
}

/// What the style loss compares at each style tap (`--style-loss`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StyleLoss {
    /// Gatys et al.: mean((G - A)^2) of the Gram matrices G = F F^T / (C H W).
    #[default]
    Gram,
    /// The squared Wasserstein-2 distance between the Gaussians with the features' mean and
    /// covariance (as crowsonkb/style-transfer-pytorch), divided by C: mean((mu - mu_t)^2) +
    /// tr(C + C_t - 2 (R C R)^{1/2}) / C with R = C_t^{1/2}, both covariances plus
    /// [`MEANCOV_EPS`] I.
    MeanCov,
}

impl StyleLoss {
    /// The option's spelling (`gram`, `mean-cov`).
    pub fn name(self) -> &'static str {
        match self {
            StyleLoss::Gram => "gram",
            StyleLoss::MeanCov => "mean-cov",
        }
    }

    /// Elements of one style tap's target for `c` channels: the Gram matrix (c x c), or the raw
    /// moments of the mean-covariance loss, S = F F^T / N (c x c) then the mean (c). Raw moments
    /// mix linearly, so blending several style images stays a weighted sum of targets.
    pub fn target_len(self, c: usize) -> usize {
        match self {
            StyleLoss::Gram => c * c,
            StyleLoss::MeanCov => c * c + c,
        }
    }
}

/// The ridge added to both covariances of [`StyleLoss::MeanCov`]: it keeps R and the matrix
/// square roots defined when a tap has fewer positions than channels (rank-deficient
/// covariances), as crowsonkb's eps = 1e-4.
pub const MEANCOV_EPS: f64 = 1e-4;

/// What the losses look at and how much each counts.
#[derive(Clone, Debug)]
pub struct LossSettings {
    /// The network the taps index into.
    pub model: Model,
    /// Taps whose activations the content loss compares.
    pub content_layers: Vec<Tap>,
    /// Taps whose Gram matrices the style loss compares.
    pub style_layers: Vec<Tap>,
    /// One weight per style layer (multiplies `style_weight`).
    pub style_layer_weights: Vec<f32>,
    /// Weight of the content loss (split evenly over the content layers).
    pub content_weight: f32,
    /// Weight of the style loss.
    pub style_weight: f32,
    /// What the style loss compares.
    pub style_loss: StyleLoss,
    /// Weight of the total-variation loss.
    pub tv_weight: f32,
    /// Pooling kind of the network.
    pub pool: Pool,
    /// Input convention of the weights.
    pub preprocess: Preprocess,
}

impl LossSettings {
    /// Conv layers (from conv1_1) the taps need.
    pub fn convs_needed(&self) -> usize {
        self.content_layers.iter().chain(&self.style_layers).map(|t| t.convs_needed(self.model)).max().unwrap_or(1)
    }

    /// Whether a pool follows each of the first [`LossSettings::convs_needed`] conv layers (every
    /// pool before the deepest tap, and a tapped pool after it).
    pub fn pools(&self) -> Vec<bool> {
        let n = self.convs_needed();
        (0..n)
            .map(|i| {
                let (b, last) = self.model.block_of(i);
                last && (i + 1 < n || self.taps().any(|t| t == Tap::Pool(b)))
            })
            .collect()
    }

    /// 2^(pools applied): tile origins, halos and reflected margins are multiples of it, so every
    /// tap's grid of positions lines up with the image's.
    pub fn alignment(&self) -> usize {
        1 << self.pools().iter().filter(|&&p| p).count()
    }

    /// Every tap, content layers first (a tap may appear twice).
    pub fn taps(&self) -> impl Iterator<Item = Tap> + '_ {
        self.content_layers.iter().chain(&self.style_layers).copied()
    }

    /// Checks the layer lists (before any weights are loaded).
    pub fn validate_layers(&self) -> Result<()> {
        if self.content_layers.is_empty() && self.style_layers.is_empty() {
            return Err(Error::InvalidArgument("no content or style layers chosen".into()));
        }
        let n = self.model.convs().len();
        if let Some(t) = self.taps().find(|t| t.convs_needed(self.model) > n || matches!(t, Tap::Pool(b) if *b > 4)) {
            return Err(Error::InvalidArgument(format!("tap {t:?} is not a layer of {}", self.model)));
        }
        Ok(())
    }

    /// Checks the layer lists and that every weight is a finite number >= 0.
    pub fn validate(&self) -> Result<()> {
        self.validate_layers()?;
        if self.style_layer_weights.len() != self.style_layers.len() {
            return Err(Error::InvalidArgument(format!(
                "--style-layer-weights has {} values for {} style layers",
                self.style_layer_weights.len(),
                self.style_layers.len()
            )));
        }
        let all = [self.content_weight, self.style_weight, self.tv_weight];
        for (name, v) in ["content weight", "style weight", "tv weight"]
            .iter()
            .zip(all)
            .chain(self.style_layer_weights.iter().map(|w| (&"style layer weight", *w)))
        {
            if !v.is_finite() || v < 0.0 {
                return Err(Error::InvalidArgument(format!("{name} must be a finite number >= 0, got {v}")));
            }
        }
        Ok(())
    }
}

/// How the network sees the image's border: what its first conv reads beyond the edge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Edge {
    /// The convs' own zero padding only (as VGG was trained, and as every PyTorch port does):
    /// the losses see a frame of zeros (the mean colour) around the image, and the optimiser
    /// paints a saturated line along the edges to compensate.
    #[default]
    Zero,
    /// The image is padded by reflection (without repeating the edge pixel, like numpy's
    /// `reflect` / torch's `ReflectionPad2d`) by this many pixels, rounded up to the layers'
    /// alignment (2^pools), before the first conv; the losses are taken over the image's
    /// positions only, and the margin's gradient is folded back onto the pixels it mirrors.
    Reflect(usize),
}

impl Edge {
    /// The margin in pixels for these layers: 0 for [`Edge::Zero`], else the requested margin
    /// rounded up to a multiple of [`LossSettings::alignment`] (so every tap's positions of the
    /// image sit on the padded image's pooling grid).
    pub fn margin(self, s: &LossSettings) -> usize {
        match self {
            Edge::Zero => 0,
            Edge::Reflect(r) => r.next_multiple_of(s.alignment()),
        }
    }
}

/// Index `i` (may lie outside 0..n) reflected into 0..n without repeating the edge (`-1 -> 1`,
/// `n -> n - 2`), repeatedly for margins wider than the image (period 2n - 2; n = 1 maps all to 0).
pub fn reflect(i: isize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let p = 2 * n as isize - 2;
    let m = i.rem_euclid(p);
    (if m >= n as isize { p - m } else { m }) as usize
}

/// A (c, h, w) map padded by reflection to (c, h + 2r, w + 2r).
pub fn reflect_pad<T: Copy>(x: &[T], c: usize, h: usize, w: usize, r: usize) -> Vec<T> {
    let (ph, pw) = (h + 2 * r, w + 2 * r);
    let mut out = Vec::with_capacity(c * ph * pw);
    for k in 0..c {
        for y in 0..ph {
            let sy = reflect(y as isize - r as isize, h);
            for xx in 0..pw {
                out.push(x[(k * h + sy) * w + reflect(xx as isize - r as isize, w)]);
            }
        }
    }
    out
}

/// The adjoint of [`reflect_pad`]: a (c, h + 2r, w + 2r) gradient folded onto (c, h, w), every
/// padded position added to the pixel it mirrors.
pub fn reflect_fold<T: Copy + Default + std::ops::AddAssign>(
    g: &[T],
    c: usize,
    h: usize,
    w: usize,
    r: usize,
) -> Vec<T> {
    let (ph, pw) = (h + 2 * r, w + 2 * r);
    let mut out = vec![T::default(); c * h * w];
    for k in 0..c {
        for y in 0..ph {
            let sy = reflect(y as isize - r as isize, h);
            for xx in 0..pw {
                out[(k * h + sy) * w + reflect(xx as isize - r as isize, w)] += g[(k * ph + y) * pw + xx];
            }
        }
    }
    out
}
