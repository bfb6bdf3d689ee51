//! stylize: neural style transfer (Gatys, Ecker & Bethge, CVPR 2016) on any GPU through wgpu.
//!
//! Layers: [`gpu`] (context, tensors, one module per WGSL kernel family), [`reference`] (the
//! plain CPU oracle of every op), [`vgg`] (the VGG19 layer table).

pub mod bench;
pub mod check;
pub mod error;
pub mod gpu;
pub mod image_io;
pub mod model;
pub mod reference;
pub mod render;
pub mod rng;
pub mod runner;
pub mod shaders;
pub mod tiled;
/// Old path of [`model`]'s VGG table, kept while the modules move (to be removed).
pub mod vgg {
    pub use crate::model::{block_of, conv_size, Affine, Preprocess, Tap, BLOCKS, CONVS};
}
pub mod weights;

pub use error::{Error, Result};
