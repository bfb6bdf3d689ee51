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
