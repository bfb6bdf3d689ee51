//! Image input/output for stylize: decode photos and paintings into planar f32 RGB, resize them,
//! and write results atomically (PNG with the render settings embedded as text chunks, or JPEG).
//!
//! Everything here works on [`Planar`]: CHW f32, batch 1, the layout of every tensor in the
//! project (DESIGN.md), so an image goes to the GPU without another reshuffle.
//!
//! Also here: RGB<->YIQ helpers (for luminance-only transfer) and deterministic synthetic test
//! images, so demos and tests need no files.
//!
//! One job per file: `error` (errors, decode limits), `decode`, `resize`, `encode` (atomic save,
//! PNG text chunks), `colour` (YIQ) and `samples` (synthetic images); every item is re-exported
//! here, so `stylize::image_io::X` is the path to use.

mod colour;
mod decode;
mod encode;
mod error;
mod resize;
mod samples;

pub use colour::{color_match, color_stats, rgb_to_yiq, symmetric_eigen3, transfer_luminance, yiq_to_rgb};
pub use decode::{load_icc_profile, load_image};
pub use encode::{
    check_bit_depth, check_output_path, read_png_text, save_image, save_image_as, testing, SaveOptions,
    SUPPORTED_OUTPUT_EXTENSIONS,
};
pub use error::{DecodeLimits, ImageIoError};
pub use resize::{resize_exact, resize_longest};
pub use samples::{synthetic_painting, synthetic_photo};

/// An RGB image as planar f32 (CHW: all R, then all G, then all B), values in \[0,1\].
///
/// `data.len()` must be `3 * width * height`. (The YIQ helpers reuse the type for YIQ planes,
/// whose I and Q channels are signed.)
#[derive(Clone, Debug, PartialEq)]
pub struct Planar {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The three planes, each `width * height` values, row by row.
    pub data: Vec<f32>,
}

impl Planar {
    /// An image of one colour.
    pub fn filled(width: u32, height: u32, rgb: [f32; 3]) -> Planar {
        let n = width as usize * height as usize;
        let mut data = Vec::with_capacity(3 * n);
        for c in rgb {
            data.extend(std::iter::repeat_n(c, n));
        }
        Planar { width, height, data }
    }

    /// Number of pixels per channel plane.
    pub fn plane_len(&self) -> usize {
        self.width as usize * self.height as usize
    }

    /// The (r, g, b) value at column `x`, row `y`. Panics when out of bounds.
    pub fn pixel(&self, x: u32, y: u32) -> [f32; 3] {
        assert!(x < self.width && y < self.height, "pixel ({x}, {y}) outside {}x{}", self.width, self.height);
        let n = self.plane_len();
        let i = y as usize * self.width as usize + x as usize;
        [self.data[i], self.data[n + i], self.data[2 * n + i]]
    }

    /// Ok when the buffer length matches the dimensions and neither side is zero.
    fn check_shape(&self) -> Result<(), String> {
        if self.width == 0 || self.height == 0 {
            return Err(format!("image is {}x{}; both sides must be at least 1", self.width, self.height));
        }
        let expected = 3 * self.plane_len();
        if self.data.len() != expected {
            return Err(format!(
                "image buffer holds {} values but a {}x{} RGB image needs {expected}",
                self.data.len(),
                self.width,
                self.height
            ));
        }
        Ok(())
    }
}
