//! Output for print work (issue 18): `--bit-depth 16` PNGs, and the content image's ICC colour
//! profile carried into the output, through the binary.

mod common;
use common::tmpdir;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use stylize::image_io::{self, SaveOptions};

fn stylize(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stylize")).args(args).output().expect("run stylize")
}

fn render(c: &Path, s: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["render", c.to_str().unwrap(), s.to_str().unwrap(), "-o", out.to_str().unwrap()];
    args.extend(["--size", "32", "--steps", "4", "--weights", "random:1", "--content-layers", "relu2_1"]);
    args.extend(["--style-layers", "relu1_1,relu2_1", "--quiet"]);
    args.extend(extra);
    stylize(&args)
}

fn ok(o: &Output) {
    assert!(o.status.success(), "stylize failed: {}", String::from_utf8_lossy(&o.stderr));
}

/// (bit depth, interleaved samples as u16, ICC profile) of a PNG.
fn read_png(p: &Path) -> (png::BitDepth, Vec<u16>, Option<Vec<u8>>) {
    let mut r = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(p).unwrap())).read_info().unwrap();
    let mut buf = vec![0; r.output_buffer_size().unwrap()];
    let info = r.next_frame(&mut buf).unwrap();
    let bytes = &buf[..info.buffer_size()];
    let samples = match info.bit_depth {
        png::BitDepth::Sixteen => bytes.chunks_exact(2).map(|b| u16::from_be_bytes([b[0], b[1]])).collect(),
        _ => bytes.iter().map(|&b| b as u16).collect(),
    };
    let icc = r.info().icc_profile.as_ref().map(|c| c.to_vec());
    (info.bit_depth, samples, icc)
}

/// A made-up ICC profile: an ICC header's layout (size, 'acsp' signature) around random bytes;
/// nothing between reading and writing interprets it, so any bytes must arrive unchanged.
fn fake_icc(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    v[..4].copy_from_slice(&(len as u32).to_be_bytes());
    v[36..40].copy_from_slice(b"acsp");
    v
}

fn inputs(d: &Path, icc: Option<Vec<u8>>) -> (PathBuf, PathBuf) {
    let (c, s) = (d.join("content.png"), d.join("style.png"));
    let opts = SaveOptions { bit_depth: 8, icc_profile: icc };
    image_io::save_image_as(&c, &image_io::synthetic_photo(48, 36, 1), &[], &opts).unwrap();
    image_io::save_image(&s, &image_io::synthetic_painting(36, 36, 2), &[]).unwrap();
    (c, s)
}

#[test]
fn a_16_bit_render_is_the_8_bit_one_with_finer_levels() {
    let d = tmpdir("16");
    let (c, s) = inputs(&d, None);
    let (o8, o16) = (d.join("o8.png"), d.join("o16.png"));
    ok(&render(&c, &s, &o8, &[]));
    ok(&render(&c, &s, &o16, &["--bit-depth", "16"]));
    let (d8, v8, _) = read_png(&o8);
    let (d16, v16, _) = read_png(&o16);
    assert_eq!((d8, d16), (png::BitDepth::Eight, png::BitDepth::Sixteen));
    assert_eq!(v8.len(), v16.len());
    // The same f32 image rounded twice: 8 bits within half a level of it, 16 bits within 1/131070.
    let worst = v8.iter().zip(&v16).map(|(&a, &b)| (a as f64 / 255.0 - b as f64 / 65535.0).abs()).fold(0.0, f64::max);
    println!("8-bit vs 16-bit: worst difference {:.3} of an 8-bit level", worst * 255.0);
    assert!(worst <= 0.5 / 255.0 + 1.0 / 65535.0, "{worst}");
    // More than 256 levels are used (per channel), which 8 bits cannot hold.
    for ch in 0..3 {
        let mut levels: Vec<u16> = v16.iter().skip(ch).step_by(3).copied().collect();
        levels.sort();
        levels.dedup();
        println!("channel {ch}: {} distinct 16-bit levels", levels.len());
        assert!(levels.len() > 256, "channel {ch}: only {} levels", levels.len());
    }
    // It decodes as an input too, and the command records the depth.
    let img = image_io::load_image(&o16, &Default::default()).unwrap();
    assert_eq!((img.width, img.height), (32, 24));
    let text = image_io::read_png_text(&o16).unwrap();
    assert!(text.iter().any(|(k, v)| k == "stylize:command" && v.contains("--bit-depth 16")));
    // JPEG holds 8 bits: refused up front, nothing written.
    let jpg = d.join("o.jpg");
    let r = render(&c, &s, &jpg, &["--bit-depth", "16"]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success() && err.contains("JPEG holds 8 bits per channel"), "{err}");
    assert!(!jpg.exists());
    let r = render(&c, &s, &o8, &["--bit-depth", "12"]);
    assert!(!r.status.success() && String::from_utf8_lossy(&r.stderr).contains("8 or 16"));
    // A batch whose outputs mix PNG and JPEG: refused before its first frame (a.png), not after.
    let (frames, styled) = (d.join("frames"), d.join("styled"));
    std::fs::create_dir_all(&frames).unwrap();
    image_io::save_image(&frames.join("a.png"), &image_io::synthetic_photo(40, 30, 3), &[]).unwrap();
    image_io::save_image(&frames.join("b.jpg"), &image_io::synthetic_photo(40, 30, 4), &[]).unwrap();
    let r = render(&frames, &s, &styled, &["--bit-depth", "16"]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success() && err.contains("JPEG holds 8 bits per channel"), "{err}");
    assert!(!styled.join("a.png").exists(), "the PNG frame was rendered before the refusal");
}

#[test]
fn the_content_icc_profile_arrives_byte_identical() {
    let d = tmpdir("icc");
    for (name, icc) in [("png", fake_icc(7, 3000)), ("jpeg", fake_icc(9, 70_000))] {
        let (c, s) = inputs(&d, None);
        // A JPEG's profile travels in APP2 segments of at most 64 KiB: 70,000 bytes take two.
        let content = if name == "png" { c } else { d.join("content.jpg") };
        image_io::save_image_as(
            &content,
            &image_io::synthetic_photo(48, 36, 1),
            &[],
            &SaveOptions { bit_depth: 8, icc_profile: Some(icc.clone()) },
        )
        .unwrap();
        assert_eq!(image_io::load_icc_profile(&content).unwrap().as_deref(), Some(&icc[..]), "{name} input");
        for depth in ["8", "16"] {
            let out = d.join(format!("out-{name}-{depth}.png"));
            ok(&render(&content, &s, &out, &["--bit-depth", depth]));
            let (_, _, got) = read_png(&out);
            assert_eq!(got.as_deref(), Some(&icc[..]), "{name} content, {depth}-bit output");
        }
    }
    // No profile in, none out.
    let (c, s) = inputs(&d, None);
    let out = d.join("plain.png");
    ok(&render(&c, &s, &out, &[]));
    assert_eq!(read_png(&out).2, None);
}
