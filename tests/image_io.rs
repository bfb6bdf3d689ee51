//! image_io: decoding (formats, EXIF, limits, errors), atomic saving, resizing, colour helpers and
//! synthetic images. Fast and offline: every fixture is built in memory and written to a
//! per-test temporary directory.
//!
//! Run: cargo test --test image_io

use std::fs;
use std::path::{Path, PathBuf};

use stylize::image_io::{
    check_output_path, load_image, read_png_text, resize_exact, resize_longest, rgb_to_yiq, save_image,
    synthetic_painting, synthetic_photo, testing, yiq_to_rgb, DecodeLimits, ImageIoError, Planar,
};

/// A fresh directory under the system temp dir, removed (with its contents) on drop.
struct TestDir(PathBuf);

impl TestDir {
    fn new(name: &str) -> TestDir {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("stylize-image-io-{name}-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&dir).expect("create test dir");
        TestDir(dir)
    }
    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
    /// Names of the files in the directory, sorted.
    fn listing(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&self.0)
            .expect("read test dir")
            .map(|e| e.expect("dir entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn load(path: &Path) -> Result<Planar, ImageIoError> {
    load_image(path, &DecodeLimits::default())
}

fn err_msg<T: std::fmt::Debug>(r: Result<T, ImageIoError>) -> String {
    r.expect_err("expected an error").to_string()
}

fn max_abs_diff(a: &Planar, b: &Planar) -> f32 {
    assert_eq!((a.width, a.height), (b.width, b.height));
    a.data.iter().zip(&b.data).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Write a PNG with the png crate directly, so fixtures can use any colour type and depth.
fn write_png(path: &Path, w: u32, h: u32, color: png::ColorType, depth: png::BitDepth, data: &[u8]) {
    let file = fs::File::create(path).expect("create fixture");
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w, h);
    enc.set_color(color);
    enc.set_depth(depth);
    let mut writer = enc.write_header().expect("png header");
    writer.write_image_data(data).expect("png data");
    writer.finish().expect("png finish");
}

/// CRC-32 (ISO-HDLC, as PNG uses), bit by bit: tiny and enough for hand-made chunks.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
    out
}

// --------------------------------------------------------------------------------------------
// Round trips
// --------------------------------------------------------------------------------------------

#[test]
fn png_round_trip_keeps_pixels_and_text() {
    let dir = TestDir::new("png-rt");
    let img = synthetic_photo(37, 23, 1); // odd sizes on purpose
    let out = dir.path("out.PNG"); // extension is case-insensitive
    let text = [
        ("stylize:settings", "size=512 style_weight=1e6 optimizer=lbfgs"),
        ("Comment", "naïve Latin-1 text"),         // tEXt
        ("Description", "UTF-8 needs iTXt: ✓ 画"), // iTXt
    ];
    save_image(&out, &img, &text).expect("save png");
    let back = load(&out).expect("load png");
    assert_eq!((back.width, back.height), (37, 23));
    // 8-bit storage: each value is rounded to the nearest of 256 levels.
    let err = max_abs_diff(&img, &back);
    assert!(err <= 0.5 / 255.0 + 1e-6, "max error {err}");

    let got = read_png_text(&out).expect("read text");
    for (k, v) in text {
        assert!(got.iter().any(|(gk, gv)| gk == k && gv == v), "missing {k}={v} in {got:?}");
    }
    assert_eq!(got.len(), text.len());
    assert_eq!(dir.listing(), vec!["out.PNG".to_string()], "no temp files left");
}

#[test]
fn jpeg_round_trip_within_tolerance() {
    let dir = TestDir::new("jpeg-rt");
    let img = synthetic_photo(96, 64, 2);
    for name in ["out.jpg", "out.JPEG"] {
        let out = dir.path(name);
        save_image(&out, &img, &[("ignored", "JPEG stores no text")]).expect("save jpeg");
        let back = load(&out).expect("load jpeg");
        assert_eq!((back.width, back.height), (96, 64));
        // JPEG is lossy: quality 95 quantises DCT coefficients lightly and chroma may be
        // subsampled 2x2, so sharp colour edges (the house, the sun's rim) move most. Measured
        // here: mean abs error 0.008, PSNR 39.5 dB, max 0.063. The bounds leave 2.5x / 9 dB /
        // 4x of room for other encoder versions while still catching a wrong colour order,
        // a wrong quality, an orientation bug or a shifted image (each an error of 0.1 or more).
        let n = img.data.len() as f32;
        let mae = img.data.iter().zip(&back.data).map(|(a, b)| (a - b).abs()).sum::<f32>() / n;
        let mse = img.data.iter().zip(&back.data).map(|(a, b)| (a - b).powi(2)).sum::<f32>() / n;
        let psnr = -10.0 * mse.log10();
        assert!(mae < 0.02, "{name}: mean abs error {mae}");
        assert!(psnr > 30.0, "{name}: PSNR {psnr} dB");
        assert!(max_abs_diff(&img, &back) < 0.25, "{name}: max error");
    }
}

// --------------------------------------------------------------------------------------------
// EXIF orientation
// --------------------------------------------------------------------------------------------

/// An APP1 segment holding a big-endian TIFF header with one IFD entry: Orientation = `value`.
fn exif_app1(value: u16) -> Vec<u8> {
    let mut payload = b"Exif\0\0".to_vec();
    payload.extend_from_slice(b"MM\0\x2A\0\0\0\x08"); // big endian, magic 42, IFD0 at offset 8
    payload.extend_from_slice(&1u16.to_be_bytes()); // one entry
    payload.extend_from_slice(&0x0112u16.to_be_bytes()); // tag: Orientation
    payload.extend_from_slice(&3u16.to_be_bytes()); // type: SHORT
    payload.extend_from_slice(&1u32.to_be_bytes()); // count
    payload.extend_from_slice(&value.to_be_bytes()); // value, left-justified in 4 bytes
    payload.extend_from_slice(&[0, 0]);
    payload.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    let mut seg = vec![0xFF, 0xE1];
    seg.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes()); // length counts itself
    seg.extend_from_slice(&payload);
    seg
}

#[test]
fn exif_orientation_6_is_applied() {
    let dir = TestDir::new("exif");
    // 32x16, blue-grey, with a red 8x8 block in the top-left corner (8x8 aligned so JPEG keeps it).
    let (w, h) = (32u32, 16u32);
    let mut rgb = Vec::new();
    for y in 0..h {
        for x in 0..w {
            let red = x < 8 && y < 8;
            rgb.extend_from_slice(if red { &[230u8, 20, 20] } else { &[60u8, 90, 140] });
        }
    }
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95)
        .encode(&rgb, w, h, image::ExtendedColorType::Rgb8)
        .expect("encode jpeg");
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
    let mut with_exif = jpeg[..2].to_vec(); // SOI
    with_exif.extend_from_slice(&exif_app1(6));
    with_exif.extend_from_slice(&jpeg[2..]);
    let path = dir.path("phone.jpg");
    fs::write(&path, &with_exif).expect("write fixture");

    let img = load(&path).expect("load");
    // Orientation 6: the stored image must be rotated 90 degrees clockwise to display upright,
    // so a WxH image becomes HxW and stored (x, y) moves to (H-1-y, x): the top-left corner
    // goes to the top-right.
    assert_eq!((img.width, img.height), (16, 32));
    let is_red = |p: [f32; 3]| p[0] > 0.7 && p[1] < 0.3 && p[2] < 0.3;
    assert!(is_red(img.pixel(12, 3)), "top-right should be red, got {:?}", img.pixel(12, 3));
    assert!(!is_red(img.pixel(3, 3)), "top-left should not be red, got {:?}", img.pixel(3, 3));
    assert!(!is_red(img.pixel(12, 28)), "bottom-right should not be red");

    // Without the EXIF segment the same pixels load as stored.
    let plain = dir.path("plain.jpg");
    fs::write(&plain, &jpeg).expect("write fixture");
    let img = load(&plain).expect("load");
    assert_eq!((img.width, img.height), (32, 16));
    assert!(is_red(img.pixel(3, 3)));
}

// --------------------------------------------------------------------------------------------
// Colour types
// --------------------------------------------------------------------------------------------

#[test]
fn grayscale_png_loads_as_rgb() {
    let dir = TestDir::new("gray");
    let p = dir.path("g.png");
    write_png(&p, 2, 1, png::ColorType::Grayscale, png::BitDepth::Eight, &[0, 200]);
    let img = load(&p).expect("load");
    assert_eq!(img.pixel(0, 0), [0.0; 3]);
    let v = 200.0 / 255.0;
    assert!(img.pixel(1, 0).iter().all(|c| (c - v).abs() < 1e-6), "{:?}", img.pixel(1, 0));
}

#[test]
fn gray_alpha_png_composites_over_white() {
    let dir = TestDir::new("gray-alpha");
    let p = dir.path("ga.png");
    // (gray, alpha): opaque black, transparent black, half-transparent 100.
    write_png(&p, 3, 1, png::ColorType::GrayscaleAlpha, png::BitDepth::Eight, &[0, 255, 0, 0, 100, 128]);
    let img = load(&p).expect("load");
    assert_eq!(img.pixel(0, 0), [0.0; 3]);
    assert_eq!(img.pixel(1, 0), [1.0; 3], "fully transparent becomes white");
    let a = 128.0 / 255.0;
    let want = 100.0 / 255.0 * a + (1.0 - a);
    assert!(img.pixel(2, 0).iter().all(|c| (c - want).abs() < 1e-6), "{:?} vs {want}", img.pixel(2, 0));
}

#[test]
fn rgb16_png_keeps_precision() {
    let dir = TestDir::new("rgb16");
    let p = dir.path("16.png");
    let samples: [u16; 6] = [0, 32768, 65535, 1, 1000, 65534];
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_be_bytes()).collect();
    write_png(&p, 2, 1, png::ColorType::Rgb, png::BitDepth::Sixteen, &bytes);
    let img = load(&p).expect("load");
    for (i, s) in samples.iter().enumerate() {
        let got = img.pixel(i as u32 / 3, 0)[i % 3];
        let want = f32::from(*s) / 65535.0;
        assert!((got - want).abs() < 1e-6, "sample {i}: {got} vs {want}");
    }
    // 1/65535 survives: the 16 bits were not truncated to 8.
    assert!(img.pixel(1, 0)[0] > 0.0 && img.pixel(1, 0)[0] < 1.0 / 255.0);
}

#[test]
fn rgba_png_composites_over_white() {
    let dir = TestDir::new("rgba");
    let p = dir.path("rgba.png");
    write_png(
        &p,
        2,
        1,
        png::ColorType::Rgba,
        png::BitDepth::Eight,
        &[255, 0, 0, 255, /* opaque red */ 0, 0, 255, 51 /* 20% blue */],
    );
    let img = load(&p).expect("load");
    assert_eq!(img.pixel(0, 0), [1.0, 0.0, 0.0]);
    let a = 51.0 / 255.0;
    let want = [1.0 - a, 1.0 - a, 1.0];
    let got = img.pixel(1, 0);
    assert!(got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-6), "{got:?} vs {want:?}");
}

#[test]
fn palette_png_with_transparency_loads() {
    let dir = TestDir::new("palette");
    let p = dir.path("pal.png");
    let file = fs::File::create(&p).expect("create");
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), 2, 1);
    enc.set_color(png::ColorType::Indexed);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_palette(vec![0u8, 128, 255, 255, 0, 0]); // entry 0: teal, entry 1: red
    enc.set_trns(vec![255u8, 0]); // entry 1 fully transparent
    let mut w = enc.write_header().expect("header");
    w.write_image_data(&[0, 1]).expect("data");
    w.finish().expect("finish");
    let img = load(&p).expect("load");
    assert_eq!(img.pixel(0, 0), [0.0, 128.0 / 255.0, 1.0]);
    assert_eq!(img.pixel(1, 0), [1.0; 3], "transparent palette entry becomes white");
}

#[test]
fn format_comes_from_content_not_extension() {
    let dir = TestDir::new("content");
    let jpg_named_png = dir.path("actually-jpeg.png");
    save_image(&dir.path("a.jpg"), &synthetic_photo(16, 16, 3), &[]).expect("save");
    fs::rename(dir.path("a.jpg"), &jpg_named_png).expect("rename");
    let img = load(&jpg_named_png).expect("a JPEG named .png still loads");
    assert_eq!((img.width, img.height), (16, 16));
}

// --------------------------------------------------------------------------------------------
// Load errors
// --------------------------------------------------------------------------------------------

#[test]
fn missing_file_is_reported() {
    let dir = TestDir::new("missing");
    let p = dir.path("nope.png");
    let msg = err_msg(load(&p));
    assert!(msg.contains("nope.png") && msg.contains("not found"), "{msg}");
    let msg = err_msg(read_png_text(&p));
    assert!(msg.contains("nope.png") && msg.contains("not found"), "{msg}");
}

#[test]
fn text_file_named_png_is_not_an_image() {
    let dir = TestDir::new("text");
    let p = dir.path("notes.png");
    fs::write(&p, "these are not pixels\n").expect("write");
    let msg = err_msg(load(&p));
    assert!(msg.contains("notes.png") && msg.contains("not a PNG or JPEG image"), "{msg}");
}

#[test]
fn empty_file_is_reported() {
    let dir = TestDir::new("empty");
    let p = dir.path("empty.jpg");
    fs::write(&p, b"").expect("write");
    let msg = err_msg(load(&p));
    assert!(msg.contains("empty.jpg") && msg.contains("empty"), "{msg}");
}

#[test]
fn truncated_png_is_reported() {
    let dir = TestDir::new("truncated");
    let full = dir.path("full.png");
    save_image(&full, &synthetic_painting(64, 64, 4), &[]).expect("save");
    let bytes = fs::read(&full).expect("read");
    let cut = dir.path("cut.png");
    fs::write(&cut, &bytes[..bytes.len() / 2]).expect("write");
    let msg = err_msg(load(&cut));
    assert!(msg.contains("cut.png") && msg.contains("cannot decode PNG"), "{msg}");
    assert!(msg.contains("truncated or corrupt"), "{msg}");
}

#[test]
fn zero_width_png_is_refused() {
    let dir = TestDir::new("zero");
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&0u32.to_be_bytes());
    ihdr.extend_from_slice(&10u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend(png_chunk(b"IHDR", &ihdr));
    bytes.extend(png_chunk(b"IEND", &[]));
    let p = dir.path("zero.png");
    fs::write(&p, &bytes).expect("write");
    // The png crate itself rejects a zero dimension in IHDR; either way the file is named.
    let msg = err_msg(load(&p));
    assert!(msg.contains("zero.png"), "{msg}");
}

#[test]
fn decompression_bomb_header_is_refused_before_allocating() {
    let dir = TestDir::new("bomb");
    // IHDR: 100000 x 100000, 8-bit RGB: 30 GB of pixels if anyone believed it.
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // depth, colour type RGB, deflate, filter 0, no interlace
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend(png_chunk(b"IHDR", &ihdr));
    bytes.extend(png_chunk(b"IEND", &[]));
    let p = dir.path("bomb.png");
    fs::write(&p, &bytes).expect("write");

    // The file holds no pixel data at all, so reaching the size check (rather than a decode
    // error) shows the refusal came from the header, before anything was allocated or inflated.
    let err = load(&p).expect_err("must refuse");
    assert!(matches!(err, ImageIoError::TooLarge { width: 100_000, height: 100_000, .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("bomb.png") && msg.contains("100000x100000") && msg.contains("20000x20000"), "{msg}");
}

#[test]
fn memory_limit_is_enforced() {
    let dir = TestDir::new("alloc");
    let p = dir.path("img.png");
    save_image(&p, &synthetic_photo(64, 64, 5), &[]).expect("save");
    let limits = DecodeLimits { max_alloc_bytes: 10_000, ..DecodeLimits::default() };
    let msg = err_msg(load_image(&p, &limits));
    assert!(msg.contains("img.png") && msg.contains("9.8 KiB limit"), "{msg}");
    let limits = DecodeLimits { max_width: 63, ..DecodeLimits::default() };
    let msg = err_msg(load_image(&p, &limits));
    assert!(msg.contains("64x64") && msg.contains("63x20000"), "{msg}");
}

#[test]
fn read_png_text_finds_late_and_compressed_chunks_and_rejects_non_png() {
    let dir = TestDir::new("text-read");
    let p = dir.path("late.png");
    let file = fs::File::create(&p).expect("create");
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), 1, 1);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().expect("header");
    w.write_image_data(&[1, 2, 3]).expect("data");
    // Text after IDAT, compressed: other tools write it this way.
    w.write_text_chunk(&png::text_metadata::ZTXtChunk::new("late", "after the pixels")).expect("ztxt");
    w.finish().expect("finish");
    assert_eq!(read_png_text(&p).expect("text"), vec![("late".to_string(), "after the pixels".to_string())]);

    let jpg = dir.path("photo.jpg");
    save_image(&jpg, &synthetic_photo(8, 8, 1), &[]).expect("save");
    let msg = err_msg(read_png_text(&jpg));
    assert!(msg.contains("photo.jpg") && msg.contains("not a PNG file"), "{msg}");
    let empty = dir.path("empty.png");
    fs::write(&empty, b"").expect("write");
    let msg = err_msg(read_png_text(&empty));
    assert!(msg.contains("empty.png") && msg.contains("empty"), "{msg}");
}

// --------------------------------------------------------------------------------------------
// Save errors and atomicity
// --------------------------------------------------------------------------------------------

#[test]
fn unsupported_output_extension_is_rejected_and_touches_nothing() {
    let dir = TestDir::new("ext");
    let img = synthetic_photo(8, 8, 6);
    for name in ["out.bmp", "out", "out.png.txt"] {
        let p = dir.path(name);
        let msg = err_msg(save_image(&p, &img, &[]));
        assert!(msg.contains(name) && msg.contains(".png, .jpg, .jpeg"), "{msg}");
        let msg = err_msg(check_output_path(&p));
        assert!(msg.contains(".png, .jpg, .jpeg"), "{msg}");
    }
    // An existing file with an unsupported extension keeps its content.
    let existing = dir.path("keep.gif");
    fs::write(&existing, b"original").expect("write");
    assert!(save_image(&existing, &img, &[]).is_err());
    assert_eq!(fs::read(&existing).expect("read"), b"original");
    assert_eq!(dir.listing(), vec!["keep.gif".to_string()]);
}

#[test]
fn missing_output_directory_is_reported() {
    let dir = TestDir::new("nodir");
    let p = dir.path("no/such/dir/out.png");
    let img = synthetic_photo(8, 8, 7);
    let msg = err_msg(save_image(&p, &img, &[]));
    assert!(msg.contains("out.png") && msg.contains("does not exist"), "{msg}");
    let msg = err_msg(check_output_path(&p));
    assert!(msg.contains("no/such/dir") && msg.contains("does not exist"), "{msg}");
    assert!(dir.listing().is_empty());
}

#[cfg(unix)]
#[test]
fn unwritable_output_directory_is_reported() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TestDir::new("ro");
    let ro = dir.path("ro");
    fs::create_dir(&ro).expect("mkdir");
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).expect("chmod");
    // root ignores directory permissions; then there is nothing to test.
    let probe = ro.join("probe");
    if fs::write(&probe, b"x").is_ok() {
        let _ = fs::remove_file(&probe);
        eprintln!("skipping: running with permission to write into read-only directories");
    } else {
        let p = ro.join("out.png");
        let msg = err_msg(check_output_path(&p));
        assert!(msg.contains("not writable"), "{msg}");
        let msg = err_msg(save_image(&p, &synthetic_photo(8, 8, 8), &[]));
        assert!(msg.contains("not writable"), "{msg}");
    }
    let _ = fs::set_permissions(&ro, fs::Permissions::from_mode(0o755));
}

#[test]
fn failed_save_leaves_existing_file_and_no_temp_files() {
    let dir = TestDir::new("atomic");
    let out = dir.path("result.png");
    let first = synthetic_photo(40, 30, 9);
    save_image(&out, &first, &[("run", "1")]).expect("first save");
    let before = fs::read(&out).expect("read");
    assert_eq!(dir.listing(), vec!["result.png".to_string()]);

    // A write failure in the middle of the PNG stream (after 100 bytes: signature, IHDR, text).
    let second = synthetic_painting(40, 30, 9);
    let err = testing::save_image_failing_after(&out, &second, &[("run", "2")], 100).expect_err("must fail");
    let msg = err.to_string();
    assert!(msg.contains("result.png") && msg.contains("simulated write failure"), "{msg}");
    assert_eq!(fs::read(&out).expect("read"), before, "existing output untouched");
    assert_eq!(dir.listing(), vec!["result.png".to_string()], "temp file removed");

    // Same for JPEG, failing on the very first byte.
    let jpg = dir.path("result.jpg");
    assert!(testing::save_image_failing_after(&jpg, &second, &[], 0).is_err());
    assert!(!jpg.exists());
    assert_eq!(dir.listing(), vec!["result.png".to_string()]);

    // A bad text key is refused before any file is created.
    let msg = err_msg(save_image(&out, &second, &[("", "empty key")]));
    assert!(msg.contains("1 to 79"), "{msg}");
    let msg = err_msg(save_image(&out, &second, &[("ключ", "non-Latin-1 key")]));
    assert!(msg.contains("Latin-1"), "{msg}");
    assert_eq!(fs::read(&out).expect("read"), before);

    // A malformed Planar is refused too.
    let bad = Planar { width: 4, height: 4, data: vec![0.0; 5] };
    let msg = err_msg(save_image(&out, &bad, &[]));
    assert!(msg.contains("needs 48"), "{msg}");

    // A successful save replaces the file and leaves nothing else behind.
    save_image(&out, &second, &[("run", "3")]).expect("second save");
    assert_ne!(fs::read(&out).expect("read"), before);
    assert_eq!(read_png_text(&out).expect("text"), vec![("run".to_string(), "3".to_string())]);
    assert_eq!(dir.listing(), vec!["result.png".to_string()]);
}

#[test]
fn check_output_path_accepts_writable_and_cleans_up() {
    let dir = TestDir::new("check");
    check_output_path(&dir.path("a.png")).expect("png ok");
    check_output_path(&dir.path("b.JPG")).expect("jpg ok");
    assert!(dir.listing().is_empty(), "probe file removed: {:?}", dir.listing());
    // An existing directory with an image name cannot be replaced by a file.
    fs::create_dir(dir.path("d.png")).expect("mkdir");
    let msg = err_msg(check_output_path(&dir.path("d.png")));
    assert!(msg.contains("d.png") && msg.contains("directory"), "{msg}");
}

#[test]
fn values_are_clamped_and_rounded_on_save() {
    let dir = TestDir::new("clamp");
    let p = dir.path("c.png");
    // R plane: below 0, above 1, NaN, and 0.5 (rounds to 128); G and B planes zero.
    let mut data = vec![-0.5, 1.7, f32::NAN, 0.5];
    data.extend([0.0; 8]);
    save_image(&p, &Planar { width: 4, height: 1, data }, &[]).expect("save");
    let img = load(&p).expect("load");
    let r: Vec<f32> = (0..4).map(|x| img.pixel(x, 0)[0]).collect();
    assert_eq!(r, vec![0.0, 1.0, 0.0, 128.0 / 255.0]);
}

// --------------------------------------------------------------------------------------------
// Resizing
// --------------------------------------------------------------------------------------------

#[test]
fn resize_longest_keeps_aspect() {
    let img = synthetic_photo(640, 480, 10);
    let small = resize_longest(&img, 128);
    assert_eq!((small.width, small.height), (128, 96));
    assert_eq!(small.data.len(), 3 * 128 * 96);
    let tall = resize_longest(&synthetic_photo(30, 200, 10), 100);
    assert_eq!((tall.width, tall.height), (15, 100));
    // Extreme aspect: the short side never reaches 0.
    let strip = resize_longest(&Planar::filled(1000, 2, [0.5; 3]), 10);
    assert_eq!((strip.width, strip.height), (10, 1));
    assert!(small.data.iter().all(|v| (0.0..=1.0).contains(v)));
}

#[test]
fn resize_1x1_and_constant_images() {
    let dot = Planar::filled(1, 1, [0.2, 0.4, 0.6]);
    let big = resize_longest(&dot, 9);
    assert_eq!((big.width, big.height), (9, 9));
    assert!(max_abs_diff(&big, &Planar::filled(9, 9, [0.2, 0.4, 0.6])) < 1e-5);
    let down = resize_exact(&big, 1, 1);
    assert!(max_abs_diff(&down, &dot) < 1e-5);

    let flat = Planar::filled(101, 67, [0.25, 0.5, 1.0]);
    for (w, h) in [(50, 33), (13, 7), (300, 200)] {
        let r = resize_exact(&flat, w, h);
        assert!(max_abs_diff(&r, &Planar::filled(w, h, [0.25, 0.5, 1.0])) < 1e-5, "{w}x{h}");
    }
}

#[test]
fn downscaling_is_antialiased() {
    // A one-pixel checkerboard has mean 0.5; a filter that merely picks taps would alias it
    // into stripes, a properly widened one averages it to flat grey.
    let (w, h) = (64u32, 64u32);
    let mut data = Vec::new();
    for _ in 0..3 {
        for y in 0..h {
            for x in 0..w {
                data.push(((x + y) % 2) as f32);
            }
        }
    }
    let small = resize_exact(&Planar { width: w, height: h, data }, 8, 8);
    assert!(max_abs_diff(&small, &Planar::filled(8, 8, [0.5; 3])) < 0.05, "{:?}", &small.data[..8]);
}

// --------------------------------------------------------------------------------------------
// Colour helpers and synthetic images
// --------------------------------------------------------------------------------------------

#[test]
fn yiq_round_trip() {
    let img = synthetic_painting(31, 17, 11);
    let yiq = rgb_to_yiq(&img);
    let back = yiq_to_rgb(&yiq);
    assert!(max_abs_diff(&img, &back) < 1e-5);
    // White has luminance 1 and no chroma; grey has no chroma.
    let white = rgb_to_yiq(&Planar::filled(1, 1, [1.0; 3]));
    assert!(max_abs_diff(&white, &Planar::filled(1, 1, [1.0, 0.0, 0.0])) < 1e-5, "{:?}", white.data);
    let y = rgb_to_yiq(&Planar::filled(1, 1, [1.0, 0.0, 0.0])).data[0];
    assert!((y - 0.299).abs() < 1e-6);
}

#[test]
fn synthetic_images_are_deterministic_valid_and_varied() {
    for make in [synthetic_photo as fn(u32, u32, u64) -> Planar, synthetic_painting] {
        let a = make(96, 64, 42);
        assert_eq!((a.width, a.height, a.data.len()), (96, 64, 3 * 96 * 64));
        assert_eq!(a, make(96, 64, 42), "same seed, same pixels");
        assert_ne!(a, make(96, 64, 43), "different seed, different pixels");
        assert!(a.data.iter().all(|v| (0.0..=1.0).contains(v)));
        let n = a.data.len() as f32;
        let mean = a.data.iter().sum::<f32>() / n;
        let std = (a.data.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n).sqrt();
        assert!(std > 0.1, "not flat: std {std}");
        // Colourful, not grey: the channel planes differ.
        let plane = a.plane_len();
        let rg = a.data[..plane].iter().zip(&a.data[plane..2 * plane]).map(|(r, g)| (r - g).abs()).sum::<f32>();
        assert!(rg / plane as f32 > 0.05);
    }
    // Tiny sizes work.
    assert_eq!(synthetic_photo(1, 1, 0).data.len(), 3);
    assert_eq!(synthetic_painting(3, 1, 0).data.len(), 9);
}
