//! The `stylize` binary end to end: a small render, and every bad input giving a one-line
//! actionable error with a non-zero exit (never a panic).

mod common;
use common::{fails_with, stylize, tmpdir, FAST};
use std::path::{Path, PathBuf};
use std::process::Command;
use stylize::image_io::{self, Planar};

fn images(dir: &Path) -> (PathBuf, PathBuf) {
    let c = dir.join("content.png");
    let s = dir.join("style.jpg");
    image_io::save_image(&c, &image_io::synthetic_photo(40, 30, 1), &[]).unwrap();
    image_io::save_image(&s, &image_io::synthetic_painting(36, 36, 2), &[]).unwrap();
    (c, s)
}

#[test]
fn renders_and_records_settings() {
    let d = tmpdir("ok");
    let (c, s) = images(&d);
    let out = d.join("out.png");
    let mut args =
        vec!["render", c.to_str().unwrap(), s.to_str().unwrap(), "-o", out.to_str().unwrap(), "--save-every", "2"];
    args.extend_from_slice(FAST);
    let o = stylize(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let img = image_io::load_image(&out, &Default::default()).unwrap();
    assert_eq!((img.width, img.height), (24, 18));
    let text = image_io::read_png_text(&out).unwrap();
    let get = |k: &str| text.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone()).unwrap_or_default();
    assert_eq!(get("stylize:step"), "3");
    assert!(get("stylize:command").contains("--steps 3"), "{text:?}");
    assert!(d.join("out_00002.png").exists(), "snapshot written");
    // Nothing else (no temporary files) left behind.
    let mut names: Vec<String> =
        std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    names.sort();
    assert_eq!(names, ["content.png", "out.png", "out_00002.png", "style.jpg"]);
}

#[test]
fn edge_options_are_recorded() {
    let d = tmpdir("edge");
    let (c, s) = images(&d);
    let out = d.join("out.png");
    let (c, s, o) = (c.to_str().unwrap(), s.to_str().unwrap(), out.to_str().unwrap());
    // The default (reflect, 16 px) is not spelled out; the others are, so the command reproduces.
    for (extra, want) in [
        (&[][..], None),
        (&["--edge", "zero"][..], Some("--edge zero")),
        (&["--edge-margin", "32"][..], Some("--edge-margin 32")),
    ] {
        let mut args = vec!["render", c, s, "-o", o];
        args.extend_from_slice(FAST);
        args.extend_from_slice(extra);
        let r = stylize(&args);
        assert!(r.status.success(), "{extra:?}: {}", String::from_utf8_lossy(&r.stderr));
        let text = image_io::read_png_text(&out).unwrap();
        let cmd = text.iter().find(|(k, _)| k == "stylize:command").map(|(_, v)| v.clone()).unwrap_or_default();
        match want {
            Some(w) => assert!(cmd.contains(w), "{cmd}"),
            None => assert!(!cmd.contains("--edge"), "{cmd}"),
        }
    }
    fails_with(&["render", c, s, "-o", o, "--edge", "mirror"], "--edge");
    let help = String::from_utf8_lossy(&stylize(&["render", "--help"]).stdout).to_string();
    assert!(help.contains("--edge <EDGE>") && help.contains("--edge-margin"), "{help}");
}

#[test]
fn bad_inputs_give_clear_errors() {
    let d = tmpdir("bad");
    let (c, s) = images(&d);
    let (c, s) = (c.to_str().unwrap(), s.to_str().unwrap());
    let out = d.join("o.png");
    let out = out.to_str().unwrap();
    let with = |extra: &[&str], base: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = base.iter().map(|s| s.to_string()).collect();
        // FAST's flags, except those `extra` overrides (clap refuses a flag given twice).
        let mut i = 0;
        while i < FAST.len() {
            let takes_value = FAST[i] != "--quiet";
            if !extra.contains(&FAST[i]) {
                v.push(FAST[i].to_string());
                if takes_value {
                    v.push(FAST[i + 1].to_string());
                }
            }
            i += if takes_value { 2 } else { 1 };
        }
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let run = |v: Vec<String>, needle: &str| fails_with(&v.iter().map(|s| s.as_str()).collect::<Vec<_>>(), needle);

    let missing = d.join("nope.png");
    run(with(&[], &["render", missing.to_str().unwrap(), s, "-o", out]), "nope.png");
    let txt = d.join("notes.png");
    std::fs::write(&txt, "not an image").unwrap();
    run(with(&[], &["render", c, txt.to_str().unwrap(), "-o", out]), "notes.png");
    let empty = d.join("empty.png");
    std::fs::write(&empty, b"").unwrap();
    run(with(&[], &["render", empty.to_str().unwrap(), s, "-o", out]), "empty.png");
    let tiny = d.join("tiny.png");
    image_io::save_image(&tiny, &Planar::filled(1, 1, [0.5, 0.5, 0.5]), &[]).unwrap();
    run(with(&[], &["render", tiny.to_str().unwrap(), s, "-o", out]), "too small");
    run(with(&["--size", "0"], &["render", c, s, "-o", out]), "--size");
    run(with(&["--size", "100000", "--tile", "off"], &["render", c, s, "-o", out]), "largest --size that fits");
    run(with(&["--size", "100000"], &["render", c, s, "-o", out]), "host memory");
    run(with(&["--tile", "0"], &["render", c, s, "-o", out]), "--tile");
    run(with(&["--style-layers", "relu9_1"], &["render", c, s, "-o", out]), "unknown layer");
    run(with(&["--lr", "-1"], &["render", c, s, "-o", out]), "--lr");
    run(with(&["--style-weight", "NaN"], &["render", c, s, "-o", out]), "--style-weight");
    run(with(&["--tv-weight", "-2"], &["render", c, s, "-o", out]), "--tv-weight");
    let nodir = d.join("no/such/dir/o.png");
    run(with(&[], &["render", c, s, "-o", nodir.to_str().unwrap()]), "does not exist");
    run(with(&[], &["render", c, s, "-o", d.join("o.bmp").to_str().unwrap()]), ".bmp");
    run(with(&["--adapter", "no-such-gpu-xyz"], &["render", c, s, "-o", out]), "no adapter matches");
    run(with(&["--style-layer-weights", "1"], &["render", c, s, "-o", out]), "style-layer-weights");
    run(with(&["--weights", "random:abc"], &["render", c, s, "-o", out]), "random:SEED");
    // A weights file of another model: an .npz whose tensors are not VGG19's.
    let bad_w = d.join("resnet.npz");
    write_npz(&bad_w);
    run(with(&["--weights", bad_w.to_str().unwrap()], &["render", c, s, "-o", out]), "resnet.npz");
    assert!(!Path::new(out).exists(), "no output written by a failed run");
}

#[test]
fn vgg16_by_file_or_option_and_model_errors() {
    let d = tmpdir("vgg16");
    let (c, s) = images(&d);
    let leak = |p: PathBuf| -> &'static str { Box::leak(p.to_str().unwrap().to_string().into_boxed_str()) };
    let (c, s) = (leak(c), leak(s));
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let v16 = leak(data.join("vgg16_tiny_legacy.pth"));
    let out = leak(d.join("o.png"));
    let base = ["--size", "24", "--steps", "2", "--quiet", "--content-layers", "relu2_1"];
    let args = |extra: &[&'static str]| {
        let mut v = vec!["render", c, s, "-o", out];
        v.extend_from_slice(&base);
        v.extend_from_slice(extra);
        v
    };
    // The file says VGG16: recognised without --model; --model vgg19 contradicts it.
    let o = stylize(&args(&["--weights", v16, "--style-layers", "relu1_1,relu3_3"]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = image_io::read_png_text(Path::new(out)).unwrap();
    let cmd = text.iter().find(|(k, _)| k == "stylize:command").map(|(_, v)| v.clone()).unwrap_or_default();
    assert!(cmd.contains("--model vgg16") && cmd.contains("relu3_3"), "{cmd}");
    std::fs::remove_file(out).unwrap();
    fails_with(&args(&["--weights", v16, "--model", "vgg19"]), "--model vgg19 disagrees with the weights");
    fails_with(&args(&["--weights", v16, "--style-layers", "relu5_4"]), "VGG16 has conv1_1..conv5_3");
    fails_with(&args(&["--weights", "random:1", "--model", "vgg16", "--style-layers", "conv3_4"]), "unknown layer");
    // Random VGG16 weights follow --model; pool3 ends block 3 after conv3_3.
    let o = stylize(&args(&["--weights", "random:1", "--model", "vgg16", "--style-layers", "relu1_1,pool3"]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = stylize(&["weights", "info", v16]);
    let info = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && info.contains("model:      VGG16"), "{info}");
    let help = String::from_utf8_lossy(&stylize(&["render", "--help"]).stdout).to_string();
    assert!(help.contains("--model") && help.contains("vgg16"), "{help}");
}

#[test]
fn no_adapter_at_all_is_an_error_with_a_hint() {
    let d = tmpdir("noadapter");
    let (c, s) = images(&d);
    // Restrict wgpu to a backend this machine does not have.
    let backend = if cfg!(target_os = "macos") { "dx12" } else { "metal" };
    let o = Command::new(env!("CARGO_BIN_EXE_stylize"))
        .args(["render", c.to_str().unwrap(), s.to_str().unwrap(), "-o", d.join("o.png").to_str().unwrap()])
        .args(FAST)
        .env("WGPU_BACKEND", backend)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("no GPU adapter found"), "{err}");
}

/// A minimal .npz (zip of .npy, stored) holding one tensor that is not VGG19's.
fn write_npz(path: &Path) {
    let mut npy = Vec::new();
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }";
    let mut h = header.to_string();
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    npy.extend_from_slice(b"\x93NUMPY\x01\x00");
    npy.extend_from_slice(&(h.len() as u16).to_le_bytes());
    npy.extend_from_slice(h.as_bytes());
    for v in [1.0f32, 2.0, 3.0, 4.0] {
        npy.extend_from_slice(&v.to_le_bytes());
    }
    // Write the zip by hand (stored, no compression) so the test needs no zip crate.
    let name = b"layer1.0.conv1.weight.npy";
    let crc = crc32(&npy);
    let mut z = Vec::new();
    z.extend_from_slice(&[0x50, 0x4b, 3, 4, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    z.extend_from_slice(&crc.to_le_bytes());
    z.extend_from_slice(&(npy.len() as u32).to_le_bytes());
    z.extend_from_slice(&(npy.len() as u32).to_le_bytes());
    z.extend_from_slice(&(name.len() as u16).to_le_bytes());
    z.extend_from_slice(&0u16.to_le_bytes());
    z.extend_from_slice(name);
    z.extend_from_slice(&npy);
    let cd = z.len();
    z.extend_from_slice(&[0x50, 0x4b, 1, 2, 20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    z.extend_from_slice(&crc.to_le_bytes());
    z.extend_from_slice(&(npy.len() as u32).to_le_bytes());
    z.extend_from_slice(&(npy.len() as u32).to_le_bytes());
    z.extend_from_slice(&(name.len() as u16).to_le_bytes());
    z.extend_from_slice(&[0; 12]);
    z.extend_from_slice(&0u32.to_le_bytes());
    z.extend_from_slice(name);
    let cd_len = z.len() - cd;
    z.extend_from_slice(&[0x50, 0x4b, 5, 6, 0, 0, 0, 0, 1, 0, 1, 0]);
    z.extend_from_slice(&(cd_len as u32).to_le_bytes());
    z.extend_from_slice(&(cd as u32).to_le_bytes());
    z.extend_from_slice(&0u16.to_le_bytes());
    std::fs::write(path, z).unwrap();
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0xEDB8_8320 } else { c >> 1 };
        }
    }
    !c
}

#[test]
fn non_finite_loss_stops_and_keeps_the_last_good_image() {
    let d = tmpdir("nan");
    let (c, s) = images(&d);
    let out = d.join("o.png");
    // Pixels are clamped to [0,1], so no learning rate can make them NaN: inject the fault.
    let mut args = vec!["render", c.to_str().unwrap(), s.to_str().unwrap(), "-o", out.to_str().unwrap()];
    args.extend_from_slice(&[
        "--size",
        "24",
        "--steps",
        "6",
        "--weights",
        "random:1",
        "--content-layers",
        "relu2_1",
        "--style-layers",
        "relu1_1",
        "--quiet",
        "--print-every",
        "2",
    ]);
    let o = Command::new(env!("CARGO_BIN_EXE_stylize")).args(&args).env("STYLIZE_FAULT_NAN_AT", "4").output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("NaN or infinite at step"), "{err}");
    let img = image_io::load_image(&out, &Default::default()).expect("last good image written");
    assert!(img.data.iter().all(|v| v.is_finite()));
    let text = image_io::read_png_text(&out).unwrap();
    // The image after step 4 is NaN, seen by the check of step 4 (read from step 5's pass); the
    // image verified at the check of step 2 (the image after step 2) is what was kept.
    assert!(err.contains("at step 4"), "{err}");
    assert!(text.iter().any(|(k, v)| k == "stylize:step" && v == "2"), "{text:?}");
}

#[cfg(unix)]
#[test]
fn sigint_saves_the_current_image_and_exits_nonzero() {
    use std::io::{BufRead, BufReader};
    let d = tmpdir("sigint");
    let (c, s) = images(&d);
    let out = d.join("o.png");
    let mut child = Command::new(env!("CARGO_BIN_EXE_stylize"))
        .args(["render", c.to_str().unwrap(), s.to_str().unwrap(), "-o", out.to_str().unwrap()])
        .args(["--size", "24", "--steps", "100000", "--weights", "random:1", "--content-layers", "relu1_2"])
        .args(["--style-layers", "relu1_1", "--print-every", "1"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // Wait until the optimisation loop runs (a progress line with step 2), then interrupt.
    let mut seen = String::new();
    for l in lines.by_ref() {
        let l = l.unwrap();
        seen += &l;
        seen.push('\n');
        if l.contains("step 2/") {
            break;
        }
    }
    let ok = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(ok.success());
    for l in lines {
        seen += &l.unwrap();
        seen.push('\n');
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "{seen}");
    assert!(seen.contains("interrupted at step"), "{seen}");
    let text = image_io::read_png_text(&out).expect("image saved on interrupt");
    let step: u32 = text.iter().find(|(k, _)| k == "stylize:step").map(|(_, v)| v.parse().unwrap()).unwrap();
    assert!(step >= 2, "{text:?}");
}

#[test]
fn check_command_passes_on_the_test_adapter() {
    // VGG19's whole iteration is tests/check.rs's; here the command line with VGG16's.
    let o = stylize(&["check", "--model", "vgg16"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("checks passed") && out.contains("conv3x3_forward"), "{out}");
    assert!(out.contains("whole vgg16 iteration 32x40, zero edge: image gradient"), "{out}");
    assert!(out.contains("whole vgg16 iteration 32x40, reflected 16 px: image gradient"), "{out}");
}

#[test]
fn tune_command_measures_and_saves_a_table_a_render_then_reads() {
    let d = tmpdir("tune");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_stylize")).args(args).env("STYLIZE_CACHE", &*d).output().expect("run")
    };
    // A small size keeps it short on lavapipe; the budget must let at least the first shape time
    // every candidate (pipelines compile slowly there), since a shape cut short is not kept.
    let o = run(&["tune", "--sizes", "8", "--budget", "30"]);
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("conv3x3 ") && err.contains("measured in"), "{out}{err}");
    let tables: Vec<_> = std::fs::read_dir(d.join("tune")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(tables.len(), 1, "{tables:?}");
    let text = std::fs::read_to_string(&tables[0]).unwrap();
    assert!(text.contains("\"adapter\"") && text.contains("\"kernels\"") && text.contains("conv3x3 "), "{text}");
    // A render reads it without complaint; a corrupt table is one warning line, and the render works.
    let (c, s) = images(&d);
    let out_png = d.join("out.png");
    let (c, s, o_path) = (c.to_str().unwrap(), s.to_str().unwrap(), out_png.to_str().unwrap());
    let args = [&["render", c, s, "-o", o_path, "--tune", "cached"], FAST].concat();
    let o = run(&args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && !err.contains("warning"), "{err}");
    std::fs::write(&tables[0], "{oops").unwrap();
    let o = run(&args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert_eq!(err.lines().filter(|l| l.contains("warning") && l.contains("rebuilt")).count(), 1, "{err}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_first_run_without_xdg_runtime_dir_prints_no_error_lines() {
    // Mesa's Vulkan device-select layer asks Wayland for the default GPU and libwayland prints
    // "error: XDG_RUNTIME_DIR is invalid or not set in the environment." twice on a headless
    // machine; stylize switches that layer off where there is no runtime directory (and probes
    // GL only when no native adapter exists), so a first run prints no such line.
    let d = tmpdir("xdg");
    let (c, s) = images(&d);
    let out = d.join("o.png");
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stylize"));
        cmd.args(args).env_remove("XDG_RUNTIME_DIR").env_remove("WGPU_BACKEND");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let o = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(o.status.success(), "{args:?}: {err}");
        (String::from_utf8_lossy(&o.stdout).to_string(), err)
    };
    let (devices, err) = run(&["devices"], &[]);
    assert!(!err.contains("XDG_RUNTIME_DIR") && !err.contains("error"), "devices: {err}");
    assert!(devices.contains("backend Vulkan"), "{devices}");
    let args = ["render", c.to_str().unwrap(), s.to_str().unwrap(), "-o", out.to_str().unwrap()];
    let small = ["--size", "24", "--steps", "2", "--weights", "random:1", "--content-layers", "relu1_1"];
    let (_, err) = run(&[&args[..], &small[..], &["--style-layers", "relu1_1"]].concat(), &[]);
    assert!(!err.contains("XDG_RUNTIME_DIR") && !err.contains("error"), "render: {err}");
    // WGPU_BACKEND still selects the backends probed: GL only (an empty list is an error).
    let o = Command::new(env!("CARGO_BIN_EXE_stylize")).arg("devices").env("WGPU_BACKEND", "gl").output().unwrap();
    assert!(!String::from_utf8_lossy(&o.stdout).contains("backend Vulkan"));
}

/// Splits a recorded command line: words separated by spaces, "..." quoted with backslash
/// escapes (Rust's `{:?}` of a string, which the command uses for paths).
fn split_command(cmd: &str) -> Vec<String> {
    let (mut out, mut word, mut chars) = (vec![], None::<String>, cmd.chars());
    while let Some(ch) = chars.next() {
        match ch {
            ' ' => out.extend(word.take()),
            '"' => {
                let w = word.get_or_insert_with(String::new);
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => w.extend(chars.next()),
                        c => w.push(c),
                    }
                }
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    out.extend(word);
    out
}

#[test]
fn the_recorded_command_reproduces_the_render_on_its_own() {
    // The command in the PNG, run as it is (only -o changed), gives the same pixels: it holds
    // --weights (here random:3, and a file's path below) and every setting that shapes the result.
    let d = tmpdir("recorded");
    let (c, s) = images(&d);
    let npz = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/vgg_tiny_legacy.pth");
    for (name, extra) in [
        ("random", vec!["--weights", "random:3", "--optimizer", "lbfgs", "--lbfgs-history", "4"]),
        ("file", vec!["--weights", npz.to_str().unwrap(), "--style-weight", "30", "--pool", "max"]),
    ] {
        let out = d.join(format!("{name}.png"));
        let mut args = vec!["render", c.to_str().unwrap(), s.to_str().unwrap(), "-o", out.to_str().unwrap()];
        args.extend([
            "--size",
            "24",
            "--steps",
            "3",
            "--content-layers",
            "relu2_1",
            "--style-layers",
            "relu1_1,relu2_1",
        ]);
        args.extend(["--quiet"]);
        args.extend(&extra);
        let r = stylize(&args);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        let text = image_io::read_png_text(&out).unwrap();
        let cmd = text.iter().find(|(k, _)| k == "stylize:command").map(|(_, v)| v.clone()).unwrap();
        println!("{cmd}");
        assert!(
            cmd.contains(&format!(
                "--weights {}",
                if name == "random" { "random:3".to_string() } else { format!("{:?}", npz.display().to_string()) }
            )),
            "{cmd}"
        );
        let mut words = split_command(&cmd);
        assert_eq!(&words[..2], ["stylize", "render"]);
        let again = d.join(format!("{name}-again.png"));
        let i = words.iter().position(|w| w == "-o").unwrap();
        words[i + 1] = again.display().to_string();
        words.push("--quiet".into());
        let words: Vec<&str> = words.iter().skip(1).map(|w| w.as_str()).collect();
        let r = stylize(&words);
        assert!(r.status.success(), "{cmd}: {}", String::from_utf8_lossy(&r.stderr));
        let (a, b) = (
            image_io::load_image(&out, &Default::default()).unwrap(),
            image_io::load_image(&again, &Default::default()).unwrap(),
        );
        assert_eq!(a.data, b.data, "{name}: the recorded command gave another image");
        // And it records itself again: the same command but for the output path.
        let text = image_io::read_png_text(&again).unwrap();
        let cmd2 = text.iter().find(|(k, _)| k == "stylize:command").map(|(_, v)| v.clone()).unwrap();
        assert_eq!(
            cmd2.replace(&format!("{:?}", again.display().to_string()), "OUT"),
            cmd.replace(&format!("{:?}", out.display().to_string()), "OUT")
        );
    }
}
