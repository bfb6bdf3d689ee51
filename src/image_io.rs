//! Image input/output for stylize: decode photos and paintings into planar f32 RGB, resize them,
//! and write results atomically (PNG with the render settings embedded as text chunks, or JPEG).
//!
//! Everything here works on [`Planar`]: CHW f32, batch 1, the layout of every tensor in the
//! project (DESIGN.md), so an image goes to the GPU without another reshuffle.
//!
//! Also here: RGB<->YIQ helpers (for luminance-only transfer) and deterministic synthetic test
//! images, so demos and tests need no files.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};

/// An RGB image as planar f32 (CHW: all R, then all G, then all B), values in [0,1].
///
/// `data.len()` must be `3 * width * height`. (The YIQ helpers reuse the type for YIQ planes,
/// whose I and Q channels are signed.)
#[derive(Clone, Debug, PartialEq)]
pub struct Planar {
    pub width: u32,
    pub height: u32,
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

/// Everything that can go wrong reading or writing an image. Each message is one line that names
/// the file and says what to do about it.
#[derive(Debug)]
pub enum ImageIoError {
    /// The input file does not exist.
    NotFound { path: PathBuf },
    /// The input exists but could not be opened or read (permissions, a directory, I/O error).
    Read { path: PathBuf, source: io::Error },
    /// The input file is empty.
    Empty { path: PathBuf },
    /// The content is not a recognisable image.
    NotAnImage { path: PathBuf },
    /// `read_png_text` was given something other than a PNG.
    NotPng { path: PathBuf },
    /// A recognised image format that stylize does not decode (e.g. GIF, WebP).
    UnsupportedFormat { path: PathBuf, format: String },
    /// The header claims more pixels than the limits allow (refused before allocating).
    TooLarge { path: PathBuf, width: u32, height: u32, max_width: u32, max_height: u32 },
    /// Decoding would need more memory than the limit allows (refused before allocating).
    TooMuchMemory { path: PathBuf, width: u32, height: u32, needed_bytes: u64, max_bytes: u64 },
    /// The header says the image has no pixels.
    ZeroSize { path: PathBuf, width: u32, height: u32 },
    /// The content looked like `format` but could not be decoded (truncated, corrupt, ...).
    Decode { path: PathBuf, format: String, message: String },
    /// The output extension is not one we can write.
    UnsupportedExtension { path: PathBuf },
    /// The output's directory does not exist (or is not a directory).
    OutputDirMissing { path: PathBuf, dir: PathBuf },
    /// The output's directory exists but we cannot create files in it.
    OutputDirNotWritable { path: PathBuf, dir: PathBuf, source: io::Error },
    /// Writing, syncing or renaming the output failed.
    Write { path: PathBuf, source: io::Error },
    /// The encoder refused the image or the text (e.g. JPEG larger than 65535 px).
    Encode { path: PathBuf, message: String },
    /// A (key, value) text pair cannot be stored in a PNG.
    InvalidText { path: PathBuf, key: String, reason: String },
    /// The `Planar` handed to `save_image` is malformed.
    InvalidImage { path: PathBuf, reason: String },
}

impl fmt::Display for ImageIoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ImageIoError::*;
        match self {
            NotFound { path } => write!(f, "{}: file not found; check the path", path.display()),
            Read { path, source } => write!(f, "{}: cannot read the file: {source}", path.display()),
            Empty { path } => write!(f, "{}: the file is empty (0 bytes), not a PNG or JPEG image", path.display()),
            NotAnImage { path } => write!(
                f,
                "{}: not a PNG or JPEG image (the content is not recognised as an image, whatever its extension)",
                path.display()
            ),
            NotPng { path } => {
                write!(f, "{}: not a PNG file; only PNG files carry the embedded text chunks", path.display())
            }
            UnsupportedFormat { path, format } => {
                write!(f, "{}: {format} images are not supported; convert it to PNG or JPEG", path.display())
            }
            TooLarge { path, width, height, max_width, max_height } => write!(
                f,
                "{}: image is {width}x{height} pixels, larger than the limit of {max_width}x{max_height}; \
                 refusing to decode it (a damaged file or a decompression bomb?); downscale it first",
                path.display()
            ),
            TooMuchMemory { path, width, height, needed_bytes, max_bytes } => write!(
                f,
                "{}: decoding this {width}x{height} image needs about {}, more than the {} limit; \
                 downscale it first",
                path.display(),
                human_bytes(*needed_bytes),
                human_bytes(*max_bytes)
            ),
            ZeroSize { path, width, height } => {
                write!(f, "{}: image has zero size ({width}x{height}); nothing to load", path.display())
            }
            Decode { path, format, message } => {
                write!(f, "{}: cannot decode {format} image (truncated or corrupt file?): {message}", path.display())
            }
            UnsupportedExtension { path } => write!(
                f,
                "{}: unsupported output extension; use one of {}",
                path.display(),
                SUPPORTED_OUTPUT_EXTENSIONS.join(", ")
            ),
            OutputDirMissing { path, dir } => {
                write!(f, "{}: output directory {} does not exist; create it first", path.display(), dir.display())
            }
            OutputDirNotWritable { path, dir, source } => {
                write!(f, "{}: output directory {} is not writable: {source}", path.display(), dir.display())
            }
            Write { path, source } => write!(f, "{}: cannot write the image: {source}", path.display()),
            Encode { path, message } => write!(f, "{}: cannot encode the image: {message}", path.display()),
            InvalidText { path, key, reason } => {
                write!(f, "{}: cannot store text entry {key:?} in the PNG: {reason}", path.display())
            }
            InvalidImage { path, reason } => write!(f, "{}: invalid image to save: {reason}", path.display()),
        }
    }
}

/// 1536 -> "1.5 KiB", 3 << 30 -> "3.0 GiB": readable sizes for messages.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

impl std::error::Error for ImageIoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ImageIoError::Read { source, .. }
            | ImageIoError::OutputDirNotWritable { source, .. }
            | ImageIoError::Write { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Limits applied while decoding, checked against the header before any pixel buffer exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    pub max_width: u32,
    pub max_height: u32,
    /// Bound on the peak memory of `load_image`: the decoded buffer (plus a rotated copy when EXIF
    /// asks for one) and the f32 planar result.
    pub max_alloc_bytes: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits { max_width: 20_000, max_height: 20_000, max_alloc_bytes: 1 << 30 }
    }
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

/// Decode a PNG or JPEG (recognised by content, not extension) into planar RGB in [0,1].
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

/// Decoder messages sometimes end in or contain newlines; ours are one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
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

// ---------------------------------------------------------------------------------------------
// Resizing
// ---------------------------------------------------------------------------------------------

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
/// [0,1] because Lanczos rings slightly past sharp edges.
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

// ---------------------------------------------------------------------------------------------
// Saving
// ---------------------------------------------------------------------------------------------

/// The output extensions `save_image` understands (case-insensitive).
pub const SUPPORTED_OUTPUT_EXTENSIONS: [&str; 3] = [".png", ".jpg", ".jpeg"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OutputFormat {
    Png,
    Jpeg,
}

fn output_format(path: &Path) -> Result<OutputFormat, ImageIoError> {
    let ext = path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("png") => Ok(OutputFormat::Png),
        Some("jpg" | "jpeg") => Ok(OutputFormat::Jpeg),
        _ => Err(ImageIoError::UnsupportedExtension { path: path.to_path_buf() }),
    }
}

/// The directory a relative bare file name lives in ("" means the current directory).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The parent must exist and be a directory.
fn existing_parent(path: &Path) -> Result<PathBuf, ImageIoError> {
    let dir = parent_dir(path);
    if !dir.is_dir() {
        return Err(ImageIoError::OutputDirMissing { path: path.to_path_buf(), dir });
    }
    Ok(dir)
}

/// A temporary file next to the final output; removed on drop unless `persist` succeeded.
struct TempFile {
    path: PathBuf,
    file: Option<File>,
}

impl TempFile {
    fn create(target: &Path, dir: &Path) -> Result<TempFile, ImageIoError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let base = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        // Hidden, recognisable, and unique per process, call and moment; create_new so two
        // writers never share a temp file.
        let name =
            format!(".{base}.stylize-tmp-{}-{}-{nanos}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        let path = dir.join(name);
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => Ok(TempFile { path, file: Some(file) }),
            Err(source) => {
                Err(ImageIoError::OutputDirNotWritable { path: target.to_path_buf(), dir: dir.to_path_buf(), source })
            }
        }
    }

    /// fsync, close and rename over `target`.
    fn persist(mut self, target: &Path) -> io::Result<()> {
        if let Some(file) = self.file.take() {
            file.sync_all()?;
        }
        fs::rename(&self.path, target)?;
        // Renamed: nothing left for Drop to clean up.
        self.path = PathBuf::new();
        // Make the rename itself durable; best effort, since not every platform or filesystem
        // lets a directory be opened and synced.
        if let Some(dir) = target.parent() {
            let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        self.file.take();
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Write `img` as PNG (8-bit RGB, each (key, value) as a tEXt chunk, or iTXt when not Latin-1)
/// or JPEG (quality 95; the text is not stored), chosen by the extension (.png, .jpg, .jpeg, any
/// case). Values are clamped to [0,1] and rounded to 8 bits.
///
/// Atomic: the image goes to a temporary file in the same directory, is fsynced and renamed over
/// `path`; on any error the temporary file is removed and an existing `path` is left untouched.
pub fn save_image(path: &Path, img: &Planar, text: &[(&str, &str)]) -> Result<(), ImageIoError> {
    save_image_impl(path, img, text, None)
}

/// Hooks for tests that need failures no real disk gives on demand.
#[doc(hidden)]
pub mod testing {
    use super::*;

    /// `save_image`, but the write to the temporary file fails with an I/O error after
    /// `fail_after_bytes` bytes: exercises the clean-up path of an interrupted save.
    pub fn save_image_failing_after(
        path: &Path,
        img: &Planar,
        text: &[(&str, &str)],
        fail_after_bytes: u64,
    ) -> Result<(), ImageIoError> {
        save_image_impl(path, img, text, Some(fail_after_bytes))
    }
}

/// A writer that fails once `remaining` bytes have gone through (test hook).
struct FailingWriter<W> {
    inner: W,
    remaining: Option<u64>,
}

impl<W: Write> Write for FailingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let buf = match self.remaining {
            None => buf,
            Some(0) => return Err(io::Error::other("simulated write failure")),
            Some(left) => &buf[..buf.len().min(left as usize)],
        };
        let n = self.inner.write(buf)?;
        if let Some(left) = self.remaining.as_mut() {
            *left -= n as u64;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn save_image_impl(
    path: &Path,
    img: &Planar,
    text: &[(&str, &str)],
    fail_after_bytes: Option<u64>,
) -> Result<(), ImageIoError> {
    // Everything that can be checked without touching the disk is checked first.
    let format = output_format(path)?;
    img.check_shape().map_err(|reason| ImageIoError::InvalidImage { path: path.to_path_buf(), reason })?;
    if format == OutputFormat::Png {
        for (key, value) in text {
            validate_text(key, value).map_err(|reason| ImageIoError::InvalidText {
                path: path.to_path_buf(),
                key: key.to_string(),
                reason,
            })?;
        }
    }
    let dir = existing_parent(path)?;
    let rgb8 = to_rgb8_interleaved(img);

    let tmp = TempFile::create(path, &dir)?;
    let write_err = |source: io::Error| ImageIoError::Write { path: path.to_path_buf(), source };
    {
        let file = tmp.file.as_ref().ok_or_else(|| write_err(io::Error::other("temporary file already closed")))?;
        let mut out = BufWriter::new(FailingWriter { inner: file, remaining: fail_after_bytes });
        match format {
            OutputFormat::Png => encode_png(path, &mut out, img.width, img.height, &rgb8, text)?,
            OutputFormat::Jpeg => {
                let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 95);
                enc.encode(&rgb8, img.width, img.height, image::ExtendedColorType::Rgb8)
                    .map_err(|e| encode_error(path, e))?;
            }
        }
        out.flush().map_err(write_err)?;
    }
    // On error `tmp` is dropped here and the temporary file removed.
    tmp.persist(path).map_err(write_err)
}

fn encode_error(path: &Path, e: image::ImageError) -> ImageIoError {
    match e {
        image::ImageError::IoError(source) => ImageIoError::Write { path: path.to_path_buf(), source },
        other => ImageIoError::Encode { path: path.to_path_buf(), message: one_line(&other.to_string()) },
    }
}

fn encode_png<W: Write>(
    path: &Path,
    out: W,
    width: u32,
    height: u32,
    rgb8: &[u8],
    text: &[(&str, &str)],
) -> Result<(), ImageIoError> {
    let png_err = |e: png::EncodingError| match e {
        png::EncodingError::IoError(source) => ImageIoError::Write { path: path.to_path_buf(), source },
        other => ImageIoError::Encode { path: path.to_path_buf(), message: one_line(&other.to_string()) },
    };
    let mut enc = png::Encoder::new(out, width, height);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    for (key, value) in text {
        // tEXt is what every tool shows; iTXt (UTF-8) only when the value needs it.
        let r = if is_latin1(value) {
            enc.add_text_chunk(key.to_string(), value.to_string())
        } else {
            enc.add_itxt_chunk(key.to_string(), value.to_string())
        };
        r.map_err(png_err)?;
    }
    let mut writer = enc.write_header().map_err(png_err)?;
    writer.write_image_data(rgb8).map_err(png_err)?;
    writer.finish().map_err(png_err)
}

fn is_latin1(s: &str) -> bool {
    s.chars().all(|c| (c as u32) <= 0xFF)
}

/// PNG keyword rules (1-79 Latin-1 printable characters, no leading/trailing or double spaces)
/// and no NUL in the value: checked up front so a bad key fails before any file is created.
fn validate_text(key: &str, value: &str) -> Result<(), String> {
    let len = key.chars().count();
    if len == 0 || len > 79 {
        return Err(format!("keys must be 1 to 79 characters long, this one has {len}"));
    }
    if !key.chars().all(|c| matches!(c as u32, 0x20..=0x7E | 0xA1..=0xFF)) {
        return Err("keys may only use printable Latin-1 characters".into());
    }
    if key.starts_with(' ') || key.ends_with(' ') || key.contains("  ") {
        return Err("keys may not start or end with a space or contain two spaces in a row".into());
    }
    if value.contains('\0') {
        return Err("values may not contain NUL characters".into());
    }
    Ok(())
}

/// Clamp to [0,1], round to 8 bits, interleave.
fn to_rgb8_interleaved(img: &Planar) -> Vec<u8> {
    let n = img.plane_len();
    let q = |v: f32| {
        // NaN would otherwise become 0 silently through `as`; map it to 0 explicitly.
        let v = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
        (v * 255.0).round() as u8
    };
    let mut out = Vec::with_capacity(3 * n);
    for i in 0..n {
        out.extend_from_slice(&[q(img.data[i]), q(img.data[n + i]), q(img.data[2 * n + i])]);
    }
    out
}

/// Check before a long render that `path` can be written: a known extension, an existing parent
/// directory, and a directory we can create (and remove) a file in.
pub fn check_output_path(path: &Path) -> Result<(), ImageIoError> {
    output_format(path)?;
    if path.is_dir() {
        return Err(ImageIoError::Write {
            path: path.to_path_buf(),
            source: io::Error::other("a directory with that name exists"),
        });
    }
    let dir = existing_parent(path)?;
    // Creating a real file is the only reliable test (ACLs, read-only mounts, root...).
    let tmp = TempFile::create(path, &dir)?;
    drop(tmp);
    Ok(())
}

/// The text chunks (tEXt, zTXt, iTXt) of a PNG as (key, value) pairs, grouped in that order of
/// chunk type (file order within each type).
pub fn read_png_text(path: &Path) -> Result<Vec<(String, String)>, ImageIoError> {
    let read_err = |source: io::Error| {
        if source.kind() == io::ErrorKind::NotFound {
            ImageIoError::NotFound { path: path.to_path_buf() }
        } else {
            ImageIoError::Read { path: path.to_path_buf(), source }
        }
    };
    let mut file = File::open(path).map_err(read_err)?;
    // Check the signature first so a JPEG or an empty file gets a precise message.
    let mut signature = Vec::with_capacity(8);
    (&mut file).take(8).read_to_end(&mut signature).map_err(read_err)?;
    if signature.is_empty() {
        return Err(ImageIoError::Empty { path: path.to_path_buf() });
    }
    if signature != b"\x89PNG\r\n\x1a\n" {
        return Err(ImageIoError::NotPng { path: path.to_path_buf() });
    }
    file.seek(SeekFrom::Start(0)).map_err(read_err)?;
    let decode_err = |e: png::DecodingError| match e {
        png::DecodingError::IoError(source) if source.kind() != io::ErrorKind::UnexpectedEof => {
            ImageIoError::Read { path: path.to_path_buf(), source }
        }
        other => ImageIoError::Decode {
            path: path.to_path_buf(),
            format: "PNG".into(),
            message: one_line(&other.to_string()),
        },
    };
    let mut decoder = png::Decoder::new(BufReader::new(file));
    decoder.set_ignore_text_chunk(false);
    let mut reader = decoder.read_info().map_err(decode_err)?;
    // Text may also follow the image data; finish() skims to IEND without keeping the pixels.
    reader.finish().map_err(decode_err)?;
    let info = reader.info();
    let mut out = Vec::new();
    for chunk in &info.uncompressed_latin1_text {
        out.push((chunk.keyword.clone(), chunk.text.clone()));
    }
    for chunk in &info.compressed_latin1_text {
        out.push((chunk.keyword.clone(), chunk.get_text().map_err(decode_err)?));
    }
    for chunk in &info.utf8_text {
        out.push((chunk.keyword.clone(), chunk.get_text().map_err(decode_err)?));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Colour
// ---------------------------------------------------------------------------------------------
//
// Luminance-only transfer ("original colours"): keep the luminance of the stylised result and
// the chrominance of the content. jcjohnson/neural-style does it in YUV (torch image.rgb2yuv);
// Gatys et al., "Preserving Color in Neural Artistic Style Transfer" (2016), use YIQ. Both share
// Y = 0.299 R + 0.587 G + 0.114 B, and I,Q are a linear function of U,V alone, so swapping
// chrominance gives the same RGB either way.

/// RGB -> YIQ (NTSC), the matrix scikit-image uses.
const RGB_TO_YIQ: [[f64; 3]; 3] =
    [[0.299, 0.587, 0.114], [0.595_716, -0.274_453, -0.321_263], [0.211_456, -0.522_591, 0.311_135]];

/// The exact inverse of a 3x3 matrix (adjugate over determinant), in f64 so that the round
/// trip RGB -> YIQ -> RGB is exact to f32 precision.
fn invert3(m: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let c = |r0: usize, c0: usize, r1: usize, c1: usize| m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0];
    let cof = [
        [c(1, 1, 2, 2), -c(1, 0, 2, 2), c(1, 0, 2, 1)],
        [-c(0, 1, 2, 2), c(0, 0, 2, 2), -c(0, 0, 2, 1)],
        [c(0, 1, 1, 2), -c(0, 0, 1, 2), c(0, 0, 1, 1)],
    ];
    let det = m[0][0] * cof[0][0] + m[0][1] * cof[0][1] + m[0][2] * cof[0][2];
    let mut inv = [[0.0; 3]; 3];
    for (r, row) in inv.iter_mut().enumerate() {
        for (col, v) in row.iter_mut().enumerate() {
            *v = cof[col][r] / det; // transpose of the cofactors
        }
    }
    inv
}

fn apply_color_matrix(img: &Planar, m: &[[f64; 3]; 3]) -> Planar {
    let n = img.plane_len();
    assert_eq!(img.data.len(), 3 * n, "colour conversion: buffer length does not match {}x{}", img.width, img.height);
    let mut data = vec![0.0f32; 3 * n];
    for i in 0..n {
        let p = [f64::from(img.data[i]), f64::from(img.data[n + i]), f64::from(img.data[2 * n + i])];
        for (c, row) in m.iter().enumerate() {
            data[c * n + i] = (row[0] * p[0] + row[1] * p[1] + row[2] * p[2]) as f32;
        }
    }
    Planar { width: img.width, height: img.height, data }
}

/// RGB planes to Y, I, Q planes (Y in [0,1]; I in about [-0.6, 0.6]; Q in about [-0.52, 0.52]).
pub fn rgb_to_yiq(img: &Planar) -> Planar {
    apply_color_matrix(img, &RGB_TO_YIQ)
}

/// Y, I, Q planes back to RGB (not clamped: out-of-gamut combinations stay visible to callers).
pub fn yiq_to_rgb(img: &Planar) -> Planar {
    apply_color_matrix(img, &invert3(&RGB_TO_YIQ))
}

// ---------------------------------------------------------------------------------------------
// Synthetic images
// ---------------------------------------------------------------------------------------------
//
// Pure functions of (x, y, seed) built from hashed value noise, so the same seed gives the same
// pixels on every run, and the scene scales with the size (coordinates are in units of height).

/// SplitMix64 finaliser: a good 64-bit mix for hashing lattice points.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Uniform in [0,1) from a seed and two lattice coordinates.
fn hash01(seed: u64, ix: i64, iy: i64) -> f32 {
    let h = mix64(seed ^ mix64((ix as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (iy as u64).rotate_left(32)));
    (h >> 40) as f32 / (1u64 << 24) as f32
}

/// Smoothly interpolated value noise in [0,1].
fn value_noise(seed: u64, x: f32, y: f32) -> f32 {
    let (fx, fy) = (x.floor(), y.floor());
    let (ix, iy) = (fx as i64, fy as i64);
    let (tx, ty) = (x - fx, y - fy);
    let s = |t: f32| t * t * (3.0 - 2.0 * t);
    let (sx, sy) = (s(tx), s(ty));
    let a = hash01(seed, ix, iy);
    let b = hash01(seed, ix + 1, iy);
    let c = hash01(seed, ix, iy + 1);
    let d = hash01(seed, ix + 1, iy + 1);
    let top = a + (b - a) * sx;
    let bottom = c + (d - c) * sx;
    top + (bottom - top) * sy
}

/// Fractal (multi-octave) value noise in [0,1].
fn fbm(seed: u64, x: f32, y: f32, octaves: u32) -> f32 {
    let (mut sum, mut amp, mut norm, mut freq) = (0.0, 0.5, 0.0, 1.0);
    for o in 0..octaves {
        sum += amp * value_noise(seed.wrapping_add(u64::from(o) * 0x51_7CC1), x * freq, y * freq);
        norm += amp;
        amp *= 0.5;
        freq *= 2.0;
    }
    sum / norm
}

/// Parameters drawn from the seed (uniform in [lo, hi)).
struct SeedRng(u64);

impl SeedRng {
    fn range(&mut self, lo: f32, hi: f32) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let u = (mix64(self.0) >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }
}

fn lerp3(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    let t = t.clamp(0.0, 1.0);
    [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t]
}

fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Fill a planar image from a per-pixel function of (x, y) in height units (x in [0, aspect]).
fn render(width: u32, height: u32, f: impl Fn(f32, f32) -> [f32; 3]) -> Planar {
    let (w, h) = (width.max(1), height.max(1));
    let n = w as usize * h as usize;
    let mut data = vec![0.0f32; 3 * n];
    let scale = 1.0 / h as f32;
    for y in 0..h {
        for x in 0..w {
            let rgb = f((x as f32 + 0.5) * scale, (y as f32 + 0.5) * scale);
            let i = y as usize * w as usize + x as usize;
            for c in 0..3 {
                data[c * n + i] = rgb[c].clamp(0.0, 1.0);
            }
        }
    }
    Planar { width: w, height: h, data }
}

/// A photo-like landscape: sky gradient with clouds, a sun disc with glow, two ranges of hills,
/// a house-like block, and fine grain. Deterministic per `seed`.
pub fn synthetic_photo(width: u32, height: u32, seed: u64) -> Planar {
    let aspect = width.max(1) as f32 / height.max(1) as f32;
    let mut rng = SeedRng(seed);
    let sun = (rng.range(0.55, 0.85) * aspect, rng.range(0.12, 0.28));
    let sun_r = rng.range(0.045, 0.07);
    let far_phase = rng.range(0.0, std::f32::consts::TAU);
    let near_phase = rng.range(0.0, std::f32::consts::TAU);
    let house_x = rng.range(0.12, 0.45) * aspect;
    let (house_w, wall_top, ground) = (0.22, 0.70, 0.86);
    let roof_top = wall_top - 0.10;
    let noise_seed = mix64(seed ^ 0xA5A5_5A5A);

    render(width, height, |x, y| {
        // Sky: deep blue overhead to pale haze at the horizon, warmed around the sun.
        let mut c = lerp3([0.18, 0.38, 0.78], [0.78, 0.86, 0.94], y / 0.6);
        let d_sun = ((x - sun.0).powi(2) + (y - sun.1).powi(2)).sqrt();
        let glow = (-(d_sun - sun_r).max(0.0) / 0.12).exp() * 0.45;
        c = [c[0] + glow, c[1] + glow * 0.85, c[2] + glow * 0.5];
        let cloud = smoothstep(0.55, 0.75, fbm(noise_seed, x * 5.0, y * 12.0, 5)) * (1.0 - y / 0.55).max(0.0);
        c = lerp3(c, [0.97, 0.97, 0.98], cloud * 0.8);
        let disc = 1.0 - smoothstep(sun_r - 0.004, sun_r + 0.004, d_sun);
        c = lerp3(c, [1.0, 0.96, 0.78], disc);

        // Far hills: hazy blue-green.
        let far = 0.56 + 0.05 * (x * 5.0 + far_phase).sin() + 0.05 * (fbm(noise_seed ^ 1, x * 3.0, 0.5, 4) - 0.5);
        if y > far {
            let depth = ((y - far) / 0.2).min(1.0);
            c = lerp3([0.45, 0.58, 0.62], [0.32, 0.46, 0.45], depth);
        }
        // Near hills: saturated green with grassy texture, darker lower down.
        let near = 0.68 + 0.07 * (x * 3.1 + near_phase).sin() + 0.06 * (fbm(noise_seed ^ 2, x * 4.0, 1.5, 4) - 0.5);
        if y > near {
            let t = fbm(noise_seed ^ 3, x * 30.0, y * 60.0, 4);
            let shade = 1.0 - 0.35 * ((y - near) / 0.3).min(1.0);
            c = [(0.22 + 0.15 * t) * shade, (0.50 + 0.2 * t) * shade, (0.16 + 0.08 * t) * shade];
        }

        // House: walls, a pitched roof, a door and a window.
        let hx = x - house_x;
        if (0.0..house_w).contains(&hx) && y > wall_top && y < ground {
            c = [0.86, 0.76, 0.60];
            let door = hx > 0.13 && hx < 0.18 && y > ground - 0.09;
            let window = hx > 0.03 && hx < 0.09 && y > wall_top + 0.03 && y < wall_top + 0.08;
            if door {
                c = [0.38, 0.23, 0.14];
            } else if window {
                c = [0.30, 0.45, 0.62];
            }
        }
        let roof_half = (house_w * 0.5 + 0.02) * (y - roof_top) / (wall_top - roof_top);
        if y >= roof_top && y <= wall_top && (hx - house_w * 0.5).abs() < roof_half {
            c = [0.60, 0.20, 0.15];
        }

        // Grain, as a camera sensor would add.
        let grain = (fbm(noise_seed ^ 4, x * 200.0, y * 200.0, 2) - 0.5) * 0.05;
        [c[0] + grain, c[1] + grain, c[2] + grain]
    })
}

/// A painting-like image: bold swirling colour bands (sums of sinusoids in polar coordinates
/// around a seed-chosen centre, through a vivid cosine palette) with brush-stroke texture that
/// runs along the bands. Deterministic per `seed`.
pub fn synthetic_painting(width: u32, height: u32, seed: u64) -> Planar {
    let aspect = width.max(1) as f32 / height.max(1) as f32;
    let mut rng = SeedRng(seed ^ 0x5EED_CAFE);
    let centre = (rng.range(0.3, 0.7) * aspect, rng.range(0.3, 0.7));
    let twist = rng.range(2.5, 5.0);
    let phases = [
        rng.range(0.0, std::f32::consts::TAU),
        rng.range(0.0, std::f32::consts::TAU),
        rng.range(0.0, std::f32::consts::TAU),
    ];
    let hue = rng.range(0.0, 1.0);
    let noise_seed = mix64(seed ^ 0x0BAD_F00D);
    let tau = std::f32::consts::TAU;

    render(width, height, |x, y| {
        let (dx, dy) = (x - centre.0, y - centre.1);
        let r = (dx * dx + dy * dy).sqrt();
        // Swirl: the angle turns with the radius, wobbling with low-frequency noise.
        let theta = dy.atan2(dx) + twist * r + 1.5 * (fbm(noise_seed, x * 2.0, y * 2.0, 3) - 0.5);
        let t_raw = 0.5
            + 0.22 * (3.0 * theta + 7.0 * r + phases[0]).sin()
            + 0.14 * (5.0 * theta - 11.0 * r + phases[1]).sin()
            + 0.09 * (13.0 * r + phases[2]).sin();
        // Bold bands: pull t towards a few flat levels, keeping soft edges between them.
        let levels = 6.0;
        let k = t_raw * levels;
        let band = (k.floor() + smoothstep(0.35, 0.65, k.fract())) / levels;
        let t = 0.3 * t_raw + 0.7 * band;
        // Vivid cosine palette (Inigo Quilez): a + b cos(2 pi (c t + d)).
        let pal = |d: f32| 0.5 + 0.5 * (tau * (t + hue + d)).cos();
        let mut c = [pal(0.0), pal(0.33), pal(0.67)];
        // Brush strokes: fine ridges parallel to the bands (iso-lines of the raw field, so they
        // follow the swirl and have no seam at atan2's branch cut), wobbling and fading in and
        // out with Cartesian noise like bristle marks.
        let wobble = fbm(noise_seed ^ 7, x * 6.0, y * 6.0, 3) + 0.5 * value_noise(noise_seed ^ 9, x * 40.0, y * 40.0);
        let strength = fbm(noise_seed ^ 8, x * 14.0, y * 14.0, 2);
        let bristle = 0.5 + 0.5 * (tau * 45.0 * t_raw + 6.0 * wobble).sin();
        let stroke = 1.0 - 0.3 * strength * bristle;
        // A soft darker seam where bands meet, like paint ridges.
        let to_edge = 0.5 - (k.fract() - 0.5).abs();
        let seam = 1.0 - 0.15 * (1.0 - smoothstep(0.0, 0.15, to_edge));
        for v in c.iter_mut() {
            *v *= stroke * seam;
        }
        c
    })
}
