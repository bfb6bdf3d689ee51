//! Writing images atomically (temporary file, fsync, rename): PNG with (key, value) text chunks,
//! or JPEG; checking an output path before a long render; reading a PNG's text chunks back.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::error::one_line;
use super::{ImageIoError, Planar};
use crate::atomic::TempFile;

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

/// A temporary file beside `path` in `dir` ([`crate::atomic`]).
fn temp_file(path: &Path, dir: &Path) -> Result<TempFile, ImageIoError> {
    TempFile::create(path).map_err(|source| ImageIoError::OutputDirNotWritable {
        path: path.to_path_buf(),
        dir: dir.to_path_buf(),
        source,
    })
}

/// The parent must exist and be a directory.
fn existing_parent(path: &Path) -> Result<PathBuf, ImageIoError> {
    let dir = parent_dir(path);
    if !dir.is_dir() {
        return Err(ImageIoError::OutputDirMissing { path: path.to_path_buf(), dir });
    }
    Ok(dir)
}

/// Write `img` as PNG (8-bit RGB, each (key, value) as a tEXt chunk, or iTXt when not Latin-1)
/// or JPEG (quality 95; the text is not stored), chosen by the extension (.png, .jpg, .jpeg, any
/// case). Values are clamped to \[0,1\] and rounded to 8 bits.
///
/// Atomic: the image goes to a temporary file in the same directory, is fsynced and renamed over
/// `path`; on any error the temporary file is removed and an existing `path` is left untouched.
pub fn save_image(path: &Path, img: &Planar, text: &[(&str, &str)]) -> Result<(), ImageIoError> {
    save_image_impl(path, img, text, &SaveOptions::default(), None)
}

/// What [`save_image_as`] writes beyond the pixels and text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SaveOptions {
    /// Bits per channel: 8 (0 means 8 too) or 16 (PNG only: JPEG holds 8).
    pub bit_depth: u8,
    /// An ICC colour profile to embed (a PNG iCCP chunk, or JPEG APP2 segments), byte for byte.
    pub icc_profile: Option<Vec<u8>>,
}

/// [`save_image`] with a bit depth and an ICC profile: a 16-bit PNG rounds each value to
/// 1/65535, 257 times finer than 8 bits, so smooth gradients do not band. A 16-bit JPEG is
/// refused ([`ImageIoError::Encode`]) before any file is created.
pub fn save_image_as(path: &Path, img: &Planar, text: &[(&str, &str)], opts: &SaveOptions) -> Result<(), ImageIoError> {
    save_image_impl(path, img, text, opts, None)
}

/// Refuses a bit depth `path`'s format cannot hold: 8 or 16 for PNG, 8 for JPEG.
pub fn check_bit_depth(path: &Path, bit_depth: u8) -> Result<(), ImageIoError> {
    let format = output_format(path)?;
    let message = match (format, bit_depth) {
        (_, 0 | 8) | (OutputFormat::Png, 16) => return Ok(()),
        (OutputFormat::Jpeg, 16) => "JPEG holds 8 bits per channel; write a .png for 16-bit output".to_string(),
        (_, d) => format!("bit depth {d} is not supported (8 or 16)"),
    };
    Err(ImageIoError::Encode { path: path.to_path_buf(), message })
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
        save_image_impl(path, img, text, &SaveOptions::default(), Some(fail_after_bytes))
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
    opts: &SaveOptions,
    fail_after_bytes: Option<u64>,
) -> Result<(), ImageIoError> {
    // Everything that can be checked without touching the disk is checked first.
    let format = output_format(path)?;
    check_bit_depth(path, opts.bit_depth)?;
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
    let samples = if opts.bit_depth == 16 { to_rgb16_be_interleaved(img) } else { to_rgb8_interleaved(img) };

    let tmp = temp_file(path, &dir)?;
    let write_err = |source: io::Error| ImageIoError::Write { path: path.to_path_buf(), source };
    {
        let file = tmp.file().ok_or_else(|| write_err(io::Error::other("temporary file already closed")))?;
        let mut out = BufWriter::new(FailingWriter { inner: file, remaining: fail_after_bytes });
        match format {
            OutputFormat::Png => encode_png(path, &mut out, (img.width, img.height), &samples, text, opts)?,
            OutputFormat::Jpeg => {
                use image::ImageEncoder;
                let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 95);
                if let Some(icc) = &opts.icc_profile {
                    enc.set_icc_profile(icc.clone())
                        .map_err(|e| encode_error(path, image::ImageError::Unsupported(e)))?;
                }
                enc.write_image(&samples, img.width, img.height, image::ExtendedColorType::Rgb8)
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
    (width, height): (u32, u32),
    samples: &[u8],
    text: &[(&str, &str)],
    opts: &SaveOptions,
) -> Result<(), ImageIoError> {
    let png_err = |e: png::EncodingError| match e {
        png::EncodingError::IoError(source) => ImageIoError::Write { path: path.to_path_buf(), source },
        other => ImageIoError::Encode { path: path.to_path_buf(), message: one_line(&other.to_string()) },
    };
    let mut info = png::Info::with_size(width, height);
    info.color_type = png::ColorType::Rgb;
    info.bit_depth = if opts.bit_depth == 16 { png::BitDepth::Sixteen } else { png::BitDepth::Eight };
    info.icc_profile = opts.icc_profile.as_deref().map(std::borrow::Cow::Borrowed);
    let mut enc = png::Encoder::with_info(out, info).map_err(png_err)?;
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
    writer.write_image_data(samples).map_err(png_err)?;
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

/// Clamp to \[0,1\], round to 8 bits, interleave.
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

/// Clamp to \[0,1\], round to 16 bits, interleave as PNG stores them (big-endian).
fn to_rgb16_be_interleaved(img: &Planar) -> Vec<u8> {
    let n = img.plane_len();
    let q = |v: f32| {
        let v = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
        ((v * 65535.0).round() as u16).to_be_bytes()
    };
    let mut out = Vec::with_capacity(6 * n);
    for i in 0..n {
        for c in 0..3 {
            out.extend_from_slice(&q(img.data[c * n + i]));
        }
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
    let tmp = temp_file(path, &dir)?;
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
