//! Resizing [`Planar`] images (Lanczos3, antialiased when downscaling).

use super::Planar;

/// Resize so the longest side is `longest` (at least 1), keeping the aspect ratio (each side at
/// least 1). Lanczos3, antialiased when downscaling.
pub fn resize_longest(img: &Planar, longest: u32) -> Planar {
    let longest = longest.max(1);
    let (w, h) = (u64::from(img.width.max(1)), u64::from(img.height.max(1)));
    // Round to nearest: 640x480 -> 128 gives exactly 128x96.
    let (nw, nh) = if w >= h {
        (u64::from(longest), ((h * u64::from(longest) + w / 2) / w).max(1))
    } else {
        (((w * u64::from(longest) + h / 2) / h).max(1), u64::from(longest))
    };
    resize_exact(img, nw as u32, nh as u32)
}

/// Resize to exactly `width` x `height` (each at least 1) with Lanczos3; values are clamped to
/// \[0,1\] because Lanczos rings slightly past sharp edges.
///
/// # Panics
/// When `img.data.len()` is not `3 * width * height` or a side is 0 (a programming error, not
/// user input: every `Planar` from this module is well formed).
pub fn resize_exact(img: &Planar, width: u32, height: u32) -> Planar {
    if let Err(reason) = img.check_shape() {
        panic!("resize_exact: {reason}");
    }
    let (width, height) = (width.max(1), height.max(1));
    if (width, height) == (img.width, img.height) {
        return img.clone();
    }
    let n = img.plane_len();
    let mut interleaved = Vec::with_capacity(3 * n);
    for i in 0..n {
        interleaved.extend_from_slice(&[img.data[i], img.data[n + i], img.data[2 * n + i]]);
    }
    let src = image::Rgb32FImage::from_raw(img.width, img.height, interleaved)
        .expect("buffer length was checked against the dimensions");
    // image's separable resampler widens the kernel by the scale factor when downscaling, which
    // is the antialiasing we need (a plain Lanczos tap would alias).
    let dst = image::imageops::resize(&src, width, height, image::imageops::FilterType::Lanczos3);
    let m = width as usize * height as usize;
    let mut data = vec![0.0f32; 3 * m];
    for (i, px) in dst.as_raw().chunks_exact(3).enumerate() {
        for c in 0..3 {
            data[c * m + i] = px[c].clamp(0.0, 1.0);
        }
    }
    Planar { width, height, data }
}
