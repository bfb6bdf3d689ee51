//! `stylize render`'s capabilities beyond a plain render (issue 5), each shown to do what it says:
//! several styles with blend weights, style scale, original colours and colour matching,
//! multi-scale rendering, iterate averaging, seeded repeatability, live preview, JSON loss log
//! and its plot, batch / video rendering with temporal initialisation.
//!
//! Everything runs small (16-32 px, random weights, shallow layers, a few steps) so the suite
//! stays fast on a software Vulkan driver. Library-level tests call `render::render` or the
//! `Engine`/`Stage` the render loop uses; the others drive the binary.

mod common;
use common::{fails_with, stylize, tmpdir, FAST};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use stylize::image_io::{self, Planar};
use stylize::render::{self, Engine, Init, RenderOptions, WeightsSource};
use stylize::runner::{compute_targets, Graph, Targets};

/// A 40x30 content photo and two 36x36 styles with different palettes.
fn images(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let c = dir.join("content.png");
    let s1 = dir.join("style1.png");
    let s2 = dir.join("style2.png");
    image_io::save_image(&c, &image_io::synthetic_photo(40, 30, 1), &[]).unwrap();
    image_io::save_image(&s1, &image_io::synthetic_painting(36, 36, 2), &[]).unwrap();
    image_io::save_image(&s2, &image_io::synthetic_painting(36, 36, 7), &[]).unwrap();
    (c, s1, s2)
}

fn load(p: &Path) -> Planar {
    image_io::load_image(p, &Default::default()).unwrap()
}

fn png_text(p: &Path, key: &str) -> String {
    image_io::read_png_text(p).unwrap().into_iter().find(|(k, _)| k == key).map(|(_, v)| v).unwrap_or_default()
}

/// Small, fast library options: 24 px, random weights, shallow layers, 3 steps, quiet.
fn fast(content: &Path, styles: &[&Path], out: &Path) -> RenderOptions {
    RenderOptions {
        content: content.to_path_buf(),
        styles: styles.iter().map(|p| p.to_path_buf()).collect(),
        output: out.to_path_buf(),
        size: 24,
        steps: 3,
        weights: WeightsSource::Random(1),
        content_layers: vec!["relu2_1".into()],
        style_layers: vec!["relu1_1".into(), "relu2_1".into()],
        quiet: true,
        ..Default::default()
    }
}

fn stylize_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stylize")).current_dir(dir).args(args).output().expect("run stylize")
}

fn ok(o: &Output) {
    assert!(o.status.success(), "stylize failed: {}", String::from_utf8_lossy(&o.stderr));
}

/// The JSON log as (key -> number) maps, one per line.
fn read_log(p: &Path) -> Vec<std::collections::HashMap<String, f64>> {
    let text = std::fs::read_to_string(p).unwrap();
    text.lines()
        .map(|l| {
            let l = l.trim().trim_start_matches('{').trim_end_matches('}');
            l.split(',')
                .map(|kv| {
                    let (k, v) = kv.split_once(':').unwrap();
                    let v: f64 = v.trim().parse().unwrap_or_else(|_| panic!("not a finite number: {kv} in {l}"));
                    (k.trim().trim_matches('"').to_string(), v)
                })
                .collect()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 2. Several styles with blend weights
// ---------------------------------------------------------------------------------------------

#[test]
fn blend_weights_one_zero_equal_the_single_style_render() {
    let d = tmpdir("blend10");
    let (c, s1, s2) = images(&d);
    let single = render::render(&fast(&c, &[&s1], &d.join("single.png"))).unwrap();
    let mut o = fast(&c, &[&s1, &s2], &d.join("blend.png"));
    o.style_blend_weights = Some(vec![1.0, 0.0]);
    let blend = render::render(&o).unwrap();
    // Same losses to the bit, at the start and after 3 steps, and the same pixels.
    assert_eq!(single.first, blend.first);
    assert_eq!(single.last, blend.last);
    assert_eq!(load(&d.join("single.png")).data, load(&d.join("blend.png")).data);
    // Both styles' targets were computed (the blend is real arithmetic, not a skipped style).
    assert_eq!(blend.style_target_passes, 2);
    // And another blend gives another result.
    o.style_blend_weights = Some(vec![1.0, 1.0]);
    o.output = d.join("half.png");
    let half = render::render(&o).unwrap();
    assert_ne!(half.first.style, single.first.style);
}

#[test]
fn blended_targets_are_the_normalised_mix_of_each_styles_grams() {
    let d = tmpdir("blendmix");
    let (c, s1, s2) = images(&d);
    let mut o = fast(&c, &[&s1, &s2], &d.join("o.png"));
    o.style_blend_weights = Some(vec![3.0, 1.0]); // normalised to 0.75, 0.25
    let (mut eng, _) = Engine::new(&o, None).unwrap();
    assert_eq!(eng.blend, vec![0.75, 0.25]);
    let plan = eng.plan_size(&o, &load(&c), 24).unwrap();
    let mixed = eng.style_targets(&plan, None).unwrap();
    let grams = |p: &Path| {
        let i = load(p);
        let (w, h) = render::working_size(i.width, i.height, 24);
        let r = image_io::resize_exact(&i, w as u32, h as u32);
        let t = compute_targets(&eng.ctx, &eng.net, &eng.settings, &r.data, h, w, false, true).unwrap();
        t.style.iter().map(|g| g.read(&eng.ctx).unwrap()).collect::<Vec<_>>()
    };
    let (a, b) = (grams(&s1), grams(&s2));
    for (l, m) in mixed.iter().enumerate() {
        let got = m.read(&eng.ctx).unwrap();
        let want: Vec<f64> = a[l].iter().zip(&b[l]).map(|(x, y)| 0.75 * *x as f64 + 0.25 * *y as f64).collect();
        common::assert_close(&format!("blended Gram target, style layer {l}"), &got, &want, 1e-6);
    }
    // Cached: asking again costs no forward pass.
    let passes = eng.style_target_passes;
    eng.style_targets(&plan, None).unwrap();
    assert_eq!(eng.style_target_passes, passes);
}

// ---------------------------------------------------------------------------------------------
// 3. Style scale
// ---------------------------------------------------------------------------------------------

#[test]
fn style_scale_sizes_the_style_relative_to_the_output() {
    // A 48x48 style with --size 24 --style-scale 2: its longest side must be 2 * 24 = 48, that is
    // the file's own pixels, unresized. Build that graph by hand and compare the losses bit for bit.
    let d = tmpdir("stylescale");
    let c = d.join("content.png");
    let s = d.join("style48.png");
    image_io::save_image(&c, &image_io::synthetic_photo(40, 30, 1), &[]).unwrap();
    image_io::save_image(&s, &image_io::synthetic_painting(48, 48, 3), &[]).unwrap();
    let mut o = fast(&c, &[&s], &d.join("o.png"));
    o.style_scale = 2.0;
    let (mut eng, _) = Engine::new(&o, None).unwrap();
    let content = load(&c);
    let st = eng.stage(&o, &content, &eng.plan_size(&o, &content, 24).unwrap(), None).unwrap();
    st.graph.evaluate(&eng.ctx).unwrap();
    let via_flag = st.graph.read_losses(&eng.ctx).unwrap();

    let style = load(&s);
    let ts = compute_targets(&eng.ctx, &eng.net, &eng.settings, &style.data, 48, 48, false, true).unwrap();
    let tc =
        compute_targets(&eng.ctx, &eng.net, &eng.settings, &st.content.data, st.height, st.width, true, false).unwrap();
    let targets = Targets { content: tc.content, style: ts.style };
    let adam = stylize::gpu::adam::AdamConfig::default();
    let g =
        Graph::new(&eng.ctx, &eng.net, &eng.settings, &targets, &st.content.data, st.height, st.width, adam).unwrap();
    g.evaluate(&eng.ctx).unwrap();
    let by_hand = g.read_losses(&eng.ctx).unwrap();
    assert_eq!(via_flag, by_hand, "--style-scale 2 at --size 24 uses the 48 px style as is");

    // The default (style at the output's 24 px) gives other style losses.
    o.style_scale = 1.0;
    let st1 = eng.stage(&o, &content, &eng.plan_size(&o, &content, 24).unwrap(), None).unwrap();
    st1.graph.evaluate(&eng.ctx).unwrap();
    assert_ne!(st1.graph.read_losses(&eng.ctx).unwrap().style, via_flag.style);
}

// ---------------------------------------------------------------------------------------------
// 4. Original colours and colour matching
// ---------------------------------------------------------------------------------------------

/// A low-saturation content image (luminance mid-range, chroma small), so that transferring the
/// result's luminance cannot leave the RGB gamut and be clipped.
fn soft_content(w: u32, h: u32) -> Planar {
    let n = (w * h) as usize;
    let mut data = vec![0.0f32; 3 * n];
    for y in 0..h {
        for x in 0..w {
            let i = (y * w + x) as usize;
            let (fx, fy) = (x as f32, y as f32);
            data[i] = 0.52 + 0.08 * (fx / 5.0).sin();
            data[n + i] = 0.47 + 0.08 * (fy / 4.0).cos();
            data[2 * n + i] = 0.50 + 0.06 * ((fx + fy) / 6.0).sin();
        }
    }
    Planar { width: w, height: h, data }
}

fn yiq_planes(p: &Planar) -> (Vec<f32>, Vec<f32>) {
    let n = p.plane_len();
    let y = image_io::rgb_to_yiq(p);
    (y.data[..n].to_vec(), y.data[n..].to_vec())
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn original_colors_keep_the_contents_chrominance_and_the_results_luminance() {
    let d = tmpdir("origcolors");
    let c = d.join("content.png");
    image_io::save_image(&c, &soft_content(40, 30), &[]).unwrap();
    let s = d.join("style.png");
    image_io::save_image(&s, &image_io::synthetic_painting(36, 36, 2), &[]).unwrap();
    let (a, b) = (d.join("plain.png"), d.join("orig.png"));
    let base = ["render", c.to_str().unwrap(), s.to_str().unwrap(), "--steps", "8"];
    let fast: Vec<&str> = FAST.iter().copied().filter(|a| *a != "--steps" && *a != "3").collect();
    let mut args: Vec<&str> = base.to_vec();
    args.extend(["-o", a.to_str().unwrap()]);
    args.extend(&fast);
    ok(&stylize(&args));
    args = base.to_vec();
    args.extend(["-o", b.to_str().unwrap(), "--original-colors", "--save-every", "4"]);
    args.extend(&fast);
    ok(&stylize(&args));

    let content = load(&c);
    let content = image_io::resize_exact(&content, 24, 18);
    let (cy, ciq) = yiq_planes(&content);
    let (ay, aiq) = yiq_planes(&load(&a));
    let (by, biq) = yiq_planes(&load(&b));
    // 8-bit output: an RGB rounding of 0.5/255 moves I or Q by at most 1.2 * 0.5/255 = 0.0024.
    let iq_err = max_diff(&biq, &ciq);
    let y_err = max_diff(&by, &ay);
    println!("--original-colors: I/Q vs content {iq_err:.4}, Y vs plain result {y_err:.4}");
    assert!(iq_err <= 0.003, "I/Q differ from the content's by {iq_err}");
    assert!(y_err <= 0.005, "Y differs from the plain result's by {y_err}");
    // Without the flag the colours did move (the check above is not vacuous), and the luminance
    // is the result's, not the content's.
    assert!(
        max_diff(&aiq, &ciq) > 0.02,
        "the plain render kept the content's colours by itself: {}",
        max_diff(&aiq, &ciq)
    );
    assert!(max_diff(&by, &cy) > 0.02);
    // Snapshots get the same treatment.
    let (_, siq) = yiq_planes(&load(&d.join("orig_00004.png")));
    assert!(max_diff(&siq, &ciq) <= 0.003);
}

#[test]
fn transfer_luminance_is_exact_in_gamut() {
    let content = soft_content(13, 7);
    let mut result = soft_content(13, 7);
    // Another image: shifted luminance, other chroma.
    for (i, v) in result.data.iter_mut().enumerate() {
        *v = (*v * 0.8 + 0.1 + 0.03 * ((i % 5) as f32)).clamp(0.0, 1.0);
    }
    let out = image_io::transfer_luminance(&result, &content);
    let (oy, oiq) = yiq_planes(&out);
    let (ry, _) = yiq_planes(&result);
    let (_, ciq) = yiq_planes(&content);
    assert!(max_diff(&oy, &ry) < 1e-5, "{}", max_diff(&oy, &ry));
    assert!(max_diff(&oiq, &ciq) < 1e-5, "{}", max_diff(&oiq, &ciq));
}

fn check_stats_match(a: &Planar, b: &Planar, tol: f64) {
    let (ma, ca) = image_io::color_stats(a);
    let (mb, cb) = image_io::color_stats(b);
    for k in 0..3 {
        assert!((ma[k] - mb[k]).abs() < tol, "mean {k}: {} vs {}", ma[k], mb[k]);
        for l in 0..3 {
            assert!((ca[k][l] - cb[k][l]).abs() < tol, "cov {k}{l}: {} vs {}", ca[k][l], cb[k][l]);
        }
    }
}

#[test]
fn color_match_gives_the_style_the_contents_mean_and_covariance() {
    let content = image_io::synthetic_photo(64, 48, 1);
    let style = image_io::synthetic_painting(50, 70, 2);
    let (ms, _) = image_io::color_stats(&style);
    let (mc, _) = image_io::color_stats(&content);
    assert!((0..3).any(|k| (ms[k] - mc[k]).abs() > 0.05), "the test images differ in colour");
    let matched = image_io::color_match(&style, &content);
    assert_eq!((matched.width, matched.height), (50, 70));
    check_stats_match(&matched, &content, 1e-3);
    // Much tighter than 1e-3 in fact (f32 pixels): the transform is exact up to rounding.
    check_stats_match(&matched, &content, 1e-5);
    // Matching an image to itself changes nothing (to rounding).
    let same = image_io::color_match(&content, &content);
    assert!(max_diff(&same.data, &content.data) < 1e-4);
    // A flat style (no colour variance) gives a finite image with the content's mean.
    let flat = Planar::filled(20, 20, [0.9, 0.1, 0.2]);
    let f = image_io::color_match(&flat, &content);
    assert!(f.data.iter().all(|v| v.is_finite()));
    let (mf, _) = image_io::color_stats(&f);
    for k in 0..3 {
        assert!((mf[k] - mc[k]).abs() < 1e-4);
    }
}

#[test]
fn symmetric_eigen3_reconstructs_the_matrix() {
    let m = [[0.04, 0.01, -0.02], [0.01, 0.09, 0.005], [-0.02, 0.005, 0.03]];
    let (l, v) = image_io::symmetric_eigen3(&m);
    for i in 0..3 {
        for j in 0..3 {
            let r: f64 = (0..3).map(|k| v[i][k] * l[k] * v[j][k]).sum();
            assert!((r - m[i][j]).abs() < 1e-14, "({i},{j}) {r} vs {}", m[i][j]);
            let orth: f64 = (0..3).map(|k| v[k][i] * v[k][j]).sum();
            assert!((orth - if i == j { 1.0 } else { 0.0 }).abs() < 1e-14);
        }
    }
}

#[test]
fn color_match_changes_the_style_targets_of_a_render() {
    let d = tmpdir("colormatch");
    let (c, s1, _) = images(&d);
    let plain = render::render(&fast(&c, &[&s1], &d.join("a.png"))).unwrap();
    let mut o = fast(&c, &[&s1], &d.join("b.png"));
    o.color_match = true;
    let matched = render::render(&o).unwrap();
    // Same content target and start image, other style targets.
    assert_eq!(plain.first.content, matched.first.content);
    assert_ne!(plain.first.style, matched.first.style);
    assert!(matched.last.total().is_finite());
}

// ---------------------------------------------------------------------------------------------
// 5. Multi-scale
// ---------------------------------------------------------------------------------------------

#[test]
fn scale_sizes_are_geometric() {
    assert_eq!(render::scale_sizes(128, 512, 1), vec![512]);
    assert_eq!(render::scale_sizes(128, 512, 3), vec![128, 256, 512]);
    assert_eq!(render::scale_sizes(16, 32, 2), vec![16, 32]);
    assert_eq!(render::scale_sizes(100, 1000, 4), vec![100, 215, 464, 1000]);
}

#[test]
fn two_scales_start_the_fine_scale_from_the_upsampled_coarse_result() {
    let d = tmpdir("multiscale");
    let (c, s1, _) = images(&d);
    let mut o = fast(&c, &[&s1], &d.join("ms.png"));
    o.size = 32;
    o.scales = 2;
    o.initial_size = 16;
    o.steps = 15;
    o.init = Init::Noise;
    o.seed = 3;
    o.content_weight = Some(1e3);
    let ms = render::render(&o).unwrap();
    assert_eq!(ms.stages.len(), 2);
    assert_eq!((ms.stages[0].width, ms.stages[0].height), (16, 12));
    assert_eq!((ms.stages[1].width, ms.stages[1].height), (32, 24));
    let out = load(&d.join("ms.png"));
    assert_eq!((out.width, out.height), (32, 24));
    assert_eq!(png_text(&d.join("ms.png"), "stylize:step"), "30");

    // A fresh 32 px run from the same kind of start (seeded noise).
    o.scales = 1;
    o.output = d.join("fresh.png");
    let fresh = render::render(&o).unwrap();
    let (coarse_start, fine_start, fresh_start) =
        (ms.stages[0].first.total(), ms.stages[1].first.total(), fresh.first.total());
    println!(
        "coarse 16 px: {coarse_start:.4e} -> {:.4e}; fine 32 px starts at {fine_start:.4e}; fresh 32 px starts at {fresh_start:.4e}",
        ms.stages[0].last.total()
    );
    assert!(fine_start < fresh_start, "the fine scale starts no lower than a fresh run");
    // Control: the same two scales with no steps at the coarse one (so the fine scale starts
    // from the 16 px noise upsampled, which is smoother than 32 px noise and so already has a
    // lower loss). The optimised coarse result must start the fine scale lower still.
    o.scales = 2;
    o.scale_steps = Some(vec![0, 15]);
    o.output = d.join("control.png");
    let control = render::render(&o).unwrap();
    let control_start = control.stages[1].first.total();
    println!("control (0 coarse steps): fine 32 px starts at {control_start:.4e}, ends at {:.4e}; two scales end at {:.4e}, fresh at {:.4e}",
        control.last.total(), ms.last.total(), fresh.last.total());
    assert!(fine_start < 0.8 * control_start, "the fine scale did not start from the optimised coarse result");
    // After the same number of fine-scale steps the coarse-to-fine run is ahead of both.
    assert!(ms.last.total() < fresh.last.total());
    assert!(ms.last.total() < control.last.total());
}

#[test]
fn scale_steps_set_each_scales_steps() {
    let d = tmpdir("scalesteps");
    let (c, s1, _) = images(&d);
    let out = d.join("o.png");
    let mut args = vec!["render", c.to_str().unwrap(), s1.to_str().unwrap(), "-o", out.to_str().unwrap()];
    args.extend(FAST);
    args.extend(["--scales", "3", "--initial-size", "12", "--scale-steps", "4,2,1", "--log-json"]);
    let log = d.join("log.jsonl");
    args.push(log.to_str().unwrap());
    ok(&stylize(&args));
    let lines = read_log(&log);
    let last_of = |scale: f64| lines.iter().filter(|l| l["scale"] == scale).map(|l| l["step"]).fold(0.0, f64::max);
    assert_eq!((last_of(0.0), last_of(1.0), last_of(2.0)), (4.0, 2.0, 1.0));
    let widths: Vec<f64> =
        [0.0, 1.0, 2.0].iter().map(|&s| lines.iter().find(|l| l["scale"] == s).unwrap()["width"]).collect();
    assert_eq!(widths, vec![12.0, 17.0, 24.0]);
    assert_eq!(png_text(&out, "stylize:step"), "7");
}

// ---------------------------------------------------------------------------------------------
// 6. Iterate averaging
// ---------------------------------------------------------------------------------------------

#[test]
fn avg_decay_output_is_the_gpu_ema_of_the_iterates() {
    let d = tmpdir("ema");
    let (c, s1, _) = images(&d);
    let mut o = fast(&c, &[&s1], &d.join("o.png"));
    o.avg_decay = 0.8;
    o.lr = Some(0.05);
    let (mut eng, _) = Engine::new(&o, None).unwrap();
    let st = eng.stage(&o, &load(&c), &eng.plan_size(&o, &load(&c), 24).unwrap(), None).unwrap();
    let ctx = &eng.ctx;
    // The render's stage: the average starts with the initial image (t = 1), then every step.
    let x0 = st.read_iterate(ctx).unwrap();
    let mut avg = vec![0.0f64; x0.len()];
    stylize::reference::ema_update(&mut avg, &common::f64s(&x0), 0.8);
    for t in 2..=7 {
        st.step(ctx, None).unwrap();
        ctx.wait().unwrap();
        let x = st.read_iterate(ctx).unwrap();
        stylize::reference::ema_update(&mut avg, &common::f64s(&x), 0.8);
        let want: Vec<f64> = avg.iter().map(|a| a / (1.0 - 0.8f64.powi(t))).collect();
        common::assert_close(
            &format!("stage output after {} steps vs CPU EMA of the iterates", t - 1),
            &st.read_output(ctx).unwrap(),
            &want,
            1e-6,
        );
        // The iterate itself is not the output.
        assert!(max_diff(&x, &st.read_output(ctx).unwrap()) > 1e-3);
    }
}

#[test]
fn avg_decay_render_writes_the_average() {
    let d = tmpdir("emarender");
    let (c, s1, _) = images(&d);
    let mut o = fast(&c, &[&s1], &d.join("plain.png"));
    o.steps = 6;
    let plain = render::render(&o).unwrap();
    o.avg_decay = 0.9;
    o.output = d.join("avg.png");
    let avg = render::render(&o).unwrap();
    // The iterates are the same (the average only observes them) ...
    assert_eq!(plain.first, avg.first);
    // ... but the image written (and its reported losses) is the average, which lags behind.
    assert_ne!(load(&d.join("plain.png")).data, load(&d.join("avg.png")).data);
    assert!(avg.last.total() > plain.last.total(), "{} vs {}", avg.last.total(), plain.last.total());
}

// ---------------------------------------------------------------------------------------------
// 7. Seeded repeatability
// ---------------------------------------------------------------------------------------------

#[test]
fn seed_makes_a_run_bit_for_bit_repeatable() {
    let d = tmpdir("seed");
    let (c, s1, _) = images(&d);
    let run = |name: &str, seed: &str| -> Vec<u8> {
        // Same relative -o in separate folders, so the recorded command line is identical too.
        let dir = d.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut args = vec![
            "render",
            c.to_str().unwrap(),
            s1.to_str().unwrap(),
            "-o",
            "out.png",
            "--init",
            "noise",
            "--seed",
            seed,
        ];
        args.extend(FAST);
        ok(&stylize_in(&dir, &args));
        std::fs::read(dir.join("out.png")).unwrap()
    };
    let (a, b, other) = (run("a", "7"), run("b", "7"), run("c", "8"));
    assert!(a == b, "two runs with --seed 7 wrote different files");
    assert!(a != other, "--seed 8 wrote the same file as --seed 7");
    assert_ne!(load(&d.join("a/out.png")).data, load(&d.join("c/out.png")).data);
}

// ---------------------------------------------------------------------------------------------
// 8. Preview, JSON log, plot
// ---------------------------------------------------------------------------------------------

#[cfg(unix)]
#[test]
fn preview_is_rewritten_live_during_the_render() {
    let d = tmpdir("preview");
    let (c, s1, _) = images(&d);
    let (out, prev) = (d.join("o.png"), d.join("preview.png"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_stylize"))
        .args(["render", c.to_str().unwrap(), s1.to_str().unwrap(), "-o", out.to_str().unwrap()])
        .args(["--size", "16", "--steps", "100000", "--weights", "random:1", "--content-layers", "relu1_2"])
        .args(["--style-layers", "relu1_1", "--quiet", "--preview", prev.to_str().unwrap(), "--preview-every", "3"])
        .spawn()
        .unwrap();
    // Watch the preview like an image viewer would: it must exist, decode, and advance.
    let step_of = |p: &Path| -> Option<u32> {
        let img = image_io::load_image(p, &Default::default()).ok()?;
        assert_eq!((img.width, img.height), (16, 12));
        png_text(p, "stylize:step").parse().ok()
    };
    let start = std::time::Instant::now();
    let mut seen = vec![];
    while start.elapsed().as_secs() < 120 && seen.len() < 2 {
        if let Some(s) = step_of(&prev) {
            if seen.last() != Some(&s) {
                seen.push(s);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let status = child.wait().unwrap();
    assert!(!status.success(), "interrupted render exits non-zero");
    assert!(seen.len() >= 2, "the preview was not updated during the render: {seen:?}");
    assert!(seen.iter().all(|s| s % 3 == 0) && seen[1] > seen[0], "{seen:?}");
    // Atomic writes: no temporary file left behind.
    let mut names: Vec<String> =
        std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    names.sort();
    assert_eq!(names, ["content.png", "o.png", "preview.png", "style1.png", "style2.png"]);
}

#[test]
fn log_json_has_one_line_per_print_step_and_plot_draws_it() {
    let d = tmpdir("log");
    let (c, s1, _) = images(&d);
    let (out, log, prev, curve) = (d.join("o.png"), d.join("log.jsonl"), d.join("p.png"), d.join("curve.png"));
    let mut args = vec!["render", c.to_str().unwrap(), s1.to_str().unwrap(), "-o", out.to_str().unwrap()];
    args.extend(["--size", "24", "--steps", "7", "--weights", "random:1", "--content-layers", "relu2_1"]);
    args.extend([
        "--style-layers",
        "relu1_1,relu2_1",
        "--quiet",
        "--print-every",
        "2",
        "--log-json",
        log.to_str().unwrap(),
    ]);
    args.extend(["--preview", prev.to_str().unwrap(), "--preview-every", "2"]);
    ok(&stylize(&args));
    // The preview holds the final image at the end.
    assert_eq!(load(&prev).data, load(&out).data);

    let lines = read_log(&log);
    // Step 0 (the initial image), then every print step: 2, 4, 6 and the last, 7.
    let steps: Vec<f64> = lines.iter().map(|l| l["step"]).collect();
    assert_eq!(steps, vec![0.0, 2.0, 4.0, 6.0, 7.0]);
    let mut prev_t = 0.0;
    for l in &lines {
        for k in ["content", "style", "tv", "total", "elapsed_s"] {
            assert!(l[k].is_finite() && l[k] >= 0.0, "{k} in {l:?}");
        }
        let sum = l["content"] + l["style"] + l["tv"];
        assert!((l["total"] - sum).abs() <= 1e-5 * sum, "{l:?}");
        assert!(l["elapsed_s"] >= prev_t);
        prev_t = l["elapsed_s"];
    }
    assert!(lines[4]["total"] < lines[0]["total"], "the loss fell");

    let o =
        stylize(&["plot", log.to_str().unwrap(), "-o", curve.to_str().unwrap(), "--width", "320", "--height", "200"]);
    ok(&o);
    let img = load(&curve);
    assert_eq!((img.width, img.height), (320, 200));
    let n = img.plane_len();
    let mut colours: Vec<[u8; 3]> =
        (0..n).map(|i| [0, 1, 2].map(|c| (img.data[c * n + i] * 255.0).round() as u8)).collect();
    colours.sort();
    colours.dedup();
    assert!(colours.len() >= 6, "only {} colours", colours.len());
    // Each term's colour is drawn (content blue, style orange, tv green, total near-black).
    for c in [[31, 119, 180], [255, 127, 14], [44, 160, 44], [40, 40, 40]] {
        assert!(colours.contains(&c), "colour {c:?} missing from the plot");
    }
    // Temporal (red) only where the log has it: video frames with --temporal-weight.
    let red = [214, 39, 40];
    assert!(!colours.contains(&red), "a still image's plot has no temporal curve or legend");
    let video = d.join("video.jsonl");
    let line = |frame: u32, step: u32, t: Option<f64>| {
        let tt = t.map(|t| format!(",\"temporal\":{t}")).unwrap_or_default();
        format!(
            "{{\"frame\":{frame},\"scale\":0,\"step\":{step},\"content\":5,\"style\":9,\"tv\":1,\"total\":20{tt}}}\n"
        )
    };
    let text =
        [line(0, 0, None), line(0, 5, None), line(1, 0, Some(0.0)), line(1, 5, Some(3.0)), line(1, 9, Some(2.0))];
    std::fs::write(&video, text.concat()).unwrap();
    ok(&stylize(&[
        "plot",
        video.to_str().unwrap(),
        "-o",
        curve.to_str().unwrap(),
        "--width",
        "320",
        "--height",
        "200",
    ]));
    let img = load(&curve);
    let n = img.plane_len();
    let has = |c: [u8; 3]| (0..n).any(|i| [0, 1, 2].map(|k| (img.data[k * n + i] * 255.0).round() as u8) == c);
    assert!(has(red), "the temporal curve is drawn");
    // A log with nothing to plot is a clear error.
    let empty = d.join("empty.jsonl");
    std::fs::write(&empty, "\n").unwrap();
    fails_with(&["plot", empty.to_str().unwrap(), "-o", d.join("x.png").to_str().unwrap()], "no loss lines");
    std::fs::write(&empty, "{\"step\": oops}\n").unwrap();
    fails_with(&["plot", empty.to_str().unwrap(), "-o", d.join("x.png").to_str().unwrap()], "empty.jsonl:1");
}

// ---------------------------------------------------------------------------------------------
// 9. Batch / video
// ---------------------------------------------------------------------------------------------

fn frames(dir: &Path) -> PathBuf {
    let f = dir.join("frames");
    std::fs::create_dir_all(&f).unwrap();
    image_io::save_image(&f.join("f002.png"), &image_io::synthetic_photo(40, 30, 5), &[]).unwrap();
    image_io::save_image(&f.join("f001.png"), &image_io::synthetic_photo(40, 30, 4), &[]).unwrap();
    std::fs::write(f.join("notes.txt"), "not a frame").unwrap();
    f
}

#[test]
fn a_folder_of_frames_renders_each_and_temporal_init_starts_from_the_previous_result() {
    let d = tmpdir("batch");
    let (_, s1, _) = images(&d);
    let f = frames(&d);
    let run = |out: &str, log: &str, extra: &[&str]| {
        let (out, log) = (d.join(out), d.join(log));
        let mut args = vec!["render", f.to_str().unwrap(), s1.to_str().unwrap(), "-o", out.to_str().unwrap()];
        args.extend(FAST);
        args.extend(["--log-json", log.to_str().unwrap()]);
        args.extend(extra);
        ok(&stylize(&args));
        let mut names: Vec<String> =
            std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
        names.sort();
        assert_eq!(names, ["f001.png", "f002.png"], "one output per frame, same names");
        for n in &names {
            let img = load(&out.join(n));
            assert_eq!((img.width, img.height), (24, 18));
            assert!(png_text(&out.join(n), "stylize:frame").ends_with(n.as_str()));
        }
        read_log(&log)
    };
    let plain = run("out", "plain.jsonl", &[]);
    let temporal = run("out_t", "temporal.jsonl", &["--temporal-init"]);
    let start = |lines: &[std::collections::HashMap<String, f64>], frame: f64| {
        lines.iter().find(|l| l["frame"] == frame && l["step"] == 0.0).unwrap().clone()
    };
    // Frame 0 starts from its content either way; frame 1 from its content (content loss 0)
    // or from frame 0's result (content loss > 0: another image).
    assert_eq!(start(&plain, 0.0)["total"], start(&temporal, 0.0)["total"]);
    assert_eq!(start(&plain, 1.0)["content"], 0.0);
    assert!(start(&temporal, 1.0)["content"] > 0.0, "{:?}", start(&temporal, 1.0));
    assert_ne!(start(&plain, 1.0)["total"], start(&temporal, 1.0)["total"]);
    // The outputs differ between the two modes for frame 1 only.
    assert_eq!(load(&d.join("out/f001.png")).data, load(&d.join("out_t/f001.png")).data);
    assert_ne!(load(&d.join("out/f002.png")).data, load(&d.join("out_t/f002.png")).data);
}

#[test]
fn batch_reuses_the_style_targets_and_takes_a_content_list() {
    let d = tmpdir("batchlib");
    let (c, s1, _) = images(&d);
    let f = frames(&d);
    let mut o = fast(&f, &[&s1], &d.join("out"));
    let r = render::render(&o).unwrap();
    assert_eq!(r.outputs, vec![d.join("out/f001.png"), d.join("out/f002.png")]);
    assert_eq!(r.stages.len(), 2);
    assert_eq!(r.style_target_passes, 1, "style targets computed once for both frames");
    // --content-list: any files, in the order given.
    o.content = PathBuf::new();
    o.content_list = vec![f.join("f002.png"), c.clone()];
    o.output = d.join("out_list");
    let r = render::render(&o).unwrap();
    assert_eq!(r.outputs, vec![d.join("out_list/f002.png"), d.join("out_list/content.png")]);
    assert_eq!(r.style_target_passes, 1);
    assert!(d.join("out_list/content.png").exists());
}

// ---------------------------------------------------------------------------------------------
// 1. Optimiser choice (L-BFGS itself is tested in tests/lbfgs.rs; here: the render uses it)
// ---------------------------------------------------------------------------------------------

#[test]
fn optimizer_lbfgs_is_used_by_the_render() {
    let d = tmpdir("lbfgs");
    let (c, s1, _) = images(&d);
    let mut o = fast(&c, &[&s1], &d.join("adam.png"));
    o.steps = 20;
    let adam = render::render(&o).unwrap();
    o.optimizer = render::Optimizer::Lbfgs;
    o.lbfgs_history = 5;
    o.output = d.join("lbfgs.png");
    let lbfgs = render::render(&o).unwrap();
    println!(
        "20 steps: Adam {:.4e} -> {:.4e}, L-BFGS -> {:.4e}",
        adam.first.total(),
        adam.last.total(),
        lbfgs.last.total()
    );
    assert_eq!(adam.first, lbfgs.first);
    assert!(lbfgs.last.total() < adam.last.total(), "L-BFGS (lr 1, history 5) should beat Adam here");
    let cmd = png_text(&d.join("lbfgs.png"), "stylize:command");
    assert!(cmd.contains("--optimizer lbfgs --lbfgs-history 5") && cmd.contains("--lr 1 "), "{cmd}");
    // And through the binary.
    let out = d.join("cli.png");
    let mut args = vec!["render", c.to_str().unwrap(), s1.to_str().unwrap(), "-o", out.to_str().unwrap()];
    args.extend(FAST);
    args.extend(["--optimizer", "lbfgs", "--lbfgs-history", "3"]);
    ok(&stylize(&args));
    assert!(png_text(&out, "stylize:command").contains("--lbfgs-history 3"));
}

#[test]
fn normalize_gradients_changes_the_steps_not_the_losses_and_is_recorded() {
    // Its numerics are in tests/step.rs; here: the render uses it, the losses before the first
    // update are the plain ones, the PNG records it, its default weights, and tiles refuse it.
    let d = tmpdir("normgrad");
    let (c, s1, _) = images(&d);
    let mut o = fast(&c, &[&s1], &d.join("plain.png"));
    (o.content_weight, o.style_weight) = (Some(5.0), Some(100.0));
    let plain = render::render(&o).unwrap();
    o.normalize_gradients = true;
    o.output = d.join("norm.png");
    let norm = render::render(&o).unwrap();
    assert_eq!(plain.first, norm.first, "normalisation changes the gradient only");
    assert_ne!(plain.last, norm.last);
    assert_ne!(load(&d.join("plain.png")).data, load(&d.join("norm.png")).data);
    assert!(png_text(&d.join("norm.png"), "stylize:command").contains(" --normalize-gradients"));
    assert!(!png_text(&d.join("plain.png"), "stylize:command").contains("--normalize-gradients"));
    // Unset weights: jcjohnson's 5 and 100 for either convention; TV keeps the convention's.
    (o.content_weight, o.style_weight) = (None, None);
    let (eng, _) = Engine::new(&o, None).unwrap();
    let s = &eng.settings;
    assert_eq!((s.content_weight, s.style_weight), render::NORMALIZED_WEIGHTS);
    assert_eq!(s.tv_weight, render::default_weights_for(s.preprocess).2);
    // Tiled: one line naming the option, before any work.
    let out = d.join("tiled.png");
    let mut args = vec!["render", c.to_str().unwrap(), s1.to_str().unwrap(), "-o", out.to_str().unwrap()];
    args.extend(FAST);
    args.extend(["--normalize-gradients", "--tile", "16"]);
    fails_with(&args, "--normalize-gradients works untiled only");
    assert!(!out.exists());
}

// ---------------------------------------------------------------------------------------------
// Errors and help
// ---------------------------------------------------------------------------------------------

#[test]
fn bad_feature_options_give_clear_errors() {
    let d = tmpdir("bad");
    let (c, s1, s2) = images(&d);
    let f = frames(&d);
    let (c, s1, s2, f) = (c.to_str().unwrap(), s1.to_str().unwrap(), s2.to_str().unwrap(), f.to_str().unwrap());
    let out = d.join("o.png");
    let out = out.to_str().unwrap();
    let with = |extra: &[&str], base: &[&str]| -> Vec<String> {
        base.iter().chain(FAST).chain(extra).map(|s| s.to_string()).collect()
    };
    let check = |v: Vec<String>, needle: &str| fails_with(&v.iter().map(|s| s.as_str()).collect::<Vec<_>>(), needle);
    check(with(&[], &["render", c, "-o", out]), "at least one STYLE");
    check(
        with(&["--style-blend-weights", "1"], &["render", c, s1, s2, "-o", out]),
        "--style-blend-weights has 1 values for 2 style",
    );
    check(with(&["--style-blend-weights", "0,0"], &["render", c, s1, s2, "-o", out]), "must not all be 0");
    check(with(&["--style-blend-weights", "1,-1"], &["render", c, s1, s2, "-o", out]), "--style-blend-weights");
    check(with(&["--style-scale", "0"], &["render", c, s1, "-o", out]), "--style-scale");
    check(with(&["--scales", "2", "--initial-size", "24"], &["render", c, s1, "-o", out]), "--initial-size");
    check(with(&["--scales", "0"], &["render", c, s1, "-o", out]), "--scales");
    check(
        with(&["--scales", "2", "--initial-size", "12", "--scale-steps", "1,2,3"], &["render", c, s1, "-o", out]),
        "--scale-steps has 3",
    );
    check(with(&["--avg-decay", "1"], &["render", c, s1, "-o", out]), "--avg-decay");
    check(with(&["--preview", d.join("p.bmp").to_str().unwrap()], &["render", c, s1, "-o", out]), ".bmp");
    check(with(&["--preview", "p.png", "--preview-every", "0"], &["render", c, s1, "-o", out]), "--preview-every");
    check(
        with(&["--log-json", d.join("no/such/log.jsonl").to_str().unwrap()], &["render", c, s1, "-o", out]),
        "does not exist",
    );
    check(with(&[], &["render", f, s1, "-o", out]), "must be a folder");
    check(with(&[], &["render", f, s1, "-o", f]), "overwrite the content images");
    let empty = d.join("empty_folder");
    std::fs::create_dir_all(&empty).unwrap();
    check(with(&[], &["render", empty.to_str().unwrap(), s1, "-o", d.join("x").to_str().unwrap()]), "no .png or .jpg");
    assert!(!Path::new(out).exists());
}

#[test]
fn render_help_explains_every_option() {
    let o = stylize(&["render", "--help"]);
    ok(&o);
    let help = String::from_utf8_lossy(&o.stdout);
    for flag in [
        "[STYLE]...",
        "--content-list",
        "--style-blend-weights",
        "--style-scale",
        "--original-colors",
        "--color-match",
        "--scales",
        "--initial-size",
        "--scale-steps",
        "--avg-decay",
        "--seed",
        "--temporal-init",
        "--preview ",
        "--preview-every",
        "--log-json",
        "--optimizer",
        "--lbfgs-history",
        "--lbfgs-clamp",
        "--bit-depth",
        "--normalize-gradients",
    ] {
        assert!(help.contains(flag), "render --help does not mention {flag}:\n{help}");
    }
    let o = stylize(&["plot", "--help"]);
    ok(&o);
}
