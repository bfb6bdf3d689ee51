//! The VGG19 `features` layer table and the names of the places a loss can read (taps).

use crate::error::{Error, Result};

/// The 16 conv layers: (name, in channels, out channels). A 2x2 pool follows conv1_2, conv2_2,
/// conv3_4, conv4_4 and conv5_4.
pub const CONVS: [(&str, usize, usize); 16] = [
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

/// Number of conv layers in each of the five blocks.
pub const BLOCKS: [usize; 5] = [2, 2, 4, 4, 4];

/// Where a loss reads the network: after conv layer `conv` (0-based), before (`Conv`) or after
/// (`Relu`) its ReLU, or after the pool ending its block (`Pool`).
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
    /// Parses conv1_1..conv5_4, relu1_1..relu5_4, pool1..pool5.
    pub fn parse(name: &str) -> Result<Tap> {
        let bad = || {
            Error::InvalidArgument(format!(
                "unknown layer {name:?}: use conv1_1..conv5_4, relu1_1..relu5_4 or pool1..pool5 \
                 (blocks 1-2 have 2 layers, blocks 3-5 have 4)"
            ))
        };
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
        if !(1..=5).contains(&b) || l < 1 || l > BLOCKS[b - 1] {
            return Err(bad());
        }
        let idx = BLOCKS[..b - 1].iter().sum::<usize>() + l - 1;
        Ok(if kind == 0 { Tap::Conv(idx) } else { Tap::Relu(idx) })
    }

    /// The layer's name, e.g. `relu4_2`.
    pub fn name(&self) -> String {
        match *self {
            Tap::Conv(i) => CONVS[i].0.to_string(),
            Tap::Relu(i) => CONVS[i].0.replace("conv", "relu"),
            Tap::Pool(b) => format!("pool{}", b + 1),
        }
    }

    /// How many conv layers (from conv1_1) the network needs to compute this tap.
    pub fn convs_needed(&self) -> usize {
        match *self {
            Tap::Conv(i) | Tap::Relu(i) => i + 1,
            Tap::Pool(b) => BLOCKS[..=b].iter().sum(),
        }
    }

    /// Channels of the tapped activation.
    pub fn channels(&self) -> usize {
        match *self {
            Tap::Conv(i) | Tap::Relu(i) => CONVS[i].2,
            Tap::Pool(b) => CONVS[BLOCKS[..=b].iter().sum::<usize>() - 1].2,
        }
    }
}

/// Index of the block (0..5) that conv layer `i` belongs to, and whether it is the block's last.
pub fn block_of(i: usize) -> (usize, bool) {
    let mut end = 0;
    for (b, n) in BLOCKS.iter().enumerate() {
        end += n;
        if i < end {
            return (b, i + 1 == end);
        }
    }
    panic!("conv index {i} out of range")
}

/// Spatial size of the activations of conv layer `i` for an (h, w) input (floor pooling).
pub fn conv_size(i: usize, h: usize, w: usize) -> (usize, usize) {
    let b = block_of(i).0;
    (h >> b, w >> b)
}
