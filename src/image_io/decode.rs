//! Decoding: PNG or JPEG (recognised by content) into [`Planar`] RGB, with EXIF orientation,
//! alpha over white, and limits checked before any pixel buffer is allocated.

use std::fs::{self, File};
use std::io::{self, BufReader};
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};

use super::error::one_line;
use super::{DecodeLimits, ImageIoError, Planar};

/// The ICC colour profile an image file carries (a PNG iCCP chunk, or a JPEG's APP2 segments
/// joined), byte for byte; None when it has none or is neither PNG nor JPEG.
pub fn load_icc_profile(path: &Path) -> Result<Option<Vec<u8>>, ImageIoError> {
    let read_err = |source: io::Error| ImageIoError::Read { path: path.to_path_buf(), source };
    let file = File::open(path).map_err(read_err)?;
    let reader = ImageReader::new(BufReader::new(file)).with_guessed_format().map_err(read_err)?;
    let format = match reader.format() {
        Some(f @ (ImageFormat::Png | ImageFormat::Jpeg)) => f,
        _ => return Ok(None),
    };
    let decode_err = |e: image::ImageError| ImageIoError::Decode {
        path: path.to_path_buf(),
        format: format_name(format),
        message: one_line(&e.to_string()),
    };
    let mut decoder = reader.into_decoder().map_err(decode_err)?;
    decoder.icc_profile().map_err(decode_err)
}

/// Decode a PNG or JPEG (recognised by content, not extension) into planar RGB in \[0,1\].
///
/// Applies the EXIF orientation, converts gray / gray+alpha / 16-bit / RGBA (alpha composited over
/// white) / CMYK JPEG to RGB, and refuses images over `limits` before allocating their pixels.
pub fn load_image(path: &Path, limits: &DecodeLimits) -> Result<Planar, ImageIoError> {
    let read_err = |source: io::Error| {
        if source.kind() == io::ErrorKind::NotFound {
            ImageIoError::NotFound { path: path.to_path_buf() }
        } else {
            ImageIoError::Read { path: path.to_path_buf(), source }
        }
    };
    let meta = fs::metadata(path).map_err(read_err)?;
    if meta.is_dir() {
        return Err(ImageIoError::Read {
            path: path.to_path_buf(),
            source: io::Error::other("it is a directory, not an image file"),
        });
    }
    if meta.len() == 0 {
        return Err(ImageIoError::Empty { path: path.to_path_buf() });
    }
    let file = File::open(path).map_err(read_err)?;

    // ImageReader::new (not ::open) so the format comes from the magic bytes only: a JPEG named
    // .png still loads, and a text file named .png is "not an image", not a PNG decode error.
    let mut reader = ImageReader::new(BufReader::new(file)).with_guessed_format().map_err(read_err)?;
    let format = match reader.format() {
        None => return Err(ImageIoError::NotAnImage { path: path.to_path_buf() }),
        Some(f @ (ImageFormat::Png | ImageFormat::Jpeg)) => f,
        Some(other) => {
            return Err(ImageIoError::UnsupportedFormat { path: path.to_path_buf(), format: format_name(other) })
        }
    };
    // The dimension limits are strict in image 0.25: the PNG decoder checks them right after
    // IHDR, before reading further or allocating anything proportional to the image.
    let mut image_limits = image::Limits::default();
    image_limits.max_image_width = Some(limits.max_width);
    image_limits.max_image_height = Some(limits.max_height);
    image_limits.max_alloc = Some(limits.max_alloc_bytes);
    reader.limits(image_limits);

    let decode_err = |e: image::ImageError| map_decode_error(path, format, limits, e);
    let mut decoder = reader.into_decoder().map_err(decode_err)?;

    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(ImageIoError::ZeroSize { path: path.to_path_buf(), width, height });
    }
    // A broken EXIF block should not make a photo unloadable: fall back to "as stored".
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);

    // image 0.25's from_decoder does not reserve against max_alloc itself, so check the peak here.
    let decoded = decoder.total_bytes();
    let rotated_copy = match orientation {
        image::metadata::Orientation::NoTransforms
        | image::metadata::Orientation::Rotate180
        | image::metadata::Orientation::FlipHorizontal
        | image::metadata::Orientation::FlipVertical => 0,
        _ => decoded,
    };
    let planar_bytes = u64::from(width) * u64::from(height) * 3 * 4;
    let needed = decoded.saturating_add(rotated_copy).saturating_add(planar_bytes);
    if needed > limits.max_alloc_bytes {
        return Err(ImageIoError::TooMuchMemory {
            path: path.to_path_buf(),
            width,
            height,
            needed_bytes: needed,
            max_bytes: limits.max_alloc_bytes,
        });
    }

    let mut img = DynamicImage::from_decoder(decoder).map_err(decode_err)?;
    img.apply_orientation(orientation);
    Ok(dynamic_to_planar(&img))
}

fn format_name(format: ImageFormat) -> String {
    match format {
        ImageFormat::Png => "PNG".into(),
        ImageFormat::Jpeg => "JPEG".into(),
        other => format!("{other:?}").to_uppercase(),
    }
}

fn map_decode_error(path: &Path, format: ImageFormat, limits: &DecodeLimits, e: image::ImageError) -> ImageIoError {
    use image::error::{ImageError, LimitErrorKind};
    match e {
        ImageError::Limits(ref le) if matches!(le.kind(), LimitErrorKind::DimensionError) => {
            // The limit error does not carry the size; read it again from the header alone so the
            // message can say how big the image claims to be.
            let (width, height) = probe_dimensions(path, format).unwrap_or((0, 0));
            ImageIoError::TooLarge {
                path: path.to_path_buf(),
                width,
                height,
                max_width: limits.max_width,
                max_height: limits.max_height,
            }
        }
        ImageError::Limits(_) => {
            let (width, height) = probe_dimensions(path, format).unwrap_or((0, 0));
            ImageIoError::TooMuchMemory {
                path: path.to_path_buf(),
                width,
                height,
                // The decoder does not say how much it wanted; the f32 result alone is a floor.
                needed_bytes: (u64::from(width) * u64::from(height) * 12).max(limits.max_alloc_bytes.saturating_add(1)),
                max_bytes: limits.max_alloc_bytes,
            }
        }
        ImageError::IoError(io) if io.kind() != io::ErrorKind::UnexpectedEof => {
            ImageIoError::Read { path: path.to_path_buf(), source: io }
        }
        ImageError::Unsupported(u) => ImageIoError::UnsupportedFormat {
            path: path.to_path_buf(),
            format: format!("this kind of {} ({u})", format_name(format)),
        },
        other => ImageIoError::Decode {
            path: path.to_path_buf(),
            format: format_name(format),
            message: one_line(&other.to_string()),
        },
    }
}

/// Width and height from the header only, without any limit (used for error messages).
fn probe_dimensions(path: &Path, format: ImageFormat) -> Option<(u32, u32)> {
    let file = File::open(path).ok()?;
    match format {
        // png's header read touches IHDR only, so even a bomb's header is cheap.
        ImageFormat::Png => {
            let mut dec = png::Decoder::new(BufReader::new(file));
            let info = dec.read_header_info().ok()?;
            Some((info.width, info.height))
        }
        // JPEG sides are at most 65535 and the header parse allocates nothing per pixel.
        _ => {
            let mut reader = ImageReader::with_format(BufReader::new(file), format);
            reader.no_limits();
            reader.into_dimensions().ok()
        }
    }
}

/// Convert any decoded image to planar RGB f32, compositing alpha over white.
fn dynamic_to_planar(img: &DynamicImage) -> Planar {
    let (w, h) = (img.width(), img.height());
    let u8f = |v: u8| f32::from(v) / 255.0;
    let u16f = |v: u16| f32::from(v) / 65535.0;
    let f32f = |v: f32| v.clamp(0.0, 1.0);
    match img {
        DynamicImage::ImageLuma8(b) => samples_to_planar(w, h, b.as_raw(), 1, u8f),
        DynamicImage::ImageLumaA8(b) => samples_to_planar(w, h, b.as_raw(), 2, u8f),
        DynamicImage::ImageRgb8(b) => samples_to_planar(w, h, b.as_raw(), 3, u8f),
        DynamicImage::ImageRgba8(b) => samples_to_planar(w, h, b.as_raw(), 4, u8f),
        DynamicImage::ImageLuma16(b) => samples_to_planar(w, h, b.as_raw(), 1, u16f),
        DynamicImage::ImageLumaA16(b) => samples_to_planar(w, h, b.as_raw(), 2, u16f),
        DynamicImage::ImageRgb16(b) => samples_to_planar(w, h, b.as_raw(), 3, u16f),
        DynamicImage::ImageRgba16(b) => samples_to_planar(w, h, b.as_raw(), 4, u16f),
        DynamicImage::ImageRgb32F(b) => samples_to_planar(w, h, b.as_raw(), 3, f32f),
        DynamicImage::ImageRgba32F(b) => samples_to_planar(w, h, b.as_raw(), 4, f32f),
        // DynamicImage is non-exhaustive; anything new goes through the generic conversion.
        other => {
            let rgba = other.to_rgba32f();
            samples_to_planar(w, h, rgba.as_raw(), 4, f32f)
        }
    }
}

/// Interleaved samples (1 = gray, 2 = gray+alpha, 3 = RGB, 4 = RGBA) to planar RGB.
fn samples_to_planar<T: Copy>(w: u32, h: u32, raw: &[T], channels: usize, to_f: impl Fn(T) -> f32) -> Planar {
    let n = w as usize * h as usize;
    let mut data = vec![0.0f32; 3 * n];
    let (r, rest) = data.split_at_mut(n);
    let (g, b) = rest.split_at_mut(n);
    for (i, px) in raw.chunks_exact(channels).enumerate().take(n) {
        let (rgb, alpha) = match channels {
            1 => ([to_f(px[0]); 3], 1.0),
            2 => ([to_f(px[0]); 3], to_f(px[1])),
            3 => ([to_f(px[0]), to_f(px[1]), to_f(px[2])], 1.0),
            _ => ([to_f(px[0]), to_f(px[1]), to_f(px[2])], to_f(px[3])),
        };
        // Straight (non-premultiplied) alpha over a white background.
        let over_white = |c: f32| c * alpha + (1.0 - alpha);
        r[i] = over_white(rgb[0]);
        g[i] = over_white(rgb[1]);
        b[i] = over_white(rgb[2]);
    }
    Planar { width: w, height: h, data }
}
