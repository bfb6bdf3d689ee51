//! The VGG `features` layer tables (VGG16 and VGG19) and the names of the places a loss can read
//! (taps).

use crate::error::{Error, Result};

/// VGG19's 16 conv layers (configuration E): (name, in channels, out channels). A 2x2 pool
/// follows conv1_2, conv2_2, conv3_4, conv4_4 and conv5_4.
pub const VGG19_CONVS: [(&str, usize, usize); 16] = [
    ("conv1_1", 3, 64),
    ("conv1_2", 64, 64),
    ("conv2_1", 64, 128),
    ("conv2_2", 128, 128),
    ("conv3_1", 128, 256),
    ("conv3_2", 256, 256),
    ("conv3_3", 256, 256),
    ("conv3_4", 256, 256),
    ("conv4_1", 256, 512),
    ("conv4_2", 512, 512),
    ("conv4_3", 512, 512),
    ("conv4_4", 512, 512),
    ("conv5_1", 512, 512),
    ("conv5_2", 512, 512),
    ("conv5_3", 512, 512),
    ("conv5_4", 512, 512),
];

/// VGG16's 13 conv layers (configuration D): (name, in channels, out channels). A 2x2 pool
/// follows conv1_2, conv2_2, conv3_3, conv4_3 and conv5_3.
pub const VGG16_CONVS: [(&str, usize, usize); 13] = [
    ("conv1_1", 3, 64),
    ("conv1_2", 64, 64),
    ("conv2_1", 64, 128),
    ("conv2_2", 128, 128),
    ("conv3_1", 128, 256),
    ("conv3_2", 256, 256),
    ("conv3_3", 256, 256),
    ("conv4_1", 256, 512),
    ("conv4_2", 512, 512),
    ("conv4_3", 512, 512),
    ("conv5_1", 512, 512),
    ("conv5_2", 512, 512),
    ("conv5_3", 512, 512),
];

/// Which VGG network: the layer table, the block structure and torchvision's `features.N`
/// indices all come from here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Model {
    /// VGG16 (13 conv layers: 2, 2, 3, 3, 3 per block).
    Vgg16,
    /// VGG19 (16 conv layers: 2, 2, 4, 4, 4 per block), the default.
    #[default]
    Vgg19,
}

impl Model {
    /// Both models.
    pub const ALL: [Model; 2] = [Model::Vgg16, Model::Vgg19];

    /// `vgg16` or `vgg19`.
    pub fn name(self) -> &'static str {
        match self {
            Model::Vgg16 => "vgg16",
            Model::Vgg19 => "vgg19",
        }
    }

    /// `vgg16` or `vgg19` (case-insensitive, `VGG-16` style accepted).
    pub fn parse(s: &str) -> Result<Model> {
        match s.trim().to_ascii_lowercase().replace(['-', '_'], "").as_str() {
            "vgg16" => Ok(Model::Vgg16),
            "vgg19" => Ok(Model::Vgg19),
            _ => Err(Error::InvalidArgument(format!("unknown model {s:?}: use vgg16 or vgg19"))),
        }
    }

    /// The conv layers in order: (name, in channels, out channels).
    pub fn convs(self) -> &'static [(&'static str, usize, usize)] {
        match self {
            Model::Vgg16 => &VGG16_CONVS,
            Model::Vgg19 => &VGG19_CONVS,
        }
    }

    /// Number of conv layers in each of the five blocks.
    pub fn blocks(self) -> [usize; 5] {
        match self {
            Model::Vgg16 => [2, 2, 3, 3, 3],
            Model::Vgg19 => [2, 2, 4, 4, 4],
        }
    }

    /// torchvision's `features.N` index of each conv layer (ReLUs and pools take the others).
    pub fn torchvision_indices(self) -> &'static [usize] {
        match self {
            Model::Vgg16 => &[0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28],
            Model::Vgg19 => &[0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34],
        }
    }

    /// Conv layers up to and including the last one of block `b` (0-based).
    pub fn block_end(self, b: usize) -> usize {
        self.blocks()[..=b].iter().sum()
    }

    /// Index of the block (0..5) that conv layer `i` belongs to, and whether it is the block's
    /// last. Panics if `i` is not a layer of the model (a programming error).
    pub fn block_of(self, i: usize) -> (usize, bool) {
        let mut end = 0;
        for (b, n) in self.blocks().iter().enumerate() {
            end += n;
            if i < end {
                return (b, i + 1 == end);
            }
        }
        panic!("conv index {i} out of range for {}", self.name())
    }

    /// Spatial size of the activations of conv layer `i` for an (h, w) input (floor pooling).
    pub fn conv_size(self, i: usize, h: usize, w: usize) -> (usize, usize) {
        let b = self.block_of(i).0;
        (h >> b, w >> b)
    }

    /// The model's layer names in short form, for messages: `conv1_1..conv5_3, relu1_1..relu5_3,
    /// pool1..pool5 (2, 2, 3, 3, 3 layers per block)`.
    pub fn layer_summary(self) -> String {
        let last = self.convs().last().map_or("", |c| c.0);
        let b = self.blocks();
        format!(
            "conv1_1..{last}, relu1_1..{}, pool1..pool5 ({}, {}, {}, {}, {} layers per block)",
            last.replace("conv", "relu"),
            b[0],
            b[1],
            b[2],
            b[3],
            b[4]
        )
    }
}

impl std::fmt::Display for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Model::Vgg16 => "VGG16",
            Model::Vgg19 => "VGG19",
        })
    }
}

/// Where a loss reads the network: after conv layer `conv` (0-based, in the model's table),
/// before (`Conv`) or after (`Relu`) its ReLU, or after the pool ending its block (`Pool`). The
/// index means a layer only together with a [`Model`] (conv4_1 is layer 8 of VGG19, 7 of VGG16).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tap {
    /// Before the ReLU of conv layer `i` (0-based).
    Conv(usize),
    /// After the ReLU of conv layer `i`.
    Relu(usize),
    /// After the pool ending block `b` (0-based).
    Pool(usize),
}

impl Tap {
    /// Parses a layer name of `model`: convB_L, reluB_L (L up to the block's length) or pool1..pool5.
    pub fn parse(model: Model, name: &str) -> Result<Tap> {
        let bad = || Error::InvalidArgument(format!("unknown layer {name:?}: {model} has {}", model.layer_summary()));
        let n = name.trim().to_ascii_lowercase();
        if let Some(b) = n.strip_prefix("pool") {
            let b: usize = b.parse().map_err(|_| bad())?;
            if !(1..=5).contains(&b) {
                return Err(bad());
            }
            return Ok(Tap::Pool(b - 1));
        }
        let (kind, rest) = if let Some(r) = n.strip_prefix("conv") {
            (0, r)
        } else if let Some(r) = n.strip_prefix("relu") {
            (1, r)
        } else {
            return Err(bad());
        };
        let (b, l) = rest.split_once('_').ok_or_else(bad)?;
        let (b, l): (usize, usize) = (b.parse().map_err(|_| bad())?, l.parse().map_err(|_| bad())?);
        let blocks = model.blocks();
        if !(1..=5).contains(&b) || l < 1 || l > blocks[b - 1] {
            return Err(bad());
        }
        let idx = blocks[..b - 1].iter().sum::<usize>() + l - 1;
        Ok(if kind == 0 { Tap::Conv(idx) } else { Tap::Relu(idx) })
    }

    /// Downsampling level in `model`: how many pools precede the tap (its map is the input's
    /// size >> level).
    pub fn level(&self, model: Model) -> usize {
        match *self {
            Tap::Conv(i) | Tap::Relu(i) => model.block_of(i).0,
            Tap::Pool(b) => b + 1,
        }
    }

    /// The layer's name in `model`, e.g. `relu4_2`.
    pub fn name(&self, model: Model) -> String {
        match *self {
            Tap::Conv(i) => model.convs()[i].0.to_string(),
            Tap::Relu(i) => model.convs()[i].0.replace("conv", "relu"),
            Tap::Pool(b) => format!("pool{}", b + 1),
        }
    }

    /// How many conv layers (from conv1_1) `model` needs to compute this tap.
    pub fn convs_needed(&self, model: Model) -> usize {
        match *self {
            Tap::Conv(i) | Tap::Relu(i) => i + 1,
            Tap::Pool(b) => model.block_end(b),
        }
    }

    /// Channels of the tapped activation in `model`.
    pub fn channels(&self, model: Model) -> usize {
        match *self {
            Tap::Conv(i) | Tap::Relu(i) => model.convs()[i].2,
            Tap::Pool(b) => model.convs()[model.block_end(b) - 1].2,
        }
    }
}

/// What a weights source says about the model, for [`Model::resolve`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelEvidence {
    /// Either model can be made (seeded random weights, or the default download, which is
    /// fetched for the chosen model).
    Any,
    /// The file holds this model's layers.
    Known(Model),
    /// The file holds only the first `n` layers (n <= [`Model::shared_layers`]), the same in both
    /// models (a truncated file, e.g. conv1_1..conv3_3).
    Shared(usize),
}

impl Model {
    /// How many leading conv layers (conv1_1..conv3_3) the two models share: same names, shapes
    /// and torchvision indices, so a file holding only those cannot tell them apart.
    pub fn shared_layers() -> usize {
        let (a, b) = (Model::Vgg16, Model::Vgg19);
        (0..a.convs().len().min(b.convs().len()))
            .take_while(|&i| a.convs()[i] == b.convs()[i] && a.torchvision_indices()[i] == b.torchvision_indices()[i])
            .count()
    }

    /// The model to use: `forced` (`--model`) if given, which must agree with the weights;
    /// else the weights' model; for seeded or default weights VGG19. A truncated file whose
    /// layers both models share ([`ModelEvidence::Shared`]) is read as VGG19 (where the two
    /// compute the same) unless only VGG16 can serve the taps from it (pool3 needs conv3_3 in
    /// VGG16 but conv3_4 in VGG19). `taps` are the layer names the losses read; `what` names the
    /// weights in messages.
    pub fn resolve(forced: Option<Model>, evidence: ModelEvidence, taps: &[&str], what: &str) -> Result<Model> {
        match (forced, evidence) {
            (Some(m), ModelEvidence::Known(f)) if m != f => Err(Error::InvalidArgument(format!(
                "--model {} disagrees with the weights: {what} holds {f} (conv1_1..{}); use --model {} \
                 or {m} weights",
                m.name(),
                f.convs().last().map_or("", |c| c.0),
                f.name()
            ))),
            (Some(m), _) | (None, ModelEvidence::Known(m)) => Ok(m),
            (None, ModelEvidence::Any) => Ok(Model::Vgg19),
            (None, ModelEvidence::Shared(n)) => {
                let fits = |m: Model| taps.iter().all(|name| Tap::parse(m, name).is_ok_and(|t| t.convs_needed(m) <= n));
                Ok(if !fits(Model::Vgg19) && fits(Model::Vgg16) { Model::Vgg16 } else { Model::Vgg19 })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_agree_with_blocks_and_torchvision_indices() {
        for m in Model::ALL {
            let convs = m.convs();
            assert_eq!(m.blocks().iter().sum::<usize>(), convs.len());
            assert_eq!(m.torchvision_indices().len(), convs.len());
            for w in convs.windows(2) {
                assert_eq!(w[0].2, w[1].1, "{m}: channels chain");
            }
            // torchvision: conv, ReLU per layer, and a pool after each block.
            let mut next = 0;
            for (i, &tv) in m.torchvision_indices().iter().enumerate() {
                assert_eq!(tv, next, "{m}: features index of {}", convs[i].0);
                next += if m.block_of(i).1 { 3 } else { 2 };
            }
            for (i, &(name, _, _)) in convs.iter().enumerate() {
                let (b, l) = (m.block_of(i).0 + 1, i + 1 - m.blocks()[..m.block_of(i).0].iter().sum::<usize>());
                assert_eq!(name, format!("conv{b}_{l}"));
                assert_eq!(Tap::parse(m, name).unwrap(), Tap::Conv(i));
                assert_eq!(Tap::Relu(i).name(m), name.replace("conv", "relu"));
            }
        }
    }

    #[test]
    fn taps_per_model() {
        let (v16, v19) = (Model::Vgg16, Model::Vgg19);
        assert_eq!(Tap::parse(v16, "relu4_1").unwrap(), Tap::Relu(7));
        assert_eq!(Tap::parse(v19, "relu4_1").unwrap(), Tap::Relu(8));
        assert_eq!(Tap::parse(v16, "pool3").unwrap().convs_needed(v16), 7);
        assert_eq!(Tap::parse(v19, "pool3").unwrap().convs_needed(v19), 8);
        assert_eq!(Tap::Pool(4).channels(v16), 512);
        assert_eq!(Tap::parse(v16, "conv5_3").unwrap().convs_needed(v16), 13);
        let e = Tap::parse(v16, "relu5_4").unwrap_err().to_string();
        assert!(e.contains("\"relu5_4\"") && e.contains("VGG16 has conv1_1..conv5_3, relu1_1..relu5_3"), "{e}");
        assert!(!e.contains('\n'));
        assert!(Tap::parse(v19, "relu5_4").is_ok());
        assert!(Tap::parse(v19, "relu5_5").is_err() && Tap::parse(v19, "pool6").is_err());
        assert_eq!(Model::parse("VGG-16").unwrap(), v16);
        assert!(Model::parse("vgg11").unwrap_err().to_string().contains("vgg16 or vgg19"));
    }

    #[test]
    fn resolve_model() {
        use ModelEvidence::*;
        let (v16, v19) = (Model::Vgg16, Model::Vgg19);
        assert_eq!(Model::shared_layers(), 7);
        let taps = ["relu4_2", "relu1_1"];
        assert_eq!(Model::resolve(None, Any, &taps, "w").unwrap(), v19);
        assert_eq!(Model::resolve(Some(v16), Any, &taps, "w").unwrap(), v16);
        assert_eq!(Model::resolve(None, Known(v16), &taps, "w").unwrap(), v16);
        assert_eq!(Model::resolve(Some(v16), Known(v16), &taps, "w").unwrap(), v16);
        let e = Model::resolve(Some(v16), Known(v19), &taps, "f.pth").unwrap_err().to_string();
        assert!(e.contains("--model vgg16") && e.contains("f.pth holds VGG19") && e.contains("--model vgg19"), "{e}");
        // A conv1_1..conv3_3 file: VGG19 where both compute the same, VGG16 where only it fits.
        assert_eq!(Model::resolve(None, Shared(7), &["relu3_1", "relu1_1"], "w").unwrap(), v19);
        assert_eq!(Model::resolve(None, Shared(7), &["pool3"], "w").unwrap(), v16);
        assert_eq!(Model::resolve(None, Shared(7), &["relu4_2"], "w").unwrap(), v19);
        assert_eq!(Model::resolve(Some(v16), Shared(7), &["relu3_1"], "w").unwrap(), v16);
    }
}
