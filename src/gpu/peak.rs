//! The uniform block of `shaders/peak.wgsl` (the device-ceiling kernels `stylize bench` times).

use super::kernel::uniform;

uniform! {
    /// `shaders/peak.wgsl`'s `Params`.
    pub struct PeakParams { n: u32, gx: u32, iters: u32, _p0: u32 }
}
