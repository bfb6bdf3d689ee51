//! stylize: neural style transfer (Gatys, Ecker & Bethge, CVPR 2016) on any GPU through wgpu.
//!
//! For other programs, [`render::stylize`] is the entry point: content and style images in
//! memory ([`image_io::Planar`]), weights ([`weights::load`] or [`weights::random`]) and
//! [`render::RenderOptions`] in, the image and its loss history out, with progress and
//! cancellation through a [`render::Observer`].
//!
//! Layers, bottom up: [`model`] (what the network and the losses are, device-independent),
//! [`reference`](mod@reference) (the f64 oracle of every op and of a whole step; imports only `model`),
//! [`gpu`] (context, tensors, one module per WGSL kernel family), [`runner`] and [`tiled`] (the
//! Gatys graph on the GPU, whole or in exact tiles), [`render`] (plans and runs renders),
//! with [`weights`](mod@weights), [`image_io`](mod@image_io), [`rng`](mod@rng), [`atomic`](mod@atomic) beside them and [`bench`](mod@bench) / [`check`](mod@check) on top.

#![warn(missing_docs)]

pub mod atomic;
pub mod bench;
pub mod check;
pub mod error;
pub mod gpu;
pub mod image_io;
pub mod model;
pub mod reference;
pub mod regional;
pub mod render;
pub mod rng;
pub mod runner;
pub mod shaders;
pub mod tiled;
pub mod web;
pub mod weights;

pub use error::{Error, Result};
